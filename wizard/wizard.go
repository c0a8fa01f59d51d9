// Package wizard runs multi-step conversations ("wizards", "scenes",
// "conversations") on top of session middleware: the bot asks a
// question, the user answers, the bot asks the next one, and so on, with
// the current step and the answers so far kept in the session.
//
// A [Wizard] is a named list of steps. Each step has a prompt, which asks
// for the step's input, and a handler, which takes the user's answer (a
// message or a button press) and moves the conversation on with
// [Flow.Next], [Flow.Back], [Flow.Goto] or [Flow.Leave]. A handler that
// rejects its input returns [Invalid]: the wizard sends the reason and
// asks again. A step added with [SubStep] runs another wizard and goes on
// when that one is done.
//
//	type Session struct {
//		Order wizard.State[Order] `json:"order,omitzero"` // the wizard's step and answers
//	}
//
//	order := wizard.New("order", wizard.Field(func(s *Session) *wizard.State[Order] { return &s.Order }),
//		wizard.Options[Session, Order]{Timeout: 10 * time.Minute, Cancel: []string{"cancel"}})
//	order.Step("size", askSize, takeSize)
//	order.Step("address", askAddress, takeAddress)
//
//	sess, err := session.New(session.Options[Session]{Storage: store})
//	if err != nil {
//		return err
//	}
//	h := order.Middleware(func(c *session.Context[Session]) error {
//		// Updates not taken by the wizard arrive here.
//		if c.Update.Message != nil && c.Update.Message.Command() == "order" {
//			return order.Enter(c, Order{})
//		}
//		return nil
//	})
//	err = runner.Run(ctx, bot, sess, h, runner.Options{}) // or serve sess.Middleware(h)
//
// # Buttons
//
// A button press goes to the step whose prompt carried the button, and
// only while that prompt is the step's latest: [Flow.Send] tags the
// callback data of every inline button it sends with the wizard's name
// (the steps see the data as they gave it) and records the message in the
// [State]. A press of an older prompt (one asked again, or of a step the
// flow has left), or of any of the wizard's buttons once the flow has
// ended, is answered with [Options.Closed] and changes nothing. Presses of
// buttons the wizard did not send go to the next handler. Send prompts
// with buttons through Flow.Send (or Flow.Reply), not through the Bot.
//
// Several wizards may serve one session, each with its own name and
// State, their middlewares chained: each takes only the presses of its
// own buttons, and while more than one runs, the outermost takes the
// messages.
//
// # Stored state
//
// The state is an ordinary part of the session value, so it works in
// every session [session.New] and [session.NewMulti] build: strict or
// lazy, in one value or as a fragment of its own (see [Locate]), in any
// store with any codec. The flow's data is kept as JSON inside the State
// and decoded by the wizard, so stored data of a shape T no longer has
// (after a deploy that changed T) is the wizard's problem, not the
// session's [session.ErrCorrupt]: the flow is left with reason [Stale] on
// its next message or press, the bytes are reported to [Options.OnError]
// as a [*StaleError], and the chat goes on. Session Migrations run first,
// on the whole stored JSON: to carry running flows across a change of T,
// add a migration that rewrites the wizard's "data"; without one, those
// flows end Stale. This holds for sessions stored as JSON (the default
// codec); another codec decodes the State its own way. Once a flow ends,
// its State is zero: with the field tagged omitzero (Go 1.24 or later),
// nothing of it is stored; without, an empty object.
//
// Like every session change, a step's changes are written only if its
// handler succeeds; messages it sent before failing stay sent.
//
// A wizard left alone for longer than [Options.Timeout] is left on the next
// update, which then goes on as if no wizard were running; commands listed
// in [Options.Cancel] leave it at any step, and those in [Options.Pass]
// reach the next handler mid-flow.
package wizard

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	"github.com/tgsession/session"
)

// Locate finds a wizard's [State] in the session of an update. Use
// [Field] for a field of the session value, or the Get method of a
// [session.Fragment] of type State[T] in a multi session, which has this
// signature already.
type Locate[S, T any] func(c *session.Context[S]) (*State[T], error)

