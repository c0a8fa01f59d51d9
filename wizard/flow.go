package wizard

import (
	"encoding/json"
	"errors"
	"fmt"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// Flow is a wizard's view of one update: the update's [session.Context],
// the wizard's data and the navigation methods. Prompts, step handlers
// and OnLeave receive one.
type Flow[S, T any] struct {
	*session.Context[S]
	// Data is the wizard's data, decoded from the session: change it in
	// place; it is stored when the update has been handled.
	Data *T

	w     *Wizard[S, T]
	st    *State[T]  // nil once the wizard has ended
	step  string     // the current step, or the one it ended at
	tag   string     // the prefix of its buttons' callback data
	fresh bool       // st.Prompts already lists this update's prompts
	ended *ending[T] // how the flow ended, if it did in this update
	raw   []byte     // st.Data as decoded into Data, to notice an Enter since
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
		return f.end(Done, false)
	}
	return f.move(i, true)
}

// Back returns to the step before the current one and sends its prompt
// again; on the first step it just asks again. Steps of the trail that
// the wizard no longer has (it was redeployed without them) are skipped.
func (f *Flow[S, T]) Back() error {
	if f.st == nil {
		return ErrNotRunning
	}
	for n := len(f.st.Trail); n > 0; n-- {
		i := f.w.index(f.st.Trail[n-1])
		f.st.Trail = f.st.Trail[:n-1]
		if i >= 0 {
			return f.move(i, false)
		}
	}
	return f.move(f.w.index(f.st.Step), false)
}

// Goto moves to the named step, remembering the current one for Back, and
// sends its prompt.
func (f *Flow[S, T]) Goto(name string) error {
	if f.st == nil {
		return ErrNotRunning
	}
	i := f.w.index(name)
	if i < 0 {
		return fmt.Errorf("wizard %s: goto unknown step %q", f.w.name, name)
	}
	return f.move(i, true)
}

// Leave ends the wizard with reason [Done]: its State is reset, so the
// next update goes to the next handler, and OnLeave runs.
func (f *Flow[S, T]) Leave() error {
	if f.st == nil {
		return ErrNotRunning
	}
	return f.end(Done, false)
}

// move enters step i. The buttons of earlier prompts close: the prompts
// the step sends now are the only ones its presses may come from.
func (f *Flow[S, T]) move(i int, remember bool) error {
	if remember {
		f.st.Trail = append(f.st.Trail, f.st.Step)
	}
	f.st.Step = f.w.steps[i].name
	f.step = f.st.Step
	f.st.Seen = f.w.now()
	f.st.Prompts, f.fresh = nil, true
	return f.w.enterStep(f, i)
}

// end resets the state, ends the sub-flows it runs (innermost first) and
// runs OnLeave with the data collected, unless quiet.
func (f *Flow[S, T]) end(why Reason, quiet bool) error {
	var data T
	if f.Data != nil {
		data = *f.Data
	}
	*f.st = State[T]{}
	f.st = nil
	f.ended = &ending[T]{why: why, data: data}
	err := f.w.abortSubs(f.Context, why, quiet)
	left := &Flow[S, T]{Context: f.Context, Data: &data, w: f.w, step: f.step}
	f.Data = left.Data
	if quiet || f.w.opts.OnLeave == nil {
		return err
	}
	return errors.Join(err, f.w.opts.OnLeave(left, why))
}

// decode decodes the stored data into f.Data.
func (f *Flow[S, T]) decode() error {
	v, err := f.st.Decode() // zero on error: OnLeave sees no half-decoded data
	f.Data, f.raw = &v, f.st.Data
	return err
}

// flush stores f.Data in the state, if the flow still runs and was not
// entered anew (by a handler calling Enter) since Data was decoded.
func (f *Flow[S, T]) flush() error {
	if f.st == nil || f.Data == nil || !sameBytes(f.st.Data, f.raw) {
		return nil
	}
	b, err := json.Marshal(f.Data)
	if err != nil {
		return fmt.Errorf("wizard %s: encode data: %w", f.w.name, err)
	}
	f.st.Data = b
	return nil
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
// [Flow.ChatID], or an edit of one. While the flow runs, the callback
// data of its buttons is tagged with the wizard's name and the message
// becomes the current question's prompt: the first message with buttons
// sent in an update (or after a move to another step) closes the buttons
// of the messages before it. From OnLeave, buttons are sent as they are,
// for the next handler to take.
func (f *Flow[S, T]) Send(m tgbotapi.Chattable) error {
	if f.Bot == nil {
		return errors.New("wizard: send: the Context has no Bot")
	}
	tagged := false
	if f.st != nil {
		var err error
		if m, tagged, err = tagButtons(m, f.tag); err != nil {
			return fmt.Errorf("wizard %s: send: %w", f.w.name, err)
		}
	}
	sent, err := f.Bot.Send(m)
	if err != nil {
		return fmt.Errorf("wizard: send: %w", err)
	}
	if tagged && f.st != nil {
		if !f.fresh {
			f.st.Prompts, f.fresh = nil, true
		}
		f.st.Prompts = append(f.st.Prompts, Prompt{Chat: chatOf(&sent), Message: sent.MessageID})
		if n := len(f.st.Prompts); n > maxPrompts {
			f.st.Prompts = f.st.Prompts[n-maxPrompts:]
		}
	}
	return nil
}

// sameBytes reports whether a and b are the same slice (not just equal).
func sameBytes(a, b []byte) bool {
	return len(a) == len(b) && (len(a) == 0 || &a[0] == &b[0])
}
