package telegramtest

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

// Conversation is a [Chat] for tests: each step waits until the bot
// acknowledged its update and fails the test (t.Fatal) when it does not
// within Wait, or when the step cannot be made (no such button); its
// Expect methods check the bot's replies with testify's assert, so a
// bot's test reads like the chat it checks:
//
//	alice := srv.Conversation(t, 101, 101)
//	alice.Send("/start").Expect("Hi! What's your name?")
//	alice.Send("Alice").Expect("Pizza tonight, Alice?").ExpectButtons("Yes", "No")
//	alice.Press("Yes").ExpectAnswer("Great!").Expect("Ordered.")
//
// Its steps must run on the test's goroutine, as t.Fatal requires.
type Conversation struct {
	// Chat is the chat the conversation scripts.
	Chat *Chat
	// Wait is how long each step waits for the bot; 0 means DefaultWait.
	Wait time.Duration

	t    testing.TB
	last *Turn
}

// Conversation returns a conversation of user userID in chat chatID (the
// user's private chat when chatID == userID), reporting to t.
func (s *Server) Conversation(t testing.TB, chatID, userID int64) *Conversation {
	return &Conversation{Chat: s.Chat(chatID, userID), t: t}
}

// InTopic returns the conversation in the chat's forum topic threadID
// (see [Chat.InTopic]).
func (c *Conversation) InTopic(threadID int) *Conversation {
	return &Conversation{Chat: c.Chat.InTopic(threadID), Wait: c.Wait, t: c.t}
}

// InBusiness returns the conversation as business_message updates of
// the business connection id (see [Chat.InBusiness]).
func (c *Conversation) InBusiness(id string) *Conversation {
	return &Conversation{Chat: c.Chat.InBusiness(id), Wait: c.Wait, t: c.t}
}

// step runs one step with the conversation's wait and records its turn.
func (c *Conversation) step(what string, f func(ctx context.Context) (*Turn, error)) *Turn {
	c.t.Helper()
	wait := c.Wait
	if wait <= 0 {
		wait = DefaultWait
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	turn, err := f(ctx)
	if errors.Is(err, context.DeadlineExceeded) {
		c.t.Fatalf("telegramtest: %s: %v (is the bot running against this server? Is it stuck?)", what, err)
	}
	if err != nil {
		c.t.Fatalf("telegramtest: %s: %v", what, err)
	}
	turn.tb = c.t
	c.last = turn
	return turn
}

// Send sends text as the user's message and returns the bot's turn.
func (c *Conversation) Send(text string) *Turn {
	c.t.Helper()
	return c.step("send "+quote(text), func(ctx context.Context) (*Turn, error) { return c.Chat.Send(ctx, text) })
}

// Press presses the button with this text or callback data under the
// bot's latest message that has it, and returns the bot's turn.
func (c *Conversation) Press(button string) *Turn {
	c.t.Helper()
	return c.step("press "+quote(button), func(ctx context.Context) (*Turn, error) { return c.Chat.Press(ctx, button) })
}

// Edit edits the user's message messageID (a Turn's MessageID) to text,
// and returns the bot's turn.
func (c *Conversation) Edit(messageID int, text string) *Turn {
	c.t.Helper()
	return c.step("edit to "+quote(text), func(ctx context.Context) (*Turn, error) { return c.Chat.Edit(ctx, messageID, text) })
}

// Deliver delivers raw, an update's JSON, and returns the bot's turn.
func (c *Conversation) Deliver(raw []byte) *Turn {
	c.t.Helper()
	return c.step("deliver "+quote(string(raw)), func(ctx context.Context) (*Turn, error) { return c.Chat.Deliver(ctx, raw) })
}

// Migrate turns the group into the supergroup superID (see
// [Chat.Migrate]) and returns the conversation there.
func (c *Conversation) Migrate(superID int64) *Conversation {
	c.t.Helper()
	var super *Chat
	c.step("migrate", func(ctx context.Context) (*Turn, error) {
		var t *Turn
		var err error
		super, t, err = c.Chat.Migrate(ctx, superID)
		return t, err
	})
	return &Conversation{Chat: super, Wait: c.Wait, t: c.t, last: c.last}
}

// Last returns the last step's turn, nil before the first.
func (c *Conversation) Last() *Turn { return c.last }

// Expect checks that the last step's replies have exactly the texts want
// (none, without arguments).
func (c *Conversation) Expect(want ...string) {
	c.t.Helper()
	if c.last == nil {
		c.t.Fatalf("telegramtest: Expect before any step")
	}
	c.last.Expect(want...)
}

// Expect checks that the turn's replies have exactly the texts want (no
// reply, without arguments), and returns the turn. It works on turns of
// a [Conversation].
func (t *Turn) Expect(want ...string) *Turn {
	t.testing().Helper()
	if want == nil {
		want = []string{}
	}
	assert.Equal(t.tb, want, t.Texts(), "the bot's replies to update %d", t.UpdateID)
	return t
}

// ExpectButtons checks the labels of the buttons under the turn's last
// reply with buttons (see [Turn.Buttons]), and returns the turn. It works
// on turns of a [Conversation].
func (t *Turn) ExpectButtons(labels ...string) *Turn {
	t.testing().Helper()
	assert.Equal(t.tb, labels, t.Buttons(), "the buttons of the bot's replies to update %d", t.UpdateID)
	return t
}

// ExpectAnswer checks that the bot answered the press's callback query
// with text (empty for an answer without a notification), and returns
// the turn. It works on turns of a [Conversation].
func (t *Turn) ExpectAnswer(text string) *Turn {
	t.testing().Helper()
	if assert.NotNil(t.tb, t.Answer, "the bot did not answer the callback query of update %d", t.UpdateID) {
		assert.Equal(t.tb, text, t.Answer.Text, "the bot's answer to the callback query of update %d", t.UpdateID)
	}
	return t
}

// testing returns the turn's test, and panics for a turn made outside a
// Conversation, which has none to report to.
func (t *Turn) testing() testing.TB {
	if t.tb == nil {
		panic("telegramtest: Turn.Expect* works on the turns of a Conversation; a Chat's turns have Texts, Buttons and Answer")
	}
	return t.tb
}

// quote shortens s for a failure message.
func quote(s string) string {
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return `"` + s + `"`
}
