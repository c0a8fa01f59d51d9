// Command bolt keeps sessions in a bbolt file through boltstore: an
// embedded, persistent store for a bot that runs as one process and must
// keep its sessions across restarts, with no database server. Sessions
// expire after 30 days without use.
//
// The bot counts each chat's visits: /visit adds one and says how many;
// /keys lists the stored sessions (boltstore is a session.Lister; the session lists them with Entries).
//
// Without TELEGRAM_BOT_TOKEN it opens a database file in a temporary
// directory and plays a scripted conversation against a fake Telegram,
// restarting the bot (closing and reopening the file) half way:
//
//	go run ./examples/bolt
//
// With a token it runs against Telegram until interrupted, with the
// sessions in sessions.db (or BOLT_PATH):
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... go run ./examples/bolt
//
// This example is a Go module of its own, so that the core module depends
// on nothing but tgbotapi.
package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/tgsession/session"
	"github.com/tgsession/session/boltstore"
	"github.com/tgsession/session/examples/internal/demo"
)

// Visits is a chat's session.
type Visits struct {
	Count int `json:"count"`
}

// open opens the database file and the store in it.
func open(path string) (*bolt.DB, *boltstore.Store, error) {
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		return nil, nil, fmt.Errorf("open %s: %w", path, err)
	}
	store, err := boltstore.New(db, boltstore.Options{PurgeInterval: time.Hour})
	if err != nil {
		db.Close()
		return nil, nil, err
	}
	return db, store, nil
}

// newBot returns the handler over store.
func newBot(store *boltstore.Store) (session.Handler[Visits], error) {
	sess, err := session.New(session.Options[Visits]{Storage: store, TTL: 30 * 24 * time.Hour})
	if err != nil {
		return nil, err
	}
	return sess.Middleware(func(c *session.Context[Visits]) error {
		m := c.Update.Message
		if m == nil {
			return nil
		}
		var reply string
		switch m.Command() {
		case "visit":
			s, err := c.Session()
			if err != nil {
				return err
			}
			s.Count++
			reply = fmt.Sprintf("Visit number %d.", s.Count)
		case "keys":
			var keys []string
			for e, err := range sess.Entries(c) {
				if err != nil {
					return err
				}
				keys = append(keys, e.Key)
			}
			slices.Sort(keys)
			reply = "Stored: " + strings.Join(keys, ", ")
		default:
			return nil
		}
		_, err := c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, reply))
		return err
	}), nil
}

func main() { demo.Main("bolt", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) error {
	if token == "" {
		return play(ctx, out)
	}
	path := os.Getenv("BOLT_PATH")
	if path == "" {
		path = "sessions.db"
	}
	db, store, err := open(path)
	if err != nil {
		return err
	}
	defer db.Close()
	defer store.Close()
	h, err := newBot(store)
	if err != nil {
		return err
	}
	return demo.Serve(ctx, out, token, h, "with sessions in "+path)
}

// play runs the demo over a database file in a temporary directory.
func play(ctx context.Context, out io.Writer) error {
	dir, err := os.MkdirTemp("", "bolt-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "sessions.db")
	fmt.Fprintf(out, "# bbolt is embedded: the sessions are in %s\n", path)

	// The bot as it runs now; restart swaps it for one over the reopened
	// file. Lines are played one at a time, so no update is running then.
	type instance struct {
		db    *bolt.DB
		store *boltstore.Store
		h     session.Handler[Visits]
	}
	var current atomic.Pointer[instance]
	start := func() error {
		db, store, err := open(path)
		if err != nil {
			return err
		}
		h, err := newBot(store)
		if err != nil {
			store.Close()
			db.Close()
			return err
		}
		current.Store(&instance{db, store, h})
		return nil
	}
	shut := func() {
		if in := current.Load(); in != nil {
			in.store.Close()
			in.db.Close()
		}
	}
	defer shut()
	if err := start(); err != nil {
		return err
	}
	var restartErr error
	restart := func() {
		shut()
		restartErr = start()
	}
	h := func(c *session.Context[Visits]) error { return current.Load().h(c) }
	err = demo.Play(ctx, out, "bolt", h, []demo.Line{
		{From: "Alice", Text: "/visit"},
		{From: "Bob", Text: "/visit"},
		{From: "Alice", Text: "/visit"},
		{From: "Alice", Text: "/visit", Before: restart, Note: "(the bot restarts: the file is closed and opened again)"},
		{From: "Bob", Text: "/visit"},
		{From: "Bob", Text: "/keys"},
	})
	if restartErr != nil {
		return restartErr
	}
	return err
}
