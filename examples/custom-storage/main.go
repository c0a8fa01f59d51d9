// Command custom-storage keeps sessions in files, through a storage
// adapter written in a few lines: [FileStore] stores bytes, one file per
// session; the session's codec (JSON by default) turns them into typed
// sessions.
// Its test checks the adapter with the conformance suite storagetest.Run.
//
// The bot counts each chat's visits: /visit adds one and says how many.
//
// Without TELEGRAM_BOT_TOKEN it plays a scripted conversation against a
// fake Telegram, restarting the bot half way to show that the sessions
// outlive it:
//
//	go run ./examples/custom-storage
//
// With a token it runs against Telegram until interrupted, with the
// sessions in ./sessions (or SESSIONS_DIR):
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... go run ./examples/custom-storage
package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sync/atomic"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo"
)

// FileStore is a [session.Store] that keeps each session in
// a file of Dir. It has no Locker, so the middleware locks its keys in a
// process-wide table: fine for one process, as files on one disk are.
type FileStore struct{ Dir string }

// path names the file of key by its hash, so any key, however long or
// odd, is a safe file name.
func (s FileStore) path(key string) string {
	sum := sha256.Sum256([]byte(key))
	return filepath.Join(s.Dir, hex.EncodeToString(sum[:]))
}

// Read returns the bytes of key; a missing file is a missing session.
func (s FileStore) Read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	data, err := os.ReadFile(s.path(key))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, false, nil
	}
	return data, err == nil, err
}

// Write replaces the file of key at once: a new file renamed over the old
// one, so a reader never sees half a session.
func (s FileStore) Write(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, err := os.CreateTemp(s.Dir, ".tmp-*")
	if err != nil {
		return err
	}
	_, err = f.Write(value)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), s.path(key))
	}
	if err != nil {
		os.Remove(f.Name())
	}
	return err
}

// Delete removes the file of key; a missing file is not an error.
func (s FileStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if err := os.Remove(s.path(key)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	return nil
}

// Visits is the session of a chat.
type Visits struct {
	Count int `json:"count"`
}

// newBot returns the handler over sessions in dir.
func newBot(dir string) (session.Handler[Visits], error) {
	sess, err := session.New(session.Options[Visits]{Storage: FileStore{Dir: dir}})
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
		_, err = c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, fmt.Sprintf("Visit number %d.", s.Count)))
		return err
	}), nil
}

func main() { demo.Main("custom-storage", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) error {
	if token == "" {
		dir, err := os.MkdirTemp("", "sessions-")
		if err != nil {
			return err
		}
		defer os.RemoveAll(dir)
		// The demo restarts the bot: a new handler and a new store over
		// the same directory.
		var current atomic.Pointer[session.Handler[Visits]]
		var startErr error
		start := func() {
			h, err := newBot(dir)
			if err != nil {
				startErr = err
				return
			}
			current.Store(&h)
		}
		if start(); startErr != nil {
			return startErr
		}
		h := func(c *session.Context[Visits]) error { return (*current.Load())(c) }
		return demo.Play(ctx, out, "custom-storage", h, []demo.Line{
			{From: "Alice", Text: "/visit"},
			{From: "Bob", Text: "/visit"},
			{From: "Alice", Text: "/visit"},
			{From: "Alice", Text: "/visit", Before: start, Note: "(the bot restarts: its sessions are in files)"},
			{From: "Bob", Text: "/visit"},
		})
	}
	dir := os.Getenv("SESSIONS_DIR")
	if dir == "" {
		dir = "sessions"
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	h, err := newBot(dir)
	if err != nil {
		return err
	}
	return demo.Serve(ctx, out, token, h, "with sessions in "+dir)
}
