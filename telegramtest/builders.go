package telegramtest

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"time"
	"unicode/utf16"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// The JSON of updates as the Bot API documents it. Unlike tgbotapi's
// types, these carry message_thread_id, is_topic_message and
// business_connection_id, and omit what Telegram omits.
type (
	rawUser struct {
		ID        int64  `json:"id"`
		IsBot     bool   `json:"is_bot"`
		FirstName string `json:"first_name"`
		UserName  string `json:"username,omitempty"`
	}
	rawChat struct {
		ID        int64  `json:"id"`
		Type      string `json:"type"`
		Title     string `json:"title,omitempty"`
		UserName  string `json:"username,omitempty"`
		FirstName string `json:"first_name,omitempty"`
		IsForum   bool   `json:"is_forum,omitempty"`
	}
	rawEntity struct {
		Type   string `json:"type"`
		Offset int    `json:"offset"`
		Length int    `json:"length"`
	}
	rawMessage struct {
		MessageID            int             `json:"message_id"`
		MessageThreadID      int             `json:"message_thread_id,omitempty"`
		From                 *rawUser        `json:"from,omitempty"`
		Chat                 rawChat         `json:"chat"`
		Date                 int64           `json:"date"`
		EditDate             int64           `json:"edit_date,omitempty"`
		BusinessConnectionID string          `json:"business_connection_id,omitempty"`
		IsTopicMessage       bool            `json:"is_topic_message,omitempty"`
		Text                 string          `json:"text,omitempty"`
		Entities             []rawEntity     `json:"entities,omitempty"`
		MigrateToChatID      int64           `json:"migrate_to_chat_id,omitempty"`
		MigrateFromChatID    int64           `json:"migrate_from_chat_id,omitempty"`
		ReplyMarkup          json.RawMessage `json:"reply_markup,omitempty"`
	}
	rawCallbackQuery struct {
		ID           string          `json:"id"`
		From         rawUser         `json:"from"`
		Message      json.RawMessage `json:"message,omitempty"`
		ChatInstance string          `json:"chat_instance"`
		Data         string          `json:"data,omitempty"`
	}
)

// commandRE matches a bot command as Telegram marks it: a "/", 1 to 32
// letters, digits or underscores, and optionally "@" and a bot's username.
var commandRE = regexp.MustCompile(`(^|\s)(/[A-Za-z0-9_]{1,32}(@[A-Za-z0-9_]{3,32})?)(\s|$)`)

// CommandEntities returns the bot_command entities Telegram gives text:
// one for each "/command" or "/command@botname" that starts the text or
// follows white space, with offsets and lengths in UTF-16 code units, as
// Telegram counts them. Text without commands gets none.
func CommandEntities(text string) []tgbotapi.MessageEntity {
	var out []tgbotapi.MessageEntity
	for _, e := range commandEntities(text) {
		out = append(out, tgbotapi.MessageEntity{Type: e.Type, Offset: e.Offset, Length: e.Length})
	}
	return out
}

func commandEntities(text string) []rawEntity {
	var out []rawEntity
	for start := 0; start < len(text); {
		loc := commandRE.FindStringSubmatchIndex(text[start:])
		if loc == nil {
			break
		}
		from, to := start+loc[4], start+loc[5]
		out = append(out, rawEntity{
			Type:   "bot_command",
			Offset: len(utf16.Encode([]rune(text[:from]))),
			Length: len(utf16.Encode([]rune(text[from:to]))),
		})
		start = to // the white space after it may start the next one
	}
	return out
}

// user is the sender of a chat's updates.
func (c *Chat) user() *rawUser {
	id := strconv.FormatInt(c.UserID, 10)
	return &rawUser{ID: c.UserID, FirstName: "User" + id, UserName: "user" + id}
}

// chat is the chat of c's updates.
func (c *Chat) chat() rawChat {
	rc := rawChat{ID: c.ChatID, Type: c.Type}
	switch c.Type {
	case "private":
		u := c.user()
		rc.FirstName, rc.UserName = u.FirstName, u.UserName
	default:
		rc.Title = "Group " + strconv.FormatInt(c.ChatID, 10)
	}
	rc.IsForum = c.ThreadID != 0
	return rc
}

