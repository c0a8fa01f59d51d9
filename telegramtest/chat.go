package telegramtest

import (
	"context"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"
)

// DefaultWait is how long [Chat] and [Conversation] wait for the bot to
// acknowledge an update, unless ctx or Conversation.Wait says otherwise.
const DefaultWait = 10 * time.Second

// Chat is a user in a chat with the bot, scripting updates as Telegram
// sends them: each builder (MessageUpdate, PressUpdate, ...) returns
// Telegram's documented JSON, with what tgbotapi v5.5.1 drops (topics,
// business chats), and each of Send, Press, Edit, Deliver and Migrate
// queues one update and waits until the bot acknowledged it (see
// [Server.WaitAcknowledged]), then returns the [Turn]: what the bot did
// meanwhile. Make one with [Server.Chat]; in tests, [Server.Conversation]
// wraps one for assertions that fail the test.
//
// A Chat is a value to read: set its fields through [Chat.InTopic] and
// [Chat.InBusiness], which return copies.
type Chat struct {
	// ChatID is the chat; UserID is the user who writes in it.
	ChatID, UserID int64
	// Type is the chat's type: "private" when ChatID == UserID,
	// "supergroup" for ids below -1e12 (Telegram's -100... ids) and in
	// forum topics, else "group".
	Type string
	// ThreadID is the forum topic (message_thread_id) of the chat's
	// messages, 0 for none.
	ThreadID int
	// BusinessConnectionID, when set, makes the chat's messages
	// business_message updates of that business connection.
	BusinessConnectionID string

	srv *Server
}

// Chat returns the chat chatID with user userID in it: the user's private
// chat with the bot when chatID == userID, a group otherwise.
func (s *Server) Chat(chatID, userID int64) *Chat {
	c := &Chat{ChatID: chatID, UserID: userID, srv: s, Type: "group"}
	switch {
	case chatID == userID:
		c.Type = "private"
	case chatID < -1_000_000_000_000:
		c.Type = "supergroup"
	}
	return c
}

// inChat returns a copy of c in another chat of the given type.
func (c *Chat) inChat(chatID int64, typ string) *Chat {
	cp := *c
	cp.ChatID, cp.Type, cp.ThreadID = chatID, typ, 0
	return &cp
}

// InTopic returns a copy of c in the forum topic threadID: its messages
// carry message_thread_id and is_topic_message, and the chat is a forum
// supergroup.
func (c *Chat) InTopic(threadID int) *Chat {
	cp := *c
	cp.ThreadID, cp.Type = threadID, "supergroup"
	return &cp
}

// InBusiness returns a copy of c whose messages are business_message
// updates of the business connection id, as a business account's
// customer writing to it is seen by the bot.
func (c *Chat) InBusiness(id string) *Chat {
	cp := *c
	cp.BusinessConnectionID = id
	return &cp
}

// Turn is what the bot did while it handled one update: the messages it
// sent and edited, and for a button press, how it answered the callback
// query.
type Turn struct {
	// UpdateID is the update's id.
	UpdateID int
	// MessageID is the id of the user's message, 0 for a press.
	MessageID int
	// Button is the label of the button pressed, for a press.
	Button string
	// Replies are the messages the bot sent to this chat, in order.
	Replies []Message
	// Sent are all the messages the bot sent meanwhile, to any chat.
	Sent []Message
	// Edited are the bot's messages it edited meanwhile, as they were
	// after each edit (Method is the edit method).
	Edited []Message
	// Answer is the bot's answerCallbackQuery for a press, nil if it did
	// not answer (yet).
	Answer *CallbackAnswer

	tb testing.TB // set for the turns of a Conversation
}

// CallbackAnswer is a bot's answerCallbackQuery.
type CallbackAnswer struct {
	// Text is the notification shown, empty for none.
	Text string
	// ShowAlert tells whether it is an alert instead of a toast.
	ShowAlert bool
	// URL is the url parameter, empty when absent.
	URL string
}

// Texts returns the text (or caption) of each of the turn's replies.
func (t *Turn) Texts() []string {
	out := []string{}
	for _, m := range t.Replies {
		out = append(out, m.Body())
	}
	return out
}

// Text returns the turn's replies' texts, one per line.
func (t *Turn) Text() string { return strings.Join(t.Texts(), "\n") }

// Buttons returns the labels of the inline buttons under the turn's last
// reply that has any, row after row; nil when no reply has buttons.
func (t *Turn) Buttons() []string {
	for i := len(t.Replies) - 1; i >= 0; i-- {
		if b := t.Replies[i].Buttons(); len(b) > 0 {
			return b
		}
	}
	return nil
}

// Body returns m's text, or its caption when it has no text.
func (m Message) Body() string {
	if m.Text != "" {
		return m.Text
	}
	return m.Caption
}

