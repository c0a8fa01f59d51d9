// Package demo plays the scripted conversations of the examples offline:
// it starts the fake Bot API server from telegramtest, runs the example's
// handler against it with runner.Run (long polling, exactly as in
// production), sends the script's messages and button presses one at a
// time, waits until each has been handled, and prints what the users said
// and what the bot answered.
//
// It also holds the rest of the plumbing the example programs share: Main
// (signals and exit status), Serve (the bot on the real Telegram through
// runner.Run, with errors logged), and Clock (a fake clock for demos in
// which time passes). The bot code worth reading is in each example's
// main.go; examples/pizza shows the plumbing written out in full.
package demo

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// Users gives every demo user a Telegram user ID; a user's private chat
// with the bot has the same ID, as on Telegram.
var Users = map[string]int64{"Alice": 101, "Bob": 202, "Carol": 303}

// Line is one step of a script: a message, a button press, or a raw
// update, from user From, optionally preceded by Before.
type Line struct {
	// From is the user (a key of Users).
	From string
	// Chat is the chat, 0 for From's private chat with the bot.
	Chat int64
	// Text is a message to send.
	Text string
	// Press is the callback data of a button to press under the bot's
	// latest message with buttons in Chat.
	Press string
	// Update is a raw update to deliver instead (a service message, say);
	// Note describes it in the transcript.
	Update *tgbotapi.Update
	// Note is printed before the line, e.g. "(a day passes)".
	Note string
	// Before runs before the line is sent, e.g. to move a fake clock.
	Before func()
}

// Header is the first line of every demo's output; tests look for it.
const Header = "# Demo against a fake Telegram server (no network, no token)."

// Transcript returns the transcript lines of a demo's output: every line
// that is not empty and does not start with "#".
func Transcript(out string) []string {
	var lines []string
	for _, l := range strings.Split(out, "\n") {
		if l != "" && !strings.HasPrefix(l, "#") {
			lines = append(lines, l)
		}
	}
	return lines
}

// Play runs h against a fake Telegram, plays script, and writes the
// transcript to out. name is the example's directory, for the hint on how
// to run it for real. It returns the handler errors, if any, joined.
func Play[S any](ctx context.Context, out io.Writer, name string, h session.Handler[S], script []Line) error {
	fmt.Fprintln(out, Header)
	fmt.Fprintf(out, "# To run it on the real Telegram: TELEGRAM_BOT_TOKEN=<token from @BotFather> go run ./examples/%s\n", name)

	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("demo-token", srv.Endpoint())
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}

	// Each step waits until the runner confirmed its update, which it
	// does once the handler returned; results has the handler's error by
	// then.
	var (
		mu      sync.Mutex
		results = map[int]error{}
	)
	record := func(id int, err error) {
		mu.Lock()
		defer mu.Unlock()
		results[id] = err
	}
	wrapped := func(c *session.Context[S]) error {
		defer func() {
			if r := recover(); r != nil {
				record(c.Update.UpdateID, fmt.Errorf("panic: %v", r))
				panic(r) // the runner reports it
			}
		}()
		err := h(c)
		record(c.Update.UpdateID, err)
		return err
	}
	playCtx, failed := context.WithCancelCause(ctx)
	defer failed(nil)
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() {
		served <- runner.Run(runCtx, bot, passThrough[S]{}, wrapped, runner.Options{
			OnError: func(_ context.Context, u *tgbotapi.Update, _ string, err error) {
				if u == nil {
					failed(fmt.Errorf("%w: %w", errPolling, err)) // the demo cannot go on
				}
			},
		})
	}()

	var errs []error
	for _, l := range script {
		if l.Before != nil {
			l.Before()
		}
		if l.Note != "" {
			fmt.Fprintln(out, l.Note)
		}
		id := l.Chat
		if id == 0 {
			id = Users[l.From]
		}
		where := ""
		if id != Users[l.From] {
			where = fmt.Sprintf(" in %d", id)
		}
		chat := srv.Chat(id, Users[l.From])
		var (
			turn  *telegramtest.Turn
			raw   []byte
			label string
		)
		switch {
		case l.Update != nil:
			if raw, err = json.Marshal(l.Update); err == nil {
				turn, err = chat.Deliver(playCtx, raw)
			}
		case l.Press != "":
			raw, label, err = chat.PressUpdate(l.Press)
			if errors.Is(err, telegramtest.ErrNoButton) {
				errs = append(errs, fmt.Errorf("demo: no button %q in chat %d", l.Press, id))
				continue
			}
			if err == nil {
				fmt.Fprintf(out, "%s%s: [presses %s]\n", l.From, where, label)
				turn, err = chat.Deliver(playCtx, raw)
			}
		default:
			fmt.Fprintf(out, "%s%s: %s\n", l.From, where, l.Text)
			turn, err = chat.Send(playCtx, l.Text)
		}
		if err != nil {
			if cause := context.Cause(playCtx); cause != nil {
				return errors.Join(append(errs, cause)...)
			}
			return errors.Join(append(errs, fmt.Errorf("demo: %w", err))...)
		}
		mu.Lock()
		herr := results[turn.UpdateID]
		mu.Unlock()
		if herr != nil {
			errs = append(errs, fmt.Errorf("update %d: %w", turn.UpdateID, herr))
			fmt.Fprintf(out, "  (the handler failed: %v)\n", herr)
		}
		for _, m := range turn.Sent {
			bwhere := ""
			if m.ChatID != Users[l.From] {
				bwhere = fmt.Sprintf(" in %d", m.ChatID)
			}
			prefix := "  bot" + bwhere + ": "
			text := strings.ReplaceAll(m.Text, "\n", "\n"+strings.Repeat(" ", len(prefix)))
			fmt.Fprintf(out, "%s%s%s\n", prefix, text, buttons(m))
		}
	}

	// Graceful stop: the runner finishes what it took, confirms the
	// offset, and returns; only then is the server closed.
	stop()
	if err := <-served; err != nil {
		errs = append(errs, fmt.Errorf("demo: runner: %w", err))
	}
	return errors.Join(errs...)
}

// buttons renders a message's inline keyboard, e.g. " [S] [M] [L]".
func buttons(m telegramtest.Message) string {
	var b strings.Builder
	for _, label := range m.Buttons() {
		fmt.Fprintf(&b, " [%s]", label)
	}
	return b.String()
}

var errPolling = errors.New("demo: polling failed")
