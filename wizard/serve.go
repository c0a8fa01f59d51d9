package wizard

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// Enter starts the wizard at its first step with data, and sends that
// step's prompt. A wizard already running in this session starts over,
// without OnLeave (its sub-flows are dropped the same way).
func (w *Wizard[S, T]) Enter(c *session.Context[S], data T) error {
	return w.start(c, data, "", w.tag)
}

// start enters the wizard as a sub-flow of parent ("" for none), its
// buttons tagged with tag.
func (w *Wizard[S, T]) start(c *session.Context[S], data T, parent, tag string) error {
	if len(w.steps) == 0 {
		return fmt.Errorf("%w: wizard %s: Enter without steps", session.ErrConfig, w.name)
	}
	st, err := w.state(c)
	if err != nil {
		return fmt.Errorf("wizard %s: enter: %w", w.name, err)
	}
	if st.Undecoded != nil {
		w.report(c, &StaleError{Wizard: w.name, Data: st.Undecoded, Err: errors.New("replaced by Enter")})
	}
	if err := w.abortSubs(c, Cancelled, true); err != nil {
		return err
	}
	*st = State[T]{Step: w.steps[0].name, Seen: w.now(), Parent: parent}
	f := &Flow[S, T]{Context: c, Data: &data, w: w, st: st, step: st.Step, tag: tag, fresh: true}
	return errors.Join(w.enterStep(f, 0), f.flush())
}

// Current returns the name of the current step in c's session, or "" when
// the wizard is not running.
func (w *Wizard[S, T]) Current(c *session.Context[S]) (string, error) {
	st, err := w.state(c)
	if err != nil {
		return "", fmt.Errorf("wizard %s: %w", w.name, err)
	}
	return st.Step, nil
}

// state runs locate, refusing a nil State it might return.
func (w *Wizard[S, T]) state(c *session.Context[S]) (*State[T], error) {
	st, err := w.locate(c)
	if err == nil && st == nil {
		err = fmt.Errorf("%w: wizard: locate returned a nil *State", session.ErrConfig)
	}
	return st, err
}

// Middleware routes updates to the running wizard. While it runs, its
// messages go to the current step's handler (or to the sub-flow it runs),
// except the commands in [Options.Cancel] and [Options.Pass]; a press of
// the current question's buttons is answered (so the client stops its
// spinner) and goes to the step; a press of any other button the wizard
// sent is answered with [Options.Closed] and changes nothing. Every other
// update goes to next: other kinds of update, presses of buttons the
// wizard did not send, and messages while it is not running (or runs
// as another wizard's sub-flow, which that wizard's middleware serves).
//
// Only messages and presses of the wizard's buttons read the session, so
// under a lazy session (session.Options.Lazy) other updates still cost no
// storage call and take no lock.
//
// It panics with an error wrapping [session.ErrConfig] if next is nil or
// the wizard has no steps yet: add at least the first step before
// building the middleware.
func (w *Wizard[S, T]) Middleware(next session.Handler[S]) session.Handler[S] {
	if next == nil {
		panic(fmt.Errorf("%w: wizard: Middleware: nil next handler", session.ErrConfig))
	}
	if len(w.steps) == 0 {
		panic(fmt.Errorf("%w: wizard: Middleware: the wizard has no steps (add them with Step first)", session.ErrConfig))
	}
	return func(c *session.Context[S]) error {
		u := &c.Update
		if u.Message == nil && u.CallbackQuery == nil {
			return next(c)
		}
		if q := u.CallbackQuery; q != nil && !strings.HasPrefix(q.Data, w.tag) {
			return next(c) // not our button: no need to read the session
		}
		out, err := w.handle(c, "", w.tag)
		if err != nil {
			return err
		}
		if out.pass {
			return next(c)
		}
		return nil
	}
}

// ending is how a flow ended, for the wizard that runs it as a sub-flow.
type ending[T any] struct {
	why  Reason
	data T
}

// outcome is what handle did with an update.
type outcome[T any] struct {
	end     *ending[T] // the flow ended
	pass    bool       // the update goes on to the next handler
	touched bool       // a step took the update: the flow's data and Seen changed
}

// handle serves one message or press of a button tagged tag, for the
// wizard run by parent ("" for the one the middleware serves).
func (w *Wizard[S, T]) handle(c *session.Context[S], parent, tag string) (outcome[T], error) {
	st, err := w.state(c)
	if errors.Is(err, session.ErrNoSessionKey) && parent == "" {
		return outcome[T]{pass: true}, nil // no session, so no wizard
	}
	if err != nil {
		return outcome[T]{}, fmt.Errorf("wizard %s: %w", w.name, err)
	}
	f := &Flow[S, T]{Context: c, w: w, st: st, step: st.Step, tag: tag}
	if st.Undecoded == nil && (!st.Active() || st.Parent != parent) {
		if parent != "" {
			// The parent waits for a sub-flow that is not there.
			f.st = nil
			f.ended = &ending[T]{why: Stale}
			return outcome[T]{end: f.ended, pass: w.afterEnd(c)}, nil
		}
		if c.Update.CallbackQuery != nil {
			w.answer(c, w.opts.Closed) // our button, but the flow has ended
			return outcome[T]{}, nil
		}
		return outcome[T]{pass: true}, nil
	}
	out, err := w.route(f)
	if out.touched {
		err = errors.Join(err, f.flush())
	}
	return out, err
}

