package session

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// Serve calls h for every update received from updates (for example
// bot.GetUpdatesChan(...)) until updates is closed or ctx is done, then
// waits for the handlers still running. It returns ctx.Err() if ctx ended
// it, else nil.
//
// Updates of one chat (or, without a chat, of one user) are handled one
// after another in the order they arrived, so a conversation is never
// reordered; different chats are handled concurrently. Updates with
// neither run at once. A handler's error, or its panic turned into an
// error, goes to onError; nil onError logs it with slog.Default().
//
// Deprecated: Serve loses updates on stop (handlers save with the
// cancelled context, queued updates are dropped, and tgbotapi's channel
// has already confirmed what it buffered) and has no bounds. Use
// runner.Run from github.com/tgsession/session/runner, which stops
// gracefully, confirms only finished updates and bounds goroutines and
// queues. Serve will be removed.
func Serve[S any](ctx context.Context, bot *tgbotapi.BotAPI, updates <-chan tgbotapi.Update, h Handler[S], onError func(*Context[S], error)) error {
	if onError == nil {
		onError = func(c *Context[S], err error) {
			slog.Default().ErrorContext(c, "session: handler failed", "update_id", c.Update.UpdateID, "error", err)
		}
	}
	d := &dispatcher[S]{ctx: ctx, bot: bot, h: h, onError: onError, queues: map[string][]tgbotapi.Update{}}
	defer d.wg.Wait()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case u, ok := <-updates:
			if !ok {
				return nil
			}
			d.dispatch(u)
		}
	}
}

// dispatcher runs at most one goroutine per ordering key, which drains
// that key's queue and exits when it is empty: no goroutine per idle chat.
type dispatcher[S any] struct {
	ctx     context.Context
	bot     *tgbotapi.BotAPI
	h       Handler[S]
	onError func(*Context[S], error)
	wg      sync.WaitGroup

	mu     sync.Mutex
	queues map[string][]tgbotapi.Update // key -> updates waiting behind the running one
}

func (d *dispatcher[S]) dispatch(u tgbotapi.Update) {
	key, ok := ByChat(&u)
	if !ok {
		key, ok = ByUser(&u)
		key = "user " + key
	}
	d.wg.Add(1)
	if !ok {
		go func() { defer d.wg.Done(); d.handle(u) }()
		return
	}
	d.mu.Lock()
	if q, busy := d.queues[key]; busy {
		d.queues[key] = append(q, u)
		d.mu.Unlock()
		d.wg.Done()
		return
	}
	d.queues[key] = nil
	d.mu.Unlock()
	go func() {
		defer d.wg.Done()
		for {
			d.handle(u)
			d.mu.Lock()
			q := d.queues[key]
			if len(q) == 0 || d.ctx.Err() != nil {
				delete(d.queues, key)
				d.mu.Unlock()
				return
			}
			u, d.queues[key] = q[0], q[1:]
			d.mu.Unlock()
		}
	}()
}

func (d *dispatcher[S]) handle(u tgbotapi.Update) {
	c := NewContext[S](d.ctx, d.bot, u)
	defer func() {
		if r := recover(); r != nil {
			d.onError(c, fmt.Errorf("session: handler panicked: %v\n%s", r, debug.Stack()))
		}
	}()
	if err := d.h(c); err != nil {
		d.onError(c, err)
	}
}
