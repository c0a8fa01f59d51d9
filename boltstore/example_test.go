package boltstore_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	bolt "go.etcd.io/bbolt"

	"github.com/tgsession/session"
	"github.com/tgsession/session/boltstore"
)

// A counter per chat in a file, kept across restarts of a single-process
// bot.
func Example() {
	dir, err := os.MkdirTemp("", "boltstore-example")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(dir)

	// Timeout: a second copy of the bot fails to open the file instead of
	// waiting forever for the first one's file lock.
	db, err := bolt.Open(filepath.Join(dir, "sessions.db"), 0o600, &bolt.Options{Timeout: time.Second})
	if err != nil {
		panic(err)
	}
	defer db.Close()
	store, err := boltstore.New(db, boltstore.Options{
		PurgeInterval: time.Hour, // delete expired sessions hourly
	})
	if err != nil {
		panic(err)
	}
	defer store.Close()

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
	for i := range 3 {
		u := tgbotapi.Update{UpdateID: i, Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 42}}}
		if err := h(session.NewContext[Data](context.Background(), nil, u)); err != nil {
			panic(err)
		}
	}
	// Output:
	// messages so far: 1
	// messages so far: 2
	// messages so far: 3
}
