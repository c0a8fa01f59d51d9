// Command pizza is the pizza counter from the session docs, in Go: it
// counts, per chat, the messages that contain a pizza emoji 🍕 (one per
// message, however many slices it shows) and answers /hunger with that
// chat's count, e.g. "Your hunger level is 3!". The count lives in a
// per-chat session kept in memory (the zero [session.Options]), so it is lost when
// the program stops.
//
// It runs in one of two modes:
//
//   - With TELEGRAM_BOT_TOKEN set, it is a real bot: it long-polls the
//     Telegram Bot API with that token through [runner.Run] until it is
//     interrupted (Ctrl-C or SIGTERM), then stops gracefully: updates
//     already taken are handled and saved, the rest stay with Telegram
//     for the next start.
//
//     TELEGRAM_BOT_TOKEN=123456:ABC... go run ./examples/pizza
//
//   - Without a token, it runs a demo offline: it starts the fake Bot API
//     server from package telegramtest, scripts an interleaved
//     conversation in two chats, runs the very same bot code against it
//     through [runner.Run], waits for every reply, stops the runner and
//     prints the conversation of each chat, then exits.
//
//     go run ./examples/pizza
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// Session is what the bot remembers about each chat.
type Session struct {
	PizzaCount int `json:"pizzaCount"`
}

// newSession returns the bot's session: per chat, strict, in memory (the
// zero Options).
func newSession() (*session.Session[Session], error) {
	return session.New(session.Options[Session]{})
}

// handle answers /hunger and counts messages with a pizza in them.
func handle(c *session.Context[Session]) error {
	m := c.Update.Message
	if m == nil {
		return nil // edits, callbacks and the like: nothing to count
	}
	switch {
	case m.IsCommand() && m.Command() == "hunger":
		s, err := c.Session()
		if err != nil {
			return err
		}
		reply := tgbotapi.NewMessage(m.Chat.ID, fmt.Sprintf("Your hunger level is %d!", s.PizzaCount))
		_, err = c.Bot.Send(reply)
		return err
	case strings.Contains(m.Text, "🍕") || strings.Contains(m.Caption, "🍕"):
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.PizzaCount++
	}
	return nil
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, os.Getenv("TELEGRAM_BOT_TOKEN"))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "pizza:", err)
		os.Exit(1)
	}
}

// run serves the real Telegram with token until ctx is done, or, without
// a token, plays the offline demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) error {
	if token == "" {
		return demo(ctx, out)
	}
	bot, err := tgbotapi.NewBotAPI(token)
	if err != nil {
		return err
	}
	sess, err := newSession()
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "Pizza bot @%s is running; press Ctrl-C to stop.\n", bot.Self.UserName)
	// Run returns once ctx is cancelled and every update it took is
	// handled (or reported below): nil is a normal stop. It orders the
	// updates by the session's key and runs handle behind its middleware.
	return runner.Run(ctx, bot, sess, handle, runner.Options{OnError: logError})
}

// logError is the bot's OnError: failed updates, and failed polls (u is
// nil then, and the runner retries).
func logError(ctx context.Context, u *tgbotapi.Update, key string, err error) {
	if u == nil {
		slog.WarnContext(ctx, "pizza: polling failed; retrying", "error", err)
		return
	}
	slog.ErrorContext(ctx, "pizza: update failed", "update_id", u.UpdateID, "key", key, "error", err)
}

// line is one scripted user message.
type line struct {
	chat string // the user, who is also the private chat
	text string
}

// script is the demo conversation, in the order the messages reach the
// fake server: two chats, interleaved.
var script = []line{
	{"Alice", "🍕"},
	{"Bob", "/hunger"},
	{"Alice", "🍕🍕 double pizza day!"},
	{"Alice", "/hunger"},
	{"Bob", "one 🍕 for me, please"},
	{"Alice", "salad for a change 🥗"},
	{"Alice", "ok, one more 🍕"},
	{"Bob", "/hunger"},
	{"Alice", "/hunger"},
}

// chatIDs gives every demo user a private chat with the bot.
var chatIDs = map[string]int64{"Alice": 101, "Bob": 202}

// demo runs the bot against a fake Telegram server and prints the
// conversation of each chat.
func demo(ctx context.Context, out io.Writer) error {
	fmt.Fprintln(out, "Demo against a fake Telegram server (no network, no token).")
	fmt.Fprintln(out, "To run the bot on the real Telegram: TELEGRAM_BOT_TOKEN=<token from @BotFather> go run ./examples/pizza")
	fmt.Fprintln(out, "The bot counts the messages with a 🍕 in each chat (one per message) and answers /hunger.")
	fmt.Fprintln(out)

	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("demo-token", srv.Endpoint())
	if err != nil {
		return err
	}

	// The whole conversation is queued before the bot starts polling,
	// so updates of both chats arrive together and are served
	// concurrently across chats, in order within each chat.
	var chats []string // in order of first appearance
	want := 0          // replies to wait for
	for _, l := range script {
		id := chatIDs[l.chat]
		if !slices.Contains(chats, l.chat) {
			chats = append(chats, l.chat)
		}
		srv.SendMessage(id, id, l.text)
		if strings.HasPrefix(l.text, "/hunger") {
			want++
		}
	}

	var (
		mu   sync.Mutex // guards errs: handlers of different chats run concurrently
		errs []error
	)
	handlerErrs := func() error {
		mu.Lock()
		defer mu.Unlock()
		return errors.Join(errs...)
	}
	sess, err := newSession()
	if err != nil {
		return err
	}
	runCtx, stopRun := context.WithCancel(ctx)
	served := make(chan error, 1)
	go func() {
		served <- runner.Run(runCtx, bot, sess, handle, runner.Options{
			OnError: func(_ context.Context, u *tgbotapi.Update, _ string, err error) {
				mu.Lock()
				defer mu.Unlock()
				if u == nil {
					errs = append(errs, err)
					return
				}
				errs = append(errs, fmt.Errorf("update %d: %w", u.UpdateID, err))
			},
		})
	}()
	stopped := false
	stop := func() error {
		if stopped {
			return nil
		}
		stopped = true
		// A graceful stop: Run returns after the updates it took are
		// handled, and its last getUpdates ends its long poll, so the
		// server can close at once.
		stopRun()
		return <-served
	}
	defer stop()

	waitCtx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	sent, err := srv.WaitSent(waitCtx, want)
	if err != nil {
		return errors.Join(fmt.Errorf("waiting for %d replies, got %d: %w", want, len(sent), err), handlerErrs())
	}
	if err := stop(); err != nil {
		return err
	}
	if err := handlerErrs(); err != nil {
		return err
	}
	sent = srv.Sent()

	// Replies of one chat arrive in the order of that chat's /hunger
	// messages, because the runner handles each chat's updates in order.
	for _, chat := range chats {
		var replies []string
		for _, m := range sent {
			if m.ChatID == chatIDs[chat] {
				replies = append(replies, m.Text)
			}
		}
		for _, l := range script {
			if l.chat != chat {
				continue
			}
			fmt.Fprintf(out, "[chat %s] %s: %s\n", chat, chat, l.text)
			if strings.HasPrefix(l.text, "/hunger") {
				if len(replies) == 0 {
					return fmt.Errorf("chat %s: no reply to %q", chat, l.text)
				}
				fmt.Fprintf(out, "[chat %s] bot: %s\n", chat, replies[0])
				replies = replies[1:]
			}
		}
		if len(replies) > 0 {
			return fmt.Errorf("chat %s: unexpected replies %q", chat, replies)
		}
	}
	return nil
}
