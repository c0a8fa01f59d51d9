package session

import (
	"context"
	"errors"
	"time"
)

// Hooks lets a program watch its sessions, in the style of
// net/http/httptrace: a struct of optional funcs, set once in
// [Options.Hooks]. Package otelsession turns them into OpenTelemetry
// spans and metrics. Unset (a nil *Hooks, or nil funcs), they cost
// nothing: no clock reads and no allocations per update.
//
// The funcs run on the update's goroutine, so they should be quick; they
// must not use the update's session.
type Hooks struct {
	// Begin, if set, is called as an update enters the middleware, before
	// anything is locked or read. The context it returns (nil: ctx
	// unchanged) becomes the update's context, for the storage calls and
	// the handler: a tracer starts the update's span here, so that the
	// handler's own spans are its children.
	Begin func(ctx context.Context, u Update) context.Context
	// End, if set, is called once per update as it leaves the middleware
	// (after the commit, or after the error or panic that ended it), with
	// the context Begin returned.
	End func(ctx context.Context, r *Report)
}

// Report is what one update did with its session, given to [Hooks.End].
// It is valid only during the call.
type Report struct {
	Update Update
	// Start is when the update entered the middleware; the durations
	// follow each other from there. Under a lazy session, Handler
	// includes the LockWait and Load that its first access caused.
	Start    time.Time
	LockWait time.Duration // taking the leases (and reading the values with them)
	Load     time.Duration // decoding and migrating what was read
	Handler  time.Duration
	Commit   time.Duration
	// Parts has one entry per part that has a key for the update (a
	// single session has at most one), in the session's order.
	Parts []PartReport
	// Outcome is the update's: [OutcomePanic] after a panic,
	// [OutcomeDuplicate] when the whole update was applied already
	// ([ErrDuplicate]), [OutcomeConflict] when a commit lost its lease,
	// [OutcomeError] for any other error, and otherwise the outcome of the
	// first part that was not applied already ([OutcomeUntouched] if none).
	Outcome Outcome
	// Err is the error the middleware returned (nil on success or panic).
	Err error
}

// PartReport is what an update did to one part of its session.
type PartReport struct {
	Fragment     string // "" for a single session
	Key          string // the session key, before any Prefix: a chat or user id
	BytesRead    int    // of the stored value read with the lease
	BytesWritten int    // of the value committed (OpWrite)
	Outcome      Outcome
}

// Outcome says how an update ended for a part of its session.
type Outcome uint8

const (
	OutcomeUntouched Outcome = iota // lazy and never accessed: no storage call
	OutcomeUnchanged                // read, nothing to write
	OutcomeWritten
	OutcomeTouched // expiry restarted
	OutcomeDeleted
	OutcomeConflict  // the lease was lost: nothing written ([ErrConflict])
	OutcomeDuplicate // applied already ([ErrDuplicate]): nothing written
	OutcomeError     // the handler, a load or the commit failed: nothing written
	OutcomePanic     // a panic went through: nothing written
)

var outcomeNames = [...]string{"untouched", "unchanged", "written", "touched", "deleted", "conflict", "duplicate", "error", "panic"}

// String returns the outcome's name, as metrics label it.
func (o Outcome) String() string {
	if int(o) < len(outcomeNames) {
		return outcomeNames[o]
	}
	return "unknown"
}

func outcomeOf(op Op) Outcome {
	switch op {
	case OpWrite:
		return OutcomeWritten
	case OpTouch:
		return OutcomeTouched
	case OpDelete:
		return OutcomeDeleted
	}
	return OutcomeUnchanged
}

// watch is what an update with hooks measures. Without hooks the state's
// *watch is nil, and the engine checks that before it reads the clock or
// calls a method: the default path pays one comparison per phase.
type watch struct {
	start  time.Time
	phases [phases]time.Duration
	parts  []partWatch // by part
}

// The phases of an update, as the watch adds them up.
const (
	phaseLock = iota
	phaseLoad
	phaseHandler
	phaseCommit
	phases
)

type partWatch struct {
	bytesRead, bytesWritten int
	outcome                 Outcome
}

func newWatch(parts int) *watch {
	return &watch{start: time.Now(), parts: make([]partWatch, parts)}
}

// add adds the time since t to phase.
func (w *watch) add(phase int, t time.Time) { w.phases[phase] += time.Since(t) }

// read notes the value read with part i's lease.
func (w *watch) read(i int, l Lease) {
	v, _ := l.Value()
	w.parts[i].bytesRead = len(v)
}

// committed notes how part i's commit of c ended.
func (w *watch) committed(i int, c Change, err error) {
	p := &w.parts[i]
	switch {
	case err == nil:
		p.outcome, p.bytesWritten = outcomeOf(c.Op), len(c.Value)
	case errors.Is(err, ErrConflict):
		p.outcome = OutcomeConflict
	default:
		p.outcome = OutcomeError
	}
}

// report builds the Report of the update and gives it to End. st.mu is
// not held; the update's state is final.
func (st *state[S]) report(ctx context.Context, h *Hooks, c *Context[S], err error, panicked bool) {
	w := st.watch
	r := Report{Update: Update{&c.Update, c.Raw}, Start: w.start, LockWait: w.phases[phaseLock],
		Load: w.phases[phaseLoad], Handler: w.phases[phaseHandler], Commit: w.phases[phaseCommit], Err: err}
	var inline [2]PartReport
	r.Parts = inline[:0]
	for i, p := range st.eng.parts {
		sl := &st.slots[i]
		if !sl.ok {
			continue
		}
		pw := w.parts[i]
		pr := PartReport{Fragment: p.info().name, Key: sl.key, BytesRead: pw.bytesRead, BytesWritten: pw.bytesWritten, Outcome: pw.outcome}
		switch {
		case panicked:
			pr.Outcome = OutcomePanic
		case sl.applied:
			pr.Outcome = OutcomeDuplicate
		case pw.outcome == OutcomeUntouched && sl.state != untouched && err != nil:
			pr.Outcome = OutcomeError
		}
		r.Parts = append(r.Parts, pr)
	}
	switch {
	case panicked:
		r.Outcome = OutcomePanic
	case errors.Is(err, ErrDuplicate):
		r.Outcome = OutcomeDuplicate
	case errors.Is(err, ErrConflict):
		r.Outcome = OutcomeConflict
	case err != nil:
		r.Outcome = OutcomeError
	default:
		for _, pr := range r.Parts {
			if pr.Outcome != OutcomeDuplicate {
				r.Outcome = pr.Outcome
				break
			}
		}
	}
	h.End(ctx, &r)
}