// route takes an update for the running flow f.
func (w *Wizard[S, T]) route(f *Flow[S, T]) (outcome[T], error) {
	c, st := f.Context, f.st
	u := &c.Update
	if st.Undecoded != nil {
		var probe fields
		return w.stale(f, &StaleError{Wizard: w.name, Data: st.Undecoded, Err: json.Unmarshal(st.Undecoded, &probe)})
	}
	i := w.index(st.Step)
	if err := f.decode(); err != nil {
		return w.stale(f, &StaleError{Wizard: w.name, Step: st.Step, Data: st.Data, Err: err})
	}
	now := w.now()
	switch {
	case i < 0:
		return w.stale(f, nil)
	case w.opts.Timeout > 0 && now-st.Seen >= w.opts.Timeout.Milliseconds():
		err := f.end(Expired, false)
		return outcome[T]{end: f.ended, pass: w.afterEnd(c)}, err
	case isCommand(u, w.opts.Cancel):
		err := f.end(Cancelled, false)
		return outcome[T]{end: f.ended}, err
	case isCommand(u, w.opts.Pass):
		return outcome[T]{pass: true}, nil
	}
	if s := w.steps[i].sub; s != nil {
		return s.serve(f, now)
	}
	if q := u.CallbackQuery; q != nil {
		if q.Message == nil || !slices.Contains(st.Prompts, Prompt{Chat: chatOf(q.Message), Message: q.Message.MessageID}) {
			w.answer(c, w.opts.Closed)
			return outcome[T]{}, nil
		}
		w.answer(c, "")
		q.Data = strings.TrimPrefix(q.Data, f.tag) // the step sees its own data
	}
	st.Seen = now
	err := w.steps[i].handle(f)
	var inv *invalidError
	if !errors.As(err, &inv) {
		return outcome[T]{end: f.ended, touched: true}, err
	}
	if inv.msg != "" {
		if err := f.Reply(inv.msg); err != nil {
			return outcome[T]{end: f.ended, touched: true}, err
		}
	}
	if f.st == nil || f.st.Step != w.steps[i].name {
		return outcome[T]{end: f.ended, touched: true}, nil // the handler moved on before rejecting: nothing to re-ask
	}
	return outcome[T]{touched: true}, w.prompt(f, i)
}

// stale leaves the flow with reason Stale, reporting serr if not nil.
func (w *Wizard[S, T]) stale(f *Flow[S, T], serr *StaleError) (outcome[T], error) {
	if serr != nil {
		w.report(f.Context, serr)
	}
	err := f.end(Stale, false)
	return outcome[T]{end: f.ended, pass: w.afterEnd(f.Context)}, err
}

// afterEnd finishes an update that finds no flow to take it (it ended, or
// ended just now): a press of the wizard's button is answered as closed,
// a cancel command is consumed, anything else goes on to the next
// handler. It reports whether it goes on.
func (w *Wizard[S, T]) afterEnd(c *session.Context[S]) bool {
	if c.Update.CallbackQuery != nil {
		w.answer(c, w.opts.Closed)
		return false
	}
	return !isCommand(&c.Update, w.opts.Cancel)
}

// answer answers the update's button press with text; a failure is
// reported, never returned, so the step runs (and its changes are kept)
// even when Telegram refuses the answer.
func (w *Wizard[S, T]) answer(c *session.Context[S], text string) {
	if c.Bot == nil {
		return
	}
	if _, err := c.Bot.Request(tgbotapi.NewCallback(c.Update.CallbackQuery.ID, text)); err != nil {
		w.report(c, fmt.Errorf("wizard %s: answer button press: %w", w.name, err))
	}
}

// report hands err to Options.OnError, or logs it.
func (w *Wizard[S, T]) report(c *session.Context[S], err error) {
	if w.opts.OnError != nil {
		w.opts.OnError(c, err)
		return
	}
	ctx := c.Context
	if ctx == nil {
		ctx = context.Background()
	}
	slog.Default().ErrorContext(ctx, "wizard: update partly failed", "wizard", w.name, "error", err)
}

// isCommand reports whether u is a message with one of cmds.
func isCommand(u *tgbotapi.Update, cmds []string) bool {
	return u.Message != nil && u.Message.IsCommand() && slices.Contains(cmds, u.Message.Command())
}

func chatOf(m *tgbotapi.Message) int64 {
	if m.Chat == nil {
		return 0
	}
	return m.Chat.ID
}

// enterStep enters step i: sends its prompt, or starts its sub-flow.
func (w *Wizard[S, T]) enterStep(f *Flow[S, T], i int) error {
	if s := w.steps[i].sub; s != nil {
		return s.enter(f)
	}
	return w.prompt(f, i)
}

// prompt runs the prompt of step i.
func (w *Wizard[S, T]) prompt(f *Flow[S, T], i int) error {
	if p := w.steps[i].prompt; p != nil {
		return p(f)
	}
	return nil
}
