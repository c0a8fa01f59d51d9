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
	"errors"
	"fmt"
	"io"
	"strings"
	"sync"
	"time"

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

	t := newTracker()
	wrapped := func(c *session.Context[S]) error {
		defer func() {
			if r := recover(); r != nil {
				t.done(c.Update.UpdateID, fmt.Errorf("panic: %v", r))
				panic(r) // the runner reports it
			}
		}()
		err := h(c)
		t.done(c.Update.UpdateID, err)
		return err
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() {
		served <- runner.Run(runCtx, bot, passThrough[S]{}, wrapped, runner.Options{
			OnError: func(_ context.Context, u *tgbotapi.Update, _ string, err error) {
				if u == nil {
					t.fail(err) // polling failed: the demo cannot go on
				}
			},
		})
	}()

	var errs []error
	seen := 0 // messages of srv.Sent() already printed
	for _, l := range script {
		if l.Before != nil {
			l.Before()
		}
		if l.Note != "" {
			fmt.Fprintln(out, l.Note)
		}
		chat := l.Chat
		if chat == 0 {
			chat = Users[l.From]
		}
		where := ""
		if chat != Users[l.From] {
			where = fmt.Sprintf(" in %d", chat)
		}
		var id int
		switch {
		case l.Update != nil:
			id = srv.AddUpdate(*l.Update)
		case l.Press != "":
			msg, label, ok := findButton(srv.Sent(), chat, l.Press)
			if !ok {
				errs = append(errs, fmt.Errorf("demo: no button %q in chat %d", l.Press, chat))
				continue
			}
			if id, err = srv.PressButton(chat, Users[l.From], msg, l.Press); err != nil {
				return errors.Join(append(errs, fmt.Errorf("demo: %w", err))...)
			}
			fmt.Fprintf(out, "%s%s: [presses %s]\n", l.From, where, label)
		default:
			id = srv.SendMessage(chat, Users[l.From], l.Text)
			fmt.Fprintf(out, "%s%s: %s\n", l.From, where, l.Text)
		}
		if err := t.wait(ctx, id); err != nil {
			if ctx.Err() != nil || errors.Is(err, errPolling) {
				return errors.Join(append(errs, err)...)
			}
			errs = append(errs, fmt.Errorf("update %d: %w", id, err))
			fmt.Fprintf(out, "  (the handler failed: %v)\n", err)
		}
		sent := srv.Sent()
		for _, m := range sent[seen:] {
			bwhere := ""
			if m.ChatID != Users[l.From] {
				bwhere = fmt.Sprintf(" in %d", m.ChatID)
			}
			prefix := "  bot" + bwhere + ": "
			text := strings.ReplaceAll(m.Text, "\n", "\n"+strings.Repeat(" ", len(prefix)))
			fmt.Fprintf(out, "%s%s%s\n", prefix, text, buttons(m))
		}
		seen = len(sent)
	}

	// Graceful stop: the runner finishes what it took, confirms the
	// offset, and returns; only then is the server closed.
	stop()
	if err := <-served; err != nil {
		errs = append(errs, fmt.Errorf("demo: runner: %w", err))
	}
	return errors.Join(errs...)
}

// findButton finds the latest message in chat with a button whose data is
// data, and returns its ID and the button's label.
func findButton(sent []telegramtest.Message, chat int64, data string) (int, string, bool) {
	for i := len(sent) - 1; i >= 0; i-- {
		if sent[i].ChatID != chat {
			continue
		}
		for _, row := range sent[i].InlineKeyboard {
			for _, b := range row {
				if b.CallbackData != nil && *b.CallbackData == data {
					return sent[i].MessageID, b.Text, true
				}
			}
		}
	}
	return 0, "", false
}

// buttons renders a message's inline keyboard, e.g. " [S] [M] [L]".
func buttons(m telegramtest.Message) string {
	var b strings.Builder
	for _, row := range m.InlineKeyboard {
		for _, k := range row {
			fmt.Fprintf(&b, " [%s]", k.Text)
		}
	}
	return b.String()
}

var errPolling = errors.New("demo: polling failed")

// tracker tells the script when an update has been handled.
type tracker struct {
	mu      sync.Mutex
	results map[int]error
	failed  error
	changed chan struct{} // closed and replaced on every change
}

func newTracker() *tracker {
	return &tracker{results: map[int]error{}, changed: make(chan struct{})}
}

func (t *tracker) done(id int, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.results[id] = err
	close(t.changed)
	t.changed = make(chan struct{})
}

func (t *tracker) fail(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.failed == nil {
		t.failed = fmt.Errorf("%w: %w", errPolling, err)
		close(t.changed)
		t.changed = make(chan struct{})
	}
}

// wait returns the handler's error for update id once it has run.
func (t *tracker) wait(ctx context.Context, id int) error {
	// A demo that hangs is a bug; fail it rather than wait forever.
	timeout := time.NewTimer(10 * time.Second)
	defer timeout.Stop()
	for {
		t.mu.Lock()
		err, ok := t.results[id]
		failed, changed := t.failed, t.changed
		t.mu.Unlock()
		switch {
		case ok:
			return err
		case failed != nil:
			return failed
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-timeout.C:
			return fmt.Errorf("demo: update %d was not handled within 10s", id)
		}
	}
}
