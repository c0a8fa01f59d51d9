package wizard

import (
	"encoding/json"
	"errors"
	"fmt"
)

// State is what a wizard keeps in the session: the current step, the
// steps that led to it (for [Flow.Back]), the messages carrying the
// current question's buttons and the data collected so far. Put one State
// field per wizard in your session type, tagged omitzero so that nothing
// is stored once the flow ends. Its zero value is a wizard that is not
// running.
//
// The data is kept as JSON (whatever the session's codec) and decoded by
// the wizard, and a State that does not decode at all is kept as
// Undecoded: neither ever makes the session fail to load.
type State[T any] struct {
	// Step is the name of the current step; "" when the wizard is not
	// running.
	Step string `json:"step,omitempty"`
	// Trail lists the steps before Step, oldest first.
	Trail []string `json:"trail,omitempty"`
	// Seen is when the wizard last handled an update, in Unix
	// milliseconds; the timeout counts from it.
	Seen int64 `json:"seen,omitempty"`
	// Prompts are the messages whose buttons answer the current question;
	// presses under any other message of the wizard are closed.
	Prompts []Prompt `json:"prompts,omitempty"`
	// Parent names the wizard that runs this one as a [SubStep]; "" for a
	// wizard entered with [Wizard.Enter].
	Parent string `json:"parent,omitempty"`
	// Data is what the steps have collected: a T as JSON.
	Data json.RawMessage `json:"data,omitempty"`
	// Undecoded holds stored state that did not decode as a State. It is
	// encoded back as it was, until the wizard's next message or press
	// leaves the flow with reason [Stale] and reports it.
	Undecoded json.RawMessage `json:"-"`
}

// Prompt is a message the bot sent with the buttons of a question.
type Prompt struct {
	Chat    int64 `json:"chat"`
	Message int   `json:"msg"`
}

// maxPrompts bounds State.Prompts: a question is rarely asked with more
// messages than this, and the State stays small.
const maxPrompts = 8

// Active reports whether the wizard is running, or holds stored state
// that it will leave as [Stale] on its next update.
func (s *State[T]) Active() bool { return s.Step != "" || s.Undecoded != nil }

// Decode returns the data collected so far, decoded from Data: the zero T
// when there is none, and an error when it no longer decodes as a T.
func (s *State[T]) Decode() (T, error) {
	var v T
	if len(s.Data) == 0 {
		return v, nil
	}
	if err := json.Unmarshal(s.Data, &v); err != nil {
		var zero T
		return zero, fmt.Errorf("wizard: decode state data: %w", err)
	}
	return v, nil
}

// fields is State without its methods, to decode and encode it without
// recursion.
type fields struct {
	Step      string          `json:"step,omitempty"`
	Trail     []string        `json:"trail,omitempty"`
	Seen      int64           `json:"seen,omitempty"`
	Prompts   []Prompt        `json:"prompts,omitempty"`
	Parent    string          `json:"parent,omitempty"`
	Data      json.RawMessage `json:"data,omitempty"`
	Undecoded json.RawMessage `json:"-"`
}

// UnmarshalJSON decodes a State and never fails: JSON that is not a State
// (written by another version of the bot) is kept in Undecoded, so that
// the rest of the session loads and the wizard can leave the flow.
func (s *State[T]) UnmarshalJSON(b []byte) error {
	if string(b) == "null" {
		*s = State[T]{}
		return nil
	}
	var f fields
	if err := json.Unmarshal(b, &f); err != nil {
		*s = State[T]{Undecoded: append(json.RawMessage(nil), b...)}
		return nil
	}
	*s = State[T](f)
	return nil
}

// MarshalJSON encodes the State; an Undecoded one as it was read.
func (s State[T]) MarshalJSON() ([]byte, error) {
	if s.Undecoded != nil {
		return s.Undecoded, nil
	}
	return json.Marshal(fields(s))
}

// ErrStale matches, with errors.Is, every [*StaleError].
var ErrStale = errors.New("wizard: stale state")

// StaleError reports stored wizard state that no longer decodes: the flow
// was left with reason [Stale], and Data holds the bytes that were
// dropped, so that they can be logged or recovered.
type StaleError struct {
	// Wizard is the wizard's name.
	Wizard string
	// Step is the stored step, "" if the State itself did not decode.
	Step string
	// Data is the State's data, or the whole State if it did not decode.
	Data json.RawMessage
	// Err is the decoding error.
	Err error
}

func (e *StaleError) Error() string {
	return fmt.Sprintf("wizard %s: stale state at step %q left: %v: %s", e.Wizard, e.Step, e.Err, e.Data)
}

// Unwrap returns the decoding error.
func (e *StaleError) Unwrap() error { return e.Err }

// Is reports whether target is [ErrStale].
func (e *StaleError) Is(target error) bool { return target == ErrStale }

// ErrNotRunning is returned by the navigation methods of a [Flow] whose
// wizard has ended (from OnLeave, or after Leave).
var ErrNotRunning = errors.New("wizard: not running")

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
