// Command chat-migration keeps a group's shopping list when the group
// becomes a supergroup. Telegram then gives the chat a new id and sends
// two service messages: one in the old chat (MigrateToChatID) and one in
// the new chat (MigrateFromChatID). With [session.Options] ChatMigration
// set, the session moves from the old chat's key to the new one under both
// keys' locks, once, and the old chat's later updates follow it.
//
// /add <item> adds to the chat's list, /list shows it, /keys lists the
// stored session keys.
//
// Without TELEGRAM_BOT_TOKEN it plays the migration of a group against a
// fake Telegram and prints it:
//
//	go run ./examples/chat-migration
//
// With a token it runs against Telegram until interrupted:
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... go run ./examples/chat-migration
package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo"
)

// List is a chat's session.
type List struct {
	Items []string `json:"items"`
}

// newBot returns the handler: the chat migration is part of the
// session's Options.
func newBot(store session.Store) (session.Handler[List], error) {
	sess, err := session.New(session.Options[List]{Storage: store, ChatMigration: true})
	if err != nil {
		return nil, err
	}
	return sess.Middleware(func(c *session.Context[List]) error {
		m := c.Update.Message
		if m == nil {
			return nil
		}
		s, err := c.Session()
		if err != nil {
			return err
		}
		var reply string
		switch {
		case m.MigrateFromChatID != 0:
			// The service message in the new chat: the list is already here.
			reply = fmt.Sprintf("This group is now a supergroup; its list came along (%d on it).", len(s.Items))
		case m.Command() == "add":
			s.Items = append(s.Items, m.CommandArguments())
			reply = fmt.Sprintf("Added; %d on the list.", len(s.Items))
		case m.Command() == "list":
			reply = "The list: " + strings.Join(s.Items, ", ") + "."
		case m.Command() == "keys":
			var keys []string
			for e, err := range sess.Entries(c) {
				if err != nil {
					return err
				}
				keys = append(keys, e.Key)
			}
			slices.Sort(keys)
			reply = "Stored: " + strings.Join(keys, ", ")
		default:
			return nil
		}
		_, err = c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, reply))
		return err
	}), nil
}

// The demo's group, before and after it became a supergroup.
const (
	group      = -1001
	supergroup = -1009876543210
)

// service is the service message Telegram sends in chat about the move.
func service(chat int64, chatType string, to, from int64, id int) *tgbotapi.Update {
	return &tgbotapi.Update{Message: &tgbotapi.Message{
		MessageID:         id,
		From:              &tgbotapi.User{ID: demo.Users["Alice"], FirstName: "Alice"},
		Chat:              &tgbotapi.Chat{ID: chat, Type: chatType},
		MigrateToChatID:   to,
		MigrateFromChatID: from,
	}}
}

var script = []demo.Line{
	{From: "Alice", Chat: group, Text: "/add milk"},
	{From: "Bob", Chat: group, Text: "/add bread"},
	{From: "Alice", Chat: group, Text: "/keys"},
	{From: "Alice", Update: service(group, "group", supergroup, 0, 9001),
		Note: fmt.Sprintf("(Alice makes the group a supergroup; Telegram: in %d, migrate_to_chat_id %d)", group, supergroup)},
	{From: "Alice", Update: service(supergroup, "supergroup", 0, group, 1),
		Note: fmt.Sprintf("(Telegram: in %d, migrate_from_chat_id %d)", supergroup, group)},
	{From: "Bob", Chat: supergroup, Text: "/add eggs"},
	{From: "Alice", Chat: supergroup, Text: "/list"},
	{From: "Alice", Chat: supergroup, Text: "/keys"},
}

func main() { demo.Main("chat-migration", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) error {
	h, err := newBot(session.NewMemory())
	if err != nil {
		return err
	}
	if token == "" {
		return demo.Play(ctx, out, "chat-migration", h, script)
	}
	return demo.Serve(ctx, out, token, h, "")
}
