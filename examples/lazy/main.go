// Command lazy is a group notes bot on a lazy session: /note <text> adds
// a note to the chat's list, /notes shows it, /stats tells how many
// updates the bot has seen and how many storage reads they cost. The
// group's chatter never touches the session, so with Options.Lazy it
// costs no storage call and takes no lock: only the updates that use the
// session read it (two reads each on Memory: the session and, beside it,
// its record of applied updates, which makes a redelivered update harmless).
//
// Without TELEGRAM_BOT_TOKEN it plays a scripted group conversation
// against a fake Telegram and prints it:
//
//	go run ./examples/lazy
//
// With a token it runs against Telegram until interrupted:
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... go run ./examples/lazy
package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"sync/atomic"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo"
)

// Notes is the session of a chat.
type Notes struct {
	Items []string `json:"items"`
}

// countingStore counts the reads of the store it wraps, to show what lazy
// sessions save. It is a complete Store in three methods; Unwrap keeps the
// capabilities of the store below (Memory's native expiry, its listing).
type countingStore struct {
	session.Store
	reads atomic.Int64
}

func (s *countingStore) Read(ctx context.Context, key string) ([]byte, bool, error) {
	s.reads.Add(1)
	return s.Store.Read(ctx, key)
}

// Unwrap returns the wrapped store.
func (s *countingStore) Unwrap() session.Store { return s.Store }

// newBot returns the bot's handler.
func newBot() (session.Handler[Notes], error) {
	store := &countingStore{Store: session.NewMemory()}
	var updates atomic.Int64
	sess, err := session.New(session.Options[Notes]{Storage: store, Lazy: true})
	if err != nil {
		return nil, err
	}
	return sess.Middleware(func(c *session.Context[Notes]) error {
		n := updates.Add(1)
		m := c.Update.Message
		if m == nil || !m.IsCommand() {
			return nil // chatter, edits, button presses: the session is never read
		}
		var reply string
		switch m.Command() {
		case "note":
			s, err := c.Session() // the first (and only) read of this update
			if err != nil {
				return err
			}
			s.Items = append(s.Items, m.CommandArguments())
			reply = fmt.Sprintf("Noted (%d).", len(s.Items))
		case "notes":
			s, err := c.Session()
			if err != nil {
				return err
			}
			var b strings.Builder
			for i, it := range s.Items {
				fmt.Fprintf(&b, "%d. %s\n", i+1, it)
			}
			reply = strings.TrimSpace(b.String())
			if reply == "" {
				reply = "No notes yet."
			}
		case "stats":
			reply = fmt.Sprintf("%d updates, %d storage reads.", n, store.reads.Load())
		default:
			return nil
		}
		_, err := c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, reply))
		return err
	}), nil
}

// group is the demo's group chat.
const group = -1001

var script = []demo.Line{
	{From: "Alice", Chat: group, Text: "morning all"},
	{From: "Alice", Chat: group, Text: "/note book the room"},
	{From: "Bob", Chat: group, Text: "coffee first"},
	{From: "Bob", Chat: group, Text: "/note bring the slides"},
	{From: "Carol", Chat: group, Text: "ok!"},
	{From: "Alice", Chat: group, Text: "/notes"},
	{From: "Bob", Chat: group, Text: "/stats"},
}

func main() { demo.Main("lazy", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) error {
	h, err := newBot()
	if err != nil {
		return err
	}
	if token == "" {
		return demo.Play(ctx, out, "lazy", h, script)
	}
	return demo.Serve(ctx, out, token, h, "")
}
