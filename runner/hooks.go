package runner

import (
	"context"
	"errors"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// Hooks lets a program watch a [Run], like session.Hooks watches a
// session: optional funcs, set in [Options.Hooks]; package otelsession
// makes metrics of them. Unset, they cost nothing.
type Hooks struct {
	// Event, if set, is called for every update the runner takes,
	// handles, skips or gives up, with the queue depth and the handlers
	// in flight right after. It is called from the source's and the
	// handlers' goroutines, never with the runner's lock held, and must
	// be quick and safe for concurrent use.
	Event func(ctx context.Context, e Event)
}

// Event is one step of an update through the runner.
type Event struct {
	Kind   EventKind
	Update *tgbotapi.Update // valid during the call only
	Key    string           // the ordering key, as given to OnError ("" for none)
	Err    error            // for Failed and Left
	// Queued is how many updates wait, over all keys; InFlight how many
	// handlers run. Both are 0 for Left: at the drain deadline the runner
	// gives up everything at once.
	Queued, InFlight int
}

// EventKind says what happened to an update.
type EventKind uint8

const (
	// Taken: the update entered its key's queue.
	Taken EventKind = iota
	// Handled: its handler returned nil.
	Handled
	// Failed: its handler returned an error or panicked (reported to
	// OnError).
	Failed
	// Deduplicated: a redelivery not handled again, because the runner
	// remembered it or its session's record said it was applied
	// (session.ErrDuplicate).
	Deduplicated
	// Left: given up at the drain deadline, not acknowledged (reported to
	// OnError with ErrStopped).
	Left
)

var eventNames = [...]string{"taken", "handled", "failed", "deduplicated", "left"}

// String returns the kind's name, as metrics and logs label it.
func (k EventKind) String() string {
	if int(k) < len(eventNames) {
		return eventNames[k]
	}
	return "unknown"
}

// outcome is the kind of a finished update whose handler returned err.
func outcome(err error) EventKind {
	switch {
	case err == nil:
		return Handled
	case errors.Is(err, session.ErrDuplicate):
		return Deduplicated
	case errors.Is(err, ErrStopped):
		return Left
	}
	return Failed
}

// eventLocked returns the event of u, with the counts as they are now.
// d.mu is held; the caller emits it once the lock is released.
func (d *dispatcher) eventLocked(kind EventKind, u *tgbotapi.Update, key string, err error) Event {
	return Event{Kind: kind, Update: u, Key: key, Err: err, Queued: d.queued, InFlight: len(d.running)}
}

// emit gives e to the hook, if any.
func (d *dispatcher) emit(e Event) {
	if d.hook != nil {
		d.hook(d.hookCtx, e)
	}
}
