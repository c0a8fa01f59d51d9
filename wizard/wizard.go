// Package wizard runs multi-step conversations ("wizards", "scenes",
// "conversations") on top of session middleware: the bot asks a
// question, the user answers, the bot asks the next one, and so on, with
// the current step and the answers so far kept in the session.
//
// A [Wizard] is a list of named steps. Each step has a prompt, which asks
// for the step's input, and a handler, which takes the user's answer (a
// message or a button press) and moves the conversation on with
// [Flow.Next], [Flow.Back], [Flow.Goto] or [Flow.Leave]. A handler that
// rejects its input returns [Invalid]: the wizard sends the reason and
// asks again.
//
//	type Session struct {
//		Order wizard.State[Order] // the wizard's step and answers
//	}
//
//	order := wizard.New(wizard.Field(func(s *Session) *wizard.State[Order] { return &s.Order }),
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
// The state is an ordinary part of the session value, so it works in
// every session [session.New] and [session.NewMulti] build: strict or
// lazy, in one value or as a fragment of its own (see [Locate]), in any
// store with any codec. Its fields are exported and JSON-encodable
// (provided T is), so the default JSON codec keeps it, and so does
// grammY's envelope, used for a TTL or Migrations.
// Like every session change, a step's changes are written only if its
// handler succeeds; messages it sent before failing stay sent.
//
// A wizard left alone for longer than [Options.Timeout] is left on the next
// update, which then goes on as if no wizard were running; commands listed
// in [Options.Cancel] leave it at any step.
package wizard

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// State is what a wizard keeps in the session: the current step, the
// steps that led to it (for [Flow.Back]) and the typed data collected so
// far. Put one State field per wizard in your session type. Its zero value
// is a wizard that is not running.
type State[T any] struct {
	// Step is the name of the current step; "" when the wizard is not
	// running.
	Step string `json:"step,omitempty"`
	// Trail lists the steps before Step, oldest first.
	Trail []string `json:"trail,omitempty"`
	// Seen is when the wizard last handled an update, in Unix
	// milliseconds; the timeout counts from it.
	Seen int64 `json:"seen,omitempty"`
	// Data is what the steps have collected.
	Data T `json:"data"`
}

// Active reports whether the wizard is running.
func (s *State[T]) Active() bool { return s.Step != "" }

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
	// Stale: the stored step no longer exists, because the bot was
	// redeployed with other steps.
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

// Options configures a [Wizard]. The zero value never times out and has
// no cancel command.
type Options[S, T any] struct {
	// Timeout, when > 0, leaves the wizard (with reason [Expired]) when an
	// update arrives more than Timeout after the last one it handled. That
	// update then goes to the next handler as if no wizard were running.
	Timeout time.Duration
	// Clock replaces time.Now, so tests can move time without sleeping.
	Clock func() time.Time
	// Cancel lists commands, without the slash, that leave the wizard at
	// any step (with reason [Cancelled]), e.g. "cancel". The command is
	// consumed: it does not reach the step or the next handler. An entry
	// that no command can match (empty, starting with "/", or holding a
	// space or an "@bot" suffix) is an error.
	Cancel []string
	// OnLeave, if set, is called whenever the wizard ends, after its State
	// has been reset; f.Data holds the data it had collected and f.Step()
	// the step it ended at. It typically confirms or says goodbye. It may
	// call Enter to start a wizard again.
	OnLeave func(f *Flow[S, T], why Reason) error
}

// Wizard is a multi-step conversation. Create it with [New], add its
// steps with [Wizard.Step], then serve it with [Wizard.Middleware] and
// start it with [Wizard.Enter]. Add at least one step before calling
// Middleware and every step before the first update is served; after
// that a Wizard is safe for concurrent use.
type Wizard[S, T any] struct {
	locate Locate[S, T]
	opts   Options[S, T]
	steps  []step[S, T]
}

type step[S, T any] struct {
	name           string
	prompt, handle func(*Flow[S, T]) error
}

// New returns a wizard without steps whose state locate finds in the
// session. It panics with an error wrapping [session.ErrConfig] if locate
// is nil, opts.Timeout is negative or positive but below the stored
// resolution of a millisecond, or an entry of opts.Cancel can never match
// a command.
func New[S, T any](locate Locate[S, T], opts Options[S, T]) *Wizard[S, T] {
	if locate == nil {
		panic(fmt.Errorf("%w: wizard: New: nil locate", session.ErrConfig))
	}
	if opts.Timeout < 0 || (opts.Timeout > 0 && opts.Timeout < time.Millisecond) {
		panic(fmt.Errorf("%w: wizard: New: Options.Timeout %v is negative or below 1ms", session.ErrConfig, opts.Timeout))
	}
	for i, cmd := range opts.Cancel {
		// Message.Command returns the command without the slash and
		// without the @bot suffix, so these could never be equal to it.
		if cmd == "" || strings.HasPrefix(cmd, "/") || strings.ContainsRune(cmd, '@') || strings.IndexFunc(cmd, unicode.IsSpace) >= 0 {
			panic(fmt.Errorf("%w: wizard: New: Options.Cancel[%d] %q can never match a command: give its name without the slash or an @bot suffix, as in \"cancel\"", session.ErrConfig, i, cmd))
		}
	}
	if opts.Clock == nil {
		opts.Clock = time.Now
	}
	opts.Cancel = slices.Clone(opts.Cancel)
	return &Wizard[S, T]{locate: locate, opts: opts}
}