// message builds a message of the user in c; the server gives it an id.
func (c *Chat) message(text string) rawMessage {
	m := rawMessage{
		MessageID:            c.srv.nextMessageID(),
		MessageThreadID:      c.ThreadID,
		IsTopicMessage:       c.ThreadID != 0,
		BusinessConnectionID: c.BusinessConnectionID,
		From:                 c.user(),
		Chat:                 c.chat(),
		Date:                 time.Now().Unix(),
		Text:                 text,
		Entities:             commandEntities(text),
	}
	return m
}

// update encodes an update of one field.
func update(field string, v any) []byte {
	b, err := json.Marshal(map[string]any{field: v})
	if err != nil {
		panic(fmt.Errorf("telegramtest: encoding an update: %w", err)) // the types above always encode
	}
	return b
}

// MessageUpdate returns the JSON of the update Telegram sends when the
// user writes text in the chat: a "message" (a "business_message" in a
// business chat) with a new message id, bot_command entities for the
// commands in text (see [CommandEntities]), and message_thread_id and
// is_topic_message in a forum topic. It has no update_id: the server
// gives it one when it is queued ([Server.AddRawUpdate], [Chat.Deliver]).
func (c *Chat) MessageUpdate(text string) []byte {
	field := "message"
	if c.BusinessConnectionID != "" {
		field = "business_message"
	}
	return update(field, c.message(text))
}

// EditUpdate returns the JSON of the update Telegram sends when the user
// edits their message messageID to text: an "edited_message" (an
// "edited_business_message" in a business chat) with edit_date set.
func (c *Chat) EditUpdate(messageID int, text string) []byte {
	m := c.message(text)
	m.MessageID = messageID
	m.EditDate = m.Date
	field := "edited_message"
	if c.BusinessConnectionID != "" {
		field = "edited_business_message"
	}
	return update(field, m)
}

// MigrationUpdates returns the two updates Telegram sends when the group
// becomes the supergroup superID: in the group, a message with
// migrate_to_chat_id, and in the supergroup, one with
// migrate_from_chat_id.
func (c *Chat) MigrationUpdates(superID int64) (to, from []byte) {
	mt := c.message("")
	mt.Entities = nil
	mt.MigrateToChatID = superID
	super := c.inChat(superID, "supergroup")
	mf := super.message("")
	mf.Entities = nil
	mf.MigrateFromChatID = c.ChatID
	return update("message", mt), update("message", mf)
}

// PressUpdate returns the JSON of the update Telegram sends when the user
// presses button under the bot's latest message in the chat that has it
// (matched by the button's text or its callback data): a
// "callback_query" carrying that message as it is now, and the label of
// the button. The error wraps [ErrNoButton] if no message has it.
func (c *Chat) PressUpdate(button string) (raw []byte, label string, err error) {
	raw, label, _, err = c.pressUpdate(button)
	return raw, label, err
}

// pressUpdate is PressUpdate, also returning the callback query's id.
func (c *Chat) pressUpdate(button string) (raw []byte, label, qid string, err error) {
	s := c.srv
	s.mu.Lock()
	var (
		msg   *tgbotapi.Message
		found *tgbotapi.InlineKeyboardButton
	)
	for i := len(s.sent) - 1; i >= 0 && found == nil; i-- {
		rec := s.sent[i]
		if rec.ChatID != c.ChatID {
			continue
		}
		m, ok := s.messages[msgKey{rec.ChatID, rec.MessageID}]
		if !ok || m.ReplyMarkup == nil {
			continue
		}
		for _, row := range m.ReplyMarkup.InlineKeyboard {
			for j := range row {
				b := row[j]
				if found == nil && b.CallbackData != nil && (*b.CallbackData == button || b.Text == button) {
					found, msg = &b, m
				}
			}
		}
	}
	var mjson []byte
	if found != nil {
		mjson, err = json.Marshal(msg)
	}
	s.lastFileID++
	qid = "cbq-" + strconv.Itoa(s.lastFileID)
	s.mu.Unlock()
	if found == nil {
		return nil, "", "", fmt.Errorf("telegramtest: chat %d: button %q: %w", c.ChatID, button, ErrNoButton)
	}
	if err != nil {
		return nil, "", "", fmt.Errorf("telegramtest: encoding message %d: %w", msg.MessageID, err)
	}
	return update("callback_query", rawCallbackQuery{
		ID:           qid,
		From:         *c.user(),
		Message:      mjson,
		ChatInstance: "ci-" + strconv.FormatInt(c.ChatID, 10),
		Data:         *found.CallbackData,
	}), found.Text, qid, nil
}