// Field locates the State in a field of the session value. It panics
// with an error wrapping [session.ErrConfig] if field is nil.
func Field[S, T any](field func(*S) *State[T]) Locate[S, T] {
	if field == nil {
		panic(fmt.Errorf("%w: wizard: Field: nil field accessor", session.ErrConfig))
	}
	return func(c *session.Context[S]) (*State[T], error) {
		s, err := c.Session()
		if err != nil {
			return nil, err
		}
		return field(s), nil
	}
}

// Reason tells [Options.OnLeave] why a wizard ended.
type Reason int

const (
	// Done: a step called [Flow.Leave], or [Flow.Next] on the last step.
	Done Reason = iota
	// Cancelled: the user sent one of [Options.Cancel].
	Cancelled
	// Expired: the wizard was idle for longer than [Options.Timeout].
	Expired
	// Stale: the stored state no longer fits the wizard, because the bot
	// was redeployed: its step no longer exists, or its data (or the State
	// itself) no longer decodes, which is also reported to
	// [Options.OnError] as a [*StaleError].
	Stale
)

// String returns the reason's name.
func (r Reason) String() string {
	switch r {
	case Done:
		return "done"
	case Cancelled:
		return "cancelled"
	case Expired:
		return "expired"
	case Stale:
		return "stale"
	}
	return fmt.Sprintf("Reason(%d)", int(r))
}

// DefaultClosed is the answer to a press of a closed question when
// [Options.Closed] is empty.
const DefaultClosed = "This question is closed."

// Options configures a [Wizard]. The zero value never times out, has no
// cancel command and logs errors it cannot return with slog.
type Options[S, T any] struct {
	// Timeout, when > 0, leaves the wizard (with reason [Expired]) when an
	// update arrives more than Timeout after the last one it handled. That
	// update then goes to the next handler as if no wizard were running.
	Timeout time.Duration
	// Clock replaces time.Now, so tests can move time without sleeping.
	Clock func() time.Time
	// Cancel lists commands, without the slash, that leave the wizard at
	// any step (with reason [Cancelled]), e.g. "cancel". The command is
	// consumed: it does not reach the step or the next handler, also when
	// it finds the flow already expired or stale (which it then leaves
	// with that reason). An entry that no command can match (empty,
	// starting with "/", or holding a space or an "@bot" suffix) is an
	// error.
	Cancel []string
	// Pass lists commands, without the slash, that go to the next handler
	// even while the wizard runs (e.g. "help"), leaving the flow as it
	// was. The same rules as for Cancel apply.
	Pass []string
	// Closed is the answer shown to a user who presses a button of a
	// question that is closed: asked again since, of a step the flow has
	// left, or of a flow that has ended. Empty means [DefaultClosed].
	Closed string
	// OnLeave, if set, is called whenever the wizard ends, after its State
	// has been reset; f.Data holds the data it had collected (zero when it
	// no longer decoded) and f.Step() the step it ended at. It typically
	// confirms or says goodbye. It may call Enter to start a wizard again.
	OnLeave func(f *Flow[S, T], why Reason) error
	// OnError receives the errors that must not fail the update, since
	// failing it would undo what the step did: a button press Telegram
	// refused to answer ("query is too old"; the step runs anyway), and
	// a [*StaleError] holding stored state that no longer decodes. Nil
	// logs them with slog.Default at error level.
	OnError func(c *session.Context[S], err error)
}

// Wizard is a multi-step conversation. Create it with [New], add its
// steps with [Wizard.Step] and [SubStep], then serve it with
// [Wizard.Middleware] and start it with [Wizard.Enter]. Add at least one
// step before calling Middleware and every step before the first update is
// served; after that a Wizard is safe for concurrent use.
type Wizard[S, T any] struct {
	name   string
	tag    string // prefix of the callback data of the buttons it sends
	locate Locate[S, T]
	opts   Options[S, T]
	steps  []step[S, T]
}

type step[S, T any] struct {
	name           string
	prompt, handle func(*Flow[S, T]) error
	sub            *sub[S, T] // set for a SubStep
}

// maxName bounds a wizard's name, which every button's callback data
// carries (Telegram allows 64 bytes of it).
const maxName = 16

