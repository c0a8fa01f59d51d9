// Command redis keeps sessions in Redis through redisstore, so several
// processes of one bot (replicas behind a webhook load balancer, or a
// rolling deploy) share them: the store locks each session key in Redis
// while an update uses it, so replicas never lose each other's writes.
//
// The bot counts each chat's visits: /visit adds one and says which
// replica answered. The demo runs two replicas, each with its own Redis
// client and store, and gives them alternate updates.
//
// Without TELEGRAM_BOT_TOKEN it plays a scripted conversation against a
// fake Telegram, using Redis at REDIS_ADDR (default 127.0.0.1:6379) under
// a prefix of its own, which it deletes at the end. If Redis does not
// answer, it says so and falls back to the in-memory store, which only
// replicas in one process can share:
//
//	go run ./examples/redis
//
// With a token it runs one replica against Telegram until interrupted:
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... REDIS_ADDR=127.0.0.1:6379 go run ./examples/redis
//
// This example is a Go module of its own, so that the core module depends
// on nothing but tgbotapi.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/redis/go-redis/v9"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo"
	"github.com/tgsession/session/redisstore"
)

// Visits is a chat's session.
type Visits struct {
	Count int `json:"count"`
}

// byteStore is what the bot needs of its store: sessions as bytes, and a
// way to list them (for the demo's clean-up).
type byteStore interface {
	session.Store
	session.Lister
}

// newBot returns the handler of replica name over store.
func newBot(name string, store session.Store) (session.Handler[Visits], error) {
	sess, err := session.New(session.Options[Visits]{Storage: store, TTL: 30 * 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	return sess.Middleware(func(c *session.Context[Visits]) error {
		m := c.Update.Message
		if m == nil || m.Command() != "visit" {
			return nil
		}
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count++
		_, err = c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, fmt.Sprintf("Visit number %d (replica %s).", s.Count, name)))
		return err
	}), nil
}

// connect returns a store in Redis under prefix, or says why Redis does not
// answer and returns nil.
func connect(ctx context.Context, addr, prefix string) (byteStore, func(), error) {
	// A plain dial first: it fails fast and says why, where the client
	// would retry and report only a timeout.
	conn, err := (&net.Dialer{Timeout: time.Second}).DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, nil, err
	}
	conn.Close()
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	pingCtx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	if err := client.Ping(pingCtx).Err(); err != nil {
		client.Close()
		return nil, nil, err
	}
	store, err := redisstore.New(client, redisstore.Options{Prefix: prefix})
	if err != nil {
		client.Close()
		return nil, nil, err
	}
	return store, func() { client.Close() }, nil
}

// stores returns n stores sharing one place: Redis if it answers (one
// client per store, as separate processes would have), else one memory
// store.
func stores(ctx context.Context, out io.Writer, addr, prefix string, n int) ([]byteStore, func(), error) {
	var all []byteStore
	var closers []func()
	closeAll := func() {
		for _, c := range closers {
			c()
		}
	}
	for range n {
		s, closer, err := connect(ctx, addr, prefix)
		if err != nil {
			closeAll()
			fmt.Fprintf(out, "# Redis does not answer at %s (%v).\n", addr, err)
			fmt.Fprintln(out, "# Falling back to the in-memory store (session.NewMemory): shared by the replicas in this process only, and lost when it stops.")
			mem := session.NewMemory()
			all = all[:0]
			for range n {
				all = append(all, mem)
			}
			return all, func() {}, nil
		}
		all, closers = append(all, s), append(closers, closer)
	}
	fmt.Fprintf(out, "# Using Redis at %s, keys prefixed %q.\n", addr, prefix)
	return all, closeAll, nil
}

func main() { demo.Main("redis", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) error {
	addr := os.Getenv("REDIS_ADDR")
	if addr == "" {
		addr = "127.0.0.1:6379"
	}
	if token == "" {
		return play(ctx, out, addr)
	}
	st, closeAll, err := stores(ctx, out, addr, "mybot:", 1)
	if err != nil {
		return err
	}
	defer closeAll()
	h, err := newBot("A", st[0])
	if err != nil {
		return err
	}
	return demo.Serve(ctx, out, token, h, "")
}

// play runs two replicas over one store and alternates the updates
// between them, then deletes the demo's sessions.
func play(ctx context.Context, out io.Writer, addr string) (err error) {
	prefix := fmt.Sprintf("tgsession-example:%d:", time.Now().UnixNano())
	st, closeAll, err := stores(ctx, out, addr, prefix, 2)
	if err != nil {
		return err
	}
	defer closeAll()
	defer func() {
		// Leave nothing behind in a shared Redis.
		for k, ierr := range st[0].Keys(context.WithoutCancel(ctx)) {
			if ierr == nil {
				ierr = st[0].Delete(context.WithoutCancel(ctx), k)
			}
			if ierr != nil {
				err = errors.Join(err, fmt.Errorf("clean-up: %w", ierr))
				return
			}
		}
	}()

	a, err := newBot("A", st[0])
	if err != nil {
		return err
	}
	b, err := newBot("B", st[1])
	if err != nil {
		return err
	}
	h := demo.Alternate(a, b)
	return demo.Play(ctx, out, "redis", h, []demo.Line{
		{From: "Alice", Text: "/visit"},
		{From: "Alice", Text: "/visit"},
		{From: "Bob", Text: "/visit"},
		{From: "Alice", Text: "/visit"},
		{From: "Bob", Text: "/visit"},
	})
}
