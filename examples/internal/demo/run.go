package demo

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
)

// Run is an example's entry point: with a token it serves Telegram until
// ctx is done; without one it plays the offline demo and writes its
// transcript to out.
type Run func(ctx context.Context, out io.Writer, token string) error

// Main calls run with the token in TELEGRAM_BOT_TOKEN until the process is
// interrupted (Ctrl-C or SIGTERM), which stops the bot gracefully. If run
// fails, Main prints the error after name and exits with status 1.
func Main(name string, run Run) {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Stdout, os.Getenv("TELEGRAM_BOT_TOKEN"))
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, name+":", err)
		os.Exit(1)
	}
}

// Serve runs h against the real Telegram with token, long polling through
// runner.Run, until ctx is done; failed updates and polls are logged with
// slog. It says on out that the bot is running; detail, if not empty, is
// added to that line (e.g. "with sessions in sessions.db").
func Serve[S any](ctx context.Context, out io.Writer, token string, h session.Handler[S], detail string) error {
	bot, err := tgbotapi.NewBotAPI(token)
	if err != nil {
		return err
	}
	if detail != "" {
		detail = " " + detail
	}
	fmt.Fprintf(out, "@%s is running%s; press Ctrl-C to stop.\n", bot.Self.UserName, detail)
	return runner.Run(ctx, bot, passThrough[S]{}, h, runner.Options{OnError: logError})
}

// passThrough is the session the demos give runner.Run: their handlers
// come with their own session middleware (built from the example's
// Options), so it adds none, and it orders updates by chat, then by user,
// as the examples' sessions are keyed.
type passThrough[S any] struct{}

func (passThrough[S]) Middleware(h session.Handler[S]) session.Handler[S] { return h }

func (passThrough[S]) Key(u session.Update) (string, bool) {
	if k, ok := session.ByChat(u); ok {
		return k, true
	}
	return session.ByUser(u)
}

// logError logs what the runner reports: handler errors, and polling
// failures (u == nil) that it retries.
func logError(ctx context.Context, u *tgbotapi.Update, key string, err error) {
	if u == nil {
		slog.WarnContext(ctx, "polling failed; retrying", "error", err)
		return
	}
	slog.ErrorContext(ctx, "update failed", "update_id", u.UpdateID, "key", key, "error", err)
}

// Clock is a fake clock for demos that let time pass (TTLs, timeouts):
// pass its Now to the session options, and its Pass to a Line's Before.
type Clock struct {
	mu  sync.Mutex
	now time.Time
}

// NewClock returns a clock that stands at now until told to move.
func NewClock(now time.Time) *Clock {
	return &Clock{now: now}
}

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Pass returns a function that moves the clock forward by d.
func (c *Clock) Pass(d time.Duration) func() {
	return func() {
		c.mu.Lock()
		defer c.mu.Unlock()
		c.now = c.now.Add(d)
	}
}

// Alternate returns a handler that gives the first, third, fifth...
// update it handles to replica a and the others to replica b, as a load
// balancer in front of two processes of one bot might. It counts the
// updates rather than reading their ids, which the fake Telegram starts
// at a random number. The demos play one update at a time, so the turns
// are those of the script.
func Alternate[S any](a, b session.Handler[S]) session.Handler[S] {
	var mu sync.Mutex
	n := 0
	return func(c *session.Context[S]) error {
		mu.Lock()
		n++
		odd := n%2 == 1
		mu.Unlock()
		if odd {
			return a(c)
		}
		return b(c)
	}
}