// New returns a wizard without steps whose state locate finds in the
// session. name identifies the wizard's buttons: give every wizard served
// on one session its own. It panics with an error wrapping
// [session.ErrConfig] if name is empty, longer than 16 bytes or holds
// anything but ASCII letters, digits, '-' and '_', locate is nil,
// opts.Timeout is negative or positive but below the stored resolution of
// a millisecond, or an entry of opts.Cancel or opts.Pass can never match
// a command.
func New[S, T any](name string, locate Locate[S, T], opts Options[S, T]) *Wizard[S, T] {
	if name == "" || len(name) > maxName || strings.IndexFunc(name, badNameRune) >= 0 {
		panic(fmt.Errorf("%w: wizard: New: name %q must be 1 to %d ASCII letters, digits, '-' or '_'", session.ErrConfig, name, maxName))
	}
	if locate == nil {
		panic(fmt.Errorf("%w: wizard: New: nil locate", session.ErrConfig))
	}
	if opts.Timeout < 0 || (opts.Timeout > 0 && opts.Timeout < time.Millisecond) {
		panic(fmt.Errorf("%w: wizard: New: Options.Timeout %v is negative or below 1ms", session.ErrConfig, opts.Timeout))
	}
	checkCommands("Cancel", opts.Cancel)
	checkCommands("Pass", opts.Pass)
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	if opts.Closed == "" {
		opts.Closed = DefaultClosed
	}
	opts.Cancel = slices.Clone(opts.Cancel)
	opts.Pass = slices.Clone(opts.Pass)
	return &Wizard[S, T]{name: name, tag: "~" + name + "~", locate: locate, opts: opts}
}

func badNameRune(r rune) bool {
	return !(r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || r == '-' || r == '_'))
}

// checkCommands panics on an entry of Options.<field> no command matches.
func checkCommands(field string, cmds []string) {
	for i, cmd := range cmds {
		// Message.Command returns the command without the slash and
		// without the @bot suffix, so these could never be equal to it.
		if cmd == "" || strings.HasPrefix(cmd, "/") || strings.ContainsRune(cmd, '@') || strings.IndexFunc(cmd, unicode.IsSpace) >= 0 {
			panic(fmt.Errorf("%w: wizard: New: Options.%s[%d] %q can never match a command: give its name without the slash or an @bot suffix, as in \"cancel\"", session.ErrConfig, field, i, cmd))
		}
	}
}

// Name returns the wizard's name, given to [New].
func (w *Wizard[S, T]) Name() string { return w.name }

// ButtonData returns the callback data that [Flow.Send] gives a button
// with data in this wizard's prompts: what a test pressing that button
// (telegramtest's PressButton) must give.
func (w *Wizard[S, T]) ButtonData(data string) string { return w.tag + data }

// Step adds a step after the existing ones. prompt asks for the step's
// input: it runs when the step is entered and again after invalid input;
// nil means the step sends nothing. handle runs for each message or press
// of the prompt's buttons while the step is current. It panics with an
// error wrapping [session.ErrConfig] if name is empty or taken, or handle
// is nil.
func (w *Wizard[S, T]) Step(name string, prompt, handle func(f *Flow[S, T]) error) {
	if handle == nil {
		panic(fmt.Errorf("%w: wizard: step %q has no handler", session.ErrConfig, name))
	}
	w.add(step[S, T]{name: name, prompt: prompt, handle: handle})
}

func (w *Wizard[S, T]) add(s step[S, T]) {
	switch {
	case s.name == "":
		panic(fmt.Errorf("%w: wizard: empty step name", session.ErrConfig))
	case w.index(s.name) >= 0:
		panic(fmt.Errorf("%w: wizard: step %q added twice", session.ErrConfig, s.name))
	}
	w.steps = append(w.steps, s)
}

func (w *Wizard[S, T]) index(name string) int {
	return slices.IndexFunc(w.steps, func(s step[S, T]) bool { return s.name == name })
}

// now returns the clock in Unix milliseconds.
func (w *Wizard[S, T]) now() int64 { return w.opts.Clock().UnixMilli() }