// Step adds a step after the existing ones. prompt asks for the step's
// input: it runs when the step is entered and again after invalid input;
// nil means the step sends nothing. handle runs for each message or button
// press while the step is current. It panics with an error wrapping
// [session.ErrConfig] if name is empty or taken, or handle is nil.
func (w *Wizard[S, T]) Step(name string, prompt, handle func(f *Flow[S, T]) error) {
	switch {
	case name == "":
		panic(fmt.Errorf("%w: wizard: empty step name", session.ErrConfig))
	case w.index(name) >= 0:
		panic(fmt.Errorf("%w: wizard: step %q added twice", session.ErrConfig, name))
	case handle == nil:
		panic(fmt.Errorf("%w: wizard: step %q has no handler", session.ErrConfig, name))
	}
	w.steps = append(w.steps, step[S, T]{name: name, prompt: prompt, handle: handle})
}

func (w *Wizard[S, T]) index(name string) int {
	return slices.IndexFunc(w.steps, func(s step[S, T]) bool { return s.name == name })
}

// Enter starts the wizard at its first step with data, and sends that
// step's prompt. A wizard already running in this session starts over,
// without OnLeave.
func (w *Wizard[S, T]) Enter(c *session.Context[S], data T) error {
	if len(w.steps) == 0 {
		return fmt.Errorf("%w: wizard: Enter without steps", session.ErrConfig)
	}
	st, err := w.state(c)
	if err != nil {
		return fmt.Errorf("wizard: enter: %w", err)
	}
	*st = State[T]{Step: w.steps[0].name, Seen: w.now(), Data: data}
	return w.prompt(w.flow(c, st), 0)
}

// Current returns the name of the current step in c's session, or "" when
// the wizard is not running.
func (w *Wizard[S, T]) Current(c *session.Context[S]) (string, error) {
	st, err := w.state(c)
	if err != nil {
		return "", fmt.Errorf("wizard: %w", err)
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

// Middleware routes updates to the running wizard. A message or a button
// press (callback query) in a session where the wizard is running goes to
// the current step's handler, after the button press has been answered
// (so the client stops its spinner); every other update, and every update
// where the wizard is not running, goes to next.
//
// Only messages and button presses read the session, so under a lazy
// session (session.Options.Lazy) other updates still cost no storage
// call and take no lock.
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
		st, err := w.state(c)
		if errors.Is(err, session.ErrNoSessionKey) {
			return next(c) // no session, so no wizard (a button on an inline message)
		}
		if err != nil {
			return fmt.Errorf("wizard: %w", err)
		}
		if !st.Active() {
			return next(c)
		}
		f := w.flow(c, st)
		i := w.index(st.Step)
		now := w.now()
		switch {
		case i < 0:
			if err := f.end(Stale); err != nil {
				return err
			}
			return next(c)
		case w.opts.Timeout > 0 && now-st.Seen >= w.opts.Timeout.Milliseconds():
			if err := f.end(Expired); err != nil {
				return err
			}
			return next(c)
		case u.Message != nil && u.Message.IsCommand() && slices.Contains(w.opts.Cancel, u.Message.Command()):
			return f.end(Cancelled)
		}
		st.Seen = now
		if q := u.CallbackQuery; q != nil && c.Bot != nil {
			if _, err := c.Bot.Request(tgbotapi.NewCallback(q.ID, "")); err != nil {
				return fmt.Errorf("wizard: answer button press: %w", err)
			}
		}
		err = w.steps[i].handle(f)
		var inv *invalidError
		if !errors.As(err, &inv) {
			return err
		}
		if inv.msg != "" {
			if err := f.Reply(inv.msg); err != nil {
				return err
			}
		}
		if f.st == nil || f.st.Step != w.steps[i].name {
			return nil // the handler moved on before rejecting: nothing to re-ask
		}
		return w.prompt(f, i)
	}
}

// now returns the clock in Unix milliseconds.
func (w *Wizard[S, T]) now() int64 { return w.opts.Clock().UnixMilli() }

func (w *Wizard[S, T]) flow(c *session.Context[S], st *State[T]) *Flow[S, T] {
	return &Flow[S, T]{Context: c, Data: &st.Data, w: w, st: st, step: st.Step}
}

// prompt runs the prompt of step i.
func (w *Wizard[S, T]) prompt(f *Flow[S, T], i int) error {
	if p := w.steps[i].prompt; p != nil {
		return p(f)
	}
	return nil
}

// ErrNotRunning is returned by the navigation methods of a [Flow] whose
// wizard has ended (from OnLeave, or after Leave).
var ErrNotRunning = errors.New("wizard: not running")

