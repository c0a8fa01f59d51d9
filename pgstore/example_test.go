package pgstore_test

import (
	"context"
	"fmt"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tgsession/session"
	"github.com/tgsession/session/pgstore"
)

// A counter per chat in PostgreSQL, shared by every replica of the bot:
// the store's lock keeps two replicas from losing each other's
// increments.
func Example() {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, dsn()) // "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
	if err != nil {
		panic(err)
	}
	defer pool.Close()

	store, err := pgstore.New(pool, pgstore.Options{
		Table:         "example_sessions",
		PurgeInterval: time.Hour, // delete expired sessions hourly
	})
	if err != nil {
		panic(err)
	}
	defer store.Close()
	if err := store.Migrate(ctx); err != nil { // CREATE TABLE IF NOT EXISTS ...
		panic(err)
	}
	defer pool.Exec(ctx, `DROP TABLE example_sessions, example_sessions_locks, example_sessions_applied`) // leave nothing behind

	type Data struct{ Count int }
	sess, err := session.New(session.Options[Data]{
		Storage: store,
		TTL:     30 * 24 * time.Hour, // forget chats idle for a month
	})
	if err != nil {
		panic(err)
	}
	h := sess.Middleware(func(c *session.Context[Data]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count++
		fmt.Println("messages so far:", s.Count)
		return nil
	})

	_ = store.Delete(ctx, "42") // start from scratch
	for i := range 3 {
		u := tgbotapi.Update{UpdateID: i, Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 42}}}
		if err := h(session.NewContext[Data](ctx, nil, u)); err != nil {
			panic(err)
		}
	}
	// Output:
	// messages so far: 1
	// messages so far: 2
	// messages so far: 3
}

// The statements that create the store's tables, for a migration tool.
func ExampleStore_Schema() {
	pool, err := pgxpool.New(context.Background(), dsn()) // connects lazily
	if err != nil {
		panic(err)
	}
	defer pool.Close()
	store, err := pgstore.New(pool, pgstore.Options{Table: "sessions"})
	if err != nil {
		panic(err)
	}
	for _, stmt := range store.Schema() {
		fmt.Println(stmt + ";")
	}
	// Output:
	// CREATE TABLE IF NOT EXISTS "sessions" (
	// 	key        text COLLATE "C" PRIMARY KEY,
	// 	value      bytea NOT NULL,
	// 	expires_at timestamptz
	// );
	// CREATE INDEX IF NOT EXISTS "sessions_expires_at_idx" ON "sessions" (expires_at) WHERE expires_at IS NOT NULL;
	// CREATE UNLOGGED TABLE IF NOT EXISTS "sessions_locks" (
	// 	key        text COLLATE "C" PRIMARY KEY,
	// 	token      text NOT NULL,
	// 	expires_at timestamptz NOT NULL
	// );
	// CREATE TABLE IF NOT EXISTS "sessions_applied" (
	// 	key        text COLLATE "C" PRIMARY KEY,
	// 	marks      text[] NOT NULL,
	// 	expires_at timestamptz NOT NULL
	// ) WITH (fillfactor = 50);
	// CREATE INDEX IF NOT EXISTS "sessions_applied_idx" ON "sessions_applied" (expires_at);
}
