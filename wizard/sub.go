package wizard

import (
	"errors"
	"fmt"

	"github.com/tgsession/session"
)

// sub is a SubStep: how the parent wizard enters, serves and ends its
// child without knowing the child's data type.
type sub[S, T any] struct {
	enter func(f *Flow[S, T]) error
	serve func(f *Flow[S, T], now int64) (outcome[T], error)
	abort func(c *session.Context[S], why Reason, quiet bool) error
}

// SubStep adds to w a step that runs the wizard child as a sub-flow.
// Entering the step enters child at its first step with data(f) (nil
// data: the zero U). While child runs, w's middleware gives it the
// messages and presses of the flow (w's Cancel and Pass commands still
// apply first), and w's Timeout keeps counting from the last update either
// took. When child ends with [Done], done(f, result) (if not nil) runs for
// w with child's data, and w goes on to the step after this one unless
// done moved elsewhere; when child ends another way, w ends with the same
// [Reason], child's OnLeave running before w's. Both wizards' states are
// stored, each in its own place with the child's naming w as its parent,
// so a restarted bot resumes the sub-flow where it was.
//
// child's buttons carry w's tag, so child needs no middleware of its own
// for this: if it also has one (to be entered on its own as well), that
// middleware leaves it alone while it runs as w's sub-flow. Sub-flows
// nest. It panics with an error wrapping [session.ErrConfig] if name is
// empty or taken, or child is nil or w itself.
func SubStep[S, T, U any](w *Wizard[S, T], name string, child *Wizard[S, U], data func(f *Flow[S, T]) U, done func(f *Flow[S, T], result U) error) {
	if child == nil || any(child) == any(w) {
		panic(fmt.Errorf("%w: wizard: SubStep %q: the sub-flow must be another wizard", session.ErrConfig, name))
	}
	s := &sub[S, T]{
		enter: func(f *Flow[S, T]) error {
			var d U
			if data != nil {
				d = data(f)
			}
			return child.start(f.Context, d, w.name, f.tag)
		},
		abort: func(c *session.Context[S], why Reason, quiet bool) error {
			return child.abort(c, w.name, why, quiet)
		},
	}
	s.serve = func(f *Flow[S, T], now int64) (outcome[T], error) {
		out, err := child.handle(f.Context, w.name, f.tag)
		if out.touched && f.st != nil {
			f.st.Seen = now
		}
		switch {
		case err != nil || out.end == nil:
			return outcome[T]{pass: out.pass, touched: out.touched}, err
		case out.end.why != Done:
			err := f.end(out.end.why, false)
			return outcome[T]{end: f.ended, pass: out.pass}, err
		}
		if done != nil {
			if err := done(f, out.end.data); err != nil {
				return outcome[T]{end: f.ended, touched: true}, err
			}
		}
		if f.st != nil && f.st.Step == name {
			err = f.Next()
		}
		return outcome[T]{end: f.ended, touched: true}, err
	}
	w.add(step[S, T]{name: name, sub: s})
}

// abort ends the flow if parent runs it, as when parent ends.
func (w *Wizard[S, T]) abort(c *session.Context[S], parent string, why Reason, quiet bool) error {
	st, err := w.state(c)
	if errors.Is(err, session.ErrNoSessionKey) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("wizard %s: %w", w.name, err)
	}
	if st.Undecoded != nil || !st.Active() || st.Parent != parent {
		return nil
	}
	f := &Flow[S, T]{Context: c, w: w, st: st, step: st.Step}
	if err := f.decode(); err != nil {
		w.report(c, &StaleError{Wizard: w.name, Step: st.Step, Data: st.Data, Err: err})
	}
	return f.end(why, quiet)
}

// abortSubs ends the sub-flows w runs.
func (w *Wizard[S, T]) abortSubs(c *session.Context[S], why Reason, quiet bool) error {
	var errs []error
	for _, s := range w.steps {
		if s.sub != nil {
			errs = append(errs, s.sub.abort(c, why, quiet))
		}
	}
	return errors.Join(errs...)
}
