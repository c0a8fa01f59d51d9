// Command multi keeps two fragments per update in one multi session: the
// chat's settings (its language, shared by everyone in the chat) and the
// sender's score (one per user, following them from chat to chat). Both
// fragments live in one byte store; their default prefixes ("chat:" and
// "user:") keep them apart, and /keys lists what is stored.
//
// Every message that is not a command earns its sender a point; /score
// tells the sender's points in the chat's language; /lang en|de sets the
// chat's language.
//
// Without TELEGRAM_BOT_TOKEN it plays a scripted conversation in a group
// and a private chat against a fake Telegram and prints it:
//
//	go run ./examples/multi
//
// With a token it runs against Telegram until interrupted:
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... go run ./examples/multi
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

// ChatSettings is kept per chat.
type ChatSettings struct {
	Lang string `json:"lang"`
}

// UserScore is kept per user, across chats.
type UserScore struct {
	Points int `json:"points"`
}

// Session is what a handler sees: both fragments of the update.
type Session struct {
	Chat ChatSettings
	User UserScore
}

// texts are the bot's sentences per language.
var texts = map[string]struct{ score, lang string }{
	"en": {"You have %d point(s).", "Language: English."},
	"de": {"Du hast %d Punkt(e).", "Sprache: Deutsch."},
}

// newBot returns the handler over store, which holds both fragments.
func newBot(store *session.Memory) (session.Handler[Session], error) {
	chat := session.NewFragment("chat", func(s *Session) *ChatSettings { return &s.Chat },
		session.Options[ChatSettings]{
			Storage: store,
			Initial: func() ChatSettings { return ChatSettings{Lang: "en"} },
		})
	user := session.NewFragment("user", func(s *Session) *UserScore { return &s.User },
		session.Options[UserScore]{
			Storage: store,
			Key:     session.ByUser,
		})
	sess, err := session.NewMulti(session.Options[Session]{}, chat, user)
	if err != nil {
		return nil, err
	}
	return sess.Middleware(func(c *session.Context[Session]) error {
		m := c.Update.Message
		if m == nil {
			return nil // edits, button presses: nothing to do
		}
		s, err := c.Session() // both fragments, loaded before the handler
		if err != nil {
			return err
		}
		var reply string
		switch m.Command() {
		case "":
			s.User.Points++ // written back to "user:<id>" after the handler
			return nil
		case "score":
			reply = fmt.Sprintf(texts[s.Chat.Lang].score, s.User.Points)
		case "lang":
			lang := m.CommandArguments()
			if _, ok := texts[lang]; !ok {
				reply = "Use /lang en or /lang de."
				break
			}
			s.Chat.Lang = lang // written back to "chat:<id>"
			reply = texts[lang].lang
		case "keys":
			var keys []string
			for k, err := range store.Keys(c) {
				if err != nil {
					return err
				}
				if strings.ContainsRune(k, '\x1f') {
					continue // the middleware's own, beside a session: its record of applied updates
				}
				keys = append(keys, k)
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

// group is the demo's group chat.
const group = -1001

var script = []demo.Line{
	{From: "Alice", Chat: group, Text: "hi all"},
	{From: "Bob", Chat: group, Text: "hello"},
	{From: "Alice", Chat: group, Text: "/lang de"},
	{From: "Alice", Chat: group, Text: "/score"},
	{From: "Alice", Text: "/score"},
	{From: "Alice", Text: "a point from the private chat"},
	{From: "Alice", Chat: group, Text: "/score"},
	{From: "Bob", Chat: group, Text: "/score"},
	{From: "Alice", Text: "/keys"},
}

func main() { demo.Main("multi", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) error {
	h, err := newBot(session.NewMemory())
	if err != nil {
		return err
	}
	if token == "" {
		return demo.Play(ctx, out, "multi", h, script)
	}
	return demo.Serve(ctx, out, token, h, "")
}
