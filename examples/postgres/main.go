// Command postgres keeps sessions in PostgreSQL through pgstore, so
// several processes of one bot (replicas behind a webhook load balancer,
// or a rolling deploy) share them: the store locks each session key in
// the database while an update uses it, so replicas never lose each
// other's writes.
//
// The bot counts each chat's visits: /visit adds one and says which
// replica answered. The demo runs two replicas, each with its own
// connection pool and store, and gives them alternate updates.
//
// Without TELEGRAM_BOT_TOKEN it plays a scripted conversation against a
// fake Telegram, using the database at DATABASE_URL (default
// postgres://postgres@127.0.0.1:5432/test?sslmode=disable) in tables of
// its own, which it drops at the end. If PostgreSQL does not answer, it
// says so and falls back to the in-memory store, which only replicas in
// one process can share:
//
//	go run ./examples/postgres
//
// With a token it runs one replica against Telegram until interrupted,
// with the sessions in the table tg_sessions (created if missing):
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... DATABASE_URL=postgres://... go run ./examples/postgres
//
// This example is a Go module of its own, so that the core module depends
// on nothing but tgbotapi.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo"
	"github.com/tgsession/session/pgstore"
)

// Visits is a chat's session.
type Visits struct {
	Count int `json:"count"`
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

// connect opens a pool, checks that the database answers, and returns a
// store in table, with its tables created.
func connect(ctx context.Context, dsn, table string) (*pgxpool.Pool, *pgstore.Store, error) {
	pingCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	pool, err := pgxpool.New(pingCtx, dsn)
	if err != nil {
		return nil, nil, err
	}
	if err := pool.Ping(pingCtx); err != nil {
		pool.Close()
		return nil, nil, err
	}
	store, err := pgstore.New(pool, pgstore.Options{Table: table})
	if err == nil {
		err = store.Migrate(ctx)
	}
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return pool, store, nil
}

// stores returns n stores sharing one place: PostgreSQL if it answers (one
// pool per store, as separate processes would have), else one memory
// store. The clean-up function closes the pools; with drop, it also drops
// the tables.
func stores(ctx context.Context, out io.Writer, dsn, table string, n int, drop bool) ([]session.Store, func() error, error) {
	var all []session.Store
	var pools []*pgxpool.Pool
	cleanup := func() error {
		var err error
		if drop && len(pools) > 0 {
			_, err = pools[0].Exec(context.WithoutCancel(ctx), fmt.Sprintf(`DROP TABLE IF EXISTS %q, %q`, table, table+"_locks"))
		}
		for _, p := range pools {
			p.Close()
		}
		return err
	}
	for range n {
		pool, store, err := connect(ctx, dsn, table)
		if err != nil {
			cerr := cleanup()
			fmt.Fprintf(out, "# PostgreSQL does not answer at %s (%s).\n", where(dsn), strings.Join(strings.Fields(err.Error()), " "))
			fmt.Fprintln(out, "# Falling back to the in-memory store (session.NewMemory): shared by the replicas in this process only, and lost when it stops.")
			mem := session.NewMemory()
			all = all[:0]
			for range n {
				all = append(all, mem)
			}
			return all, func() error { return nil }, cerr
		}
		all, pools = append(all, store), append(pools, pool)
	}
	fmt.Fprintf(out, "# Using PostgreSQL at %s, table %q.\n", where(dsn), table)
	return all, cleanup, nil
}

// where names the server and database of dsn without its password.
func where(dsn string) string {
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return "DATABASE_URL (unparsable)"
	}
	c := cfg.ConnConfig
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

func main() { demo.Main("postgres", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) (err error) {
	dsn := os.Getenv("DATABASE_URL")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	}
	if token == "" {
		return play(ctx, out, dsn)
	}
	st, cleanup, err := stores(ctx, out, dsn, "tg_sessions", 1, false)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cleanup()) }()
	h, err := newBot("A", st[0])
	if err != nil {
		return err
	}
	return demo.Serve(ctx, out, token, h, "")
}

// play runs two replicas over one store and alternates the updates
// between them, then drops the demo's tables.
func play(ctx context.Context, out io.Writer, dsn string) (err error) {
	table := fmt.Sprintf("tgsession_example_%d", time.Now().UnixNano())
	st, cleanup, err := stores(ctx, out, dsn, table, 2, true)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, cleanup()) }()

	a, err := newBot("A", st[0])
	if err != nil {
		return err
	}
	b, err := newBot("B", st[1])
	if err != nil {
		return err
	}
	h := demo.Alternate(a, b)
	return demo.Play(ctx, out, "postgres", h, []demo.Line{
		{From: "Alice", Text: "/visit"},
		{From: "Alice", Text: "/visit"},
		{From: "Bob", Text: "/visit"},
		{From: "Alice", Text: "/visit"},
		{From: "Bob", Text: "/visit"},
	})
}