// Buttons returns the labels of m's inline buttons, row after row.
func (m Message) Buttons() []string {
	var out []string
	for _, row := range m.InlineKeyboard {
		for _, b := range row {
			out = append(out, b.Text)
		}
	}
	return out
}

// mark is where the server's records stood when a turn began.
type mark struct{ sent, edits, requests int }

func (s *Server) mark() mark {
	s.mu.Lock()
	defer s.mu.Unlock()
	return mark{len(s.sent), len(s.edits), len(s.requests)}
}

// Deliver queues raw, an update's JSON (a builder's, or any; a missing
// update_id is set), with [Server.AddRawUpdate], waits until the bot
// acknowledged it, and returns what the bot did meanwhile. Without a
// deadline on ctx it waits at most [DefaultWait]. The error wraps ctx's
// error, or [ErrClosed].
func (c *Chat) Deliver(ctx context.Context, raw []byte) (*Turn, error) {
	return c.deliver(ctx, raw, "")
}

func (c *Chat) deliver(ctx context.Context, raw []byte, qid string) (*Turn, error) {
	if _, ok := ctx.Deadline(); !ok {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, DefaultWait)
		defer cancel()
	}
	s := c.srv
	from := s.mark()
	id := s.AddRawUpdate(raw)
	err := s.WaitAcknowledged(ctx, id)
	t := s.turn(c.ChatID, from, qid)
	t.UpdateID = id
	if err != nil {
		return t, fmt.Errorf("telegramtest: update %d in chat %d: %w", id, c.ChatID, err)
	}
	return t, nil
}

// turn collects what the bot did in chat since from.
func (s *Server) turn(chat int64, from mark, qid string) *Turn {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := &Turn{}
	t.Sent = append([]Message{}, s.sent[from.sent:]...)
	for _, m := range t.Sent {
		if m.ChatID == chat {
			t.Replies = append(t.Replies, m)
		}
	}
	t.Edited = append([]Message(nil), s.edits[from.edits:]...)
	if qid != "" {
		for _, r := range s.requests[from.requests:] {
			if strings.EqualFold(r.Method, "answerCallbackQuery") && r.Params.Get("callback_query_id") == qid {
				alert, _ := strconv.ParseBool(r.Params.Get("show_alert"))
				t.Answer = &CallbackAnswer{Text: r.Params.Get("text"), ShowAlert: alert, URL: r.Params.Get("url")}
			}
		}
	}
	return t
}

// Send sends text as the user's message (see [Chat.MessageUpdate]), as
// Deliver does.
func (c *Chat) Send(ctx context.Context, text string) (*Turn, error) {
	raw := c.MessageUpdate(text)
	t, err := c.Deliver(ctx, raw)
	t.MessageID = messageIDOf(raw)
	return t, err
}

// Edit edits the user's message messageID to text (see
// [Chat.EditUpdate]), as Deliver does.
func (c *Chat) Edit(ctx context.Context, messageID int, text string) (*Turn, error) {
	t, err := c.Deliver(ctx, c.EditUpdate(messageID, text))
	t.MessageID = messageID
	return t, err
}

// Press presses button (its text or callback data) under the bot's
// latest message in the chat that has it (see [Chat.PressUpdate]), as
// Deliver does; the turn's Answer is the bot's answer to the callback
// query. The error wraps [ErrNoButton] when no message has the button.
func (c *Chat) Press(ctx context.Context, button string) (*Turn, error) {
	raw, label, qid, err := c.pressUpdate(button)
	if err != nil {
		return &Turn{Button: button}, err
	}
	t, err := c.deliver(ctx, raw, qid)
	t.Button = label
	return t, err
}

// Migrate turns the group into the supergroup superID as Telegram does
// (see [Chat.MigrationUpdates]): it delivers both service messages, the
// one in the group first, and returns the user's chat in the supergroup
// and the turn of the second. Sending to the group afterwards fails as
// on Telegram: 400 "Bad Request: group chat was upgraded to a supergroup
// chat" with migrate_to_chat_id.
func (c *Chat) Migrate(ctx context.Context, superID int64) (*Chat, *Turn, error) {
	to, from := c.MigrationUpdates(superID)
	c.srv.migrated(c.ChatID, superID)
	super := c.inChat(superID, "supergroup")
	if t, err := c.Deliver(ctx, to); err != nil {
		return super, t, err
	}
	t, err := super.Deliver(ctx, from)
	return super, t, err
}

// messageIDOf reads the message_id of a one-message update's JSON.
func messageIDOf(raw []byte) int {
	var u map[string]struct {
		MessageID int `json:"message_id"`
	}
	_ = json.Unmarshal(raw, &u)
	for _, m := range u {
		return m.MessageID
	}
	return 0
}