// Flow is a wizard's view of one update: the update's [session.Context],
// the wizard's data and the navigation methods. Prompts, step handlers
// and OnLeave receive one.
type Flow[S, T any] struct {
	*session.Context[S]
	// Data is the wizard's data in the session: change it in place.
	Data *T

	w    *Wizard[S, T]
	st   *State[T] // nil once the wizard has ended
	step string    // the current step, or the one it ended at
}

// Step returns the name of the current step (in OnLeave: the step the
// wizard ended at).
func (f *Flow[S, T]) Step() string { return f.step }

// Next moves to the step after the current one and sends its prompt; on
// the last step it leaves the wizard with reason [Done].
func (f *Flow[S, T]) Next() error {
	if f.st == nil {
		return ErrNotRunning
	}
	i := f.w.index(f.st.Step) + 1
	if i >= len(f.w.steps) {
		return f.end(Done)
	}
	return f.move(i, true)
}

// Back returns to the step before the current one and sends its prompt
// again; on the first step it just asks again.
func (f *Flow[S, T]) Back() error {
	if f.st == nil {
		return ErrNotRunning
	}
	n := len(f.st.Trail)
	if n == 0 {
		return f.w.prompt(f, f.w.index(f.st.Step))
	}
	i := f.w.index(f.st.Trail[n-1])
	if i < 0 {
		return fmt.Errorf("wizard: back to unknown step %q", f.st.Trail[n-1])
	}
	f.st.Trail = f.st.Trail[:n-1]
	return f.move(i, false)
}

// Goto moves to the named step, remembering the current one for Back, and
// sends its prompt.
func (f *Flow[S, T]) Goto(name string) error {
	if f.st == nil {
		return ErrNotRunning
	}
	i := f.w.index(name)
	if i < 0 {
		return fmt.Errorf("wizard: goto unknown step %q", name)
	}
	return f.move(i, true)
}

// Leave ends the wizard with reason [Done]: its State is reset, so the
// next update goes to the next handler, and OnLeave runs.
func (f *Flow[S, T]) Leave() error {
	if f.st == nil {
		return ErrNotRunning
	}
	return f.end(Done)
}

func (f *Flow[S, T]) move(i int, remember bool) error {
	if remember {
		f.st.Trail = append(f.st.Trail, f.st.Step)
	}
	f.st.Step = f.w.steps[i].name
	f.step = f.st.Step
	f.st.Seen = f.w.now()
	return f.w.prompt(f, i)
}

// end resets the state and runs OnLeave with the data collected.
func (f *Flow[S, T]) end(why Reason) error {
	data := f.st.Data
	*f.st = State[T]{}
	left := &Flow[S, T]{Context: f.Context, Data: &data, w: f.w, step: f.step}
	f.st, f.Data = nil, left.Data
	if f.w.opts.OnLeave == nil {
		return nil
	}
	return f.w.opts.OnLeave(left, why)
}

// ChatID returns the chat of the update: the message's, or the chat of
// the message under a pressed button; 0 if there is none.
func (f *Flow[S, T]) ChatID() int64 {
	switch u := &f.Update; {
	case u.Message != nil && u.Message.Chat != nil:
		return u.Message.Chat.ID
	case u.CallbackQuery != nil && u.CallbackQuery.Message != nil && u.CallbackQuery.Message.Chat != nil:
		return u.CallbackQuery.Message.Chat.ID
	}
	return 0
}

// Text returns the user's answer: the text of a message (its caption for
// media), or the data of a pressed button.
func (f *Flow[S, T]) Text() string {
	switch u := &f.Update; {
	case u.Message != nil && u.Message.Text != "":
		return u.Message.Text
	case u.Message != nil:
		return u.Message.Caption
	case u.CallbackQuery != nil:
		return u.CallbackQuery.Data
	}
	return ""
}

// Reply sends text to the update's chat.
func (f *Flow[S, T]) Reply(text string) error {
	return f.Send(tgbotapi.NewMessage(f.ChatID(), text))
}

// Send sends any message, such as one with an inline keyboard built for
// [Flow.ChatID].
func (f *Flow[S, T]) Send(m tgbotapi.Chattable) error {
	if f.Bot == nil {
		return errors.New("wizard: send: the Context has no Bot")
	}
	if _, err := f.Bot.Send(m); err != nil {
		return fmt.Errorf("wizard: send: %w", err)
	}
	return nil
}

// invalidError is the error of [Invalid].
type invalidError struct{ msg string }

func (e *invalidError) Error() string { return "wizard: invalid input: " + e.msg }

func (e *invalidError) Is(target error) bool { return target == ErrInvalid }

// ErrInvalid matches, with errors.Is, every error made by [Invalid].
var ErrInvalid = errors.New("wizard: invalid input")

// Invalid rejects a step's input: returned from a step handler, it makes
// the wizard reply msg (unless empty) and send the step's prompt again.
// The step stays current, and changes the handler made to the session are
// kept, as for any handler that returns nil.
func Invalid(msg string) error { return &invalidError{msg: msg} }
