package boltstore_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"

	"github.com/tgsession/session"
	"github.com/tgsession/session/boltstore"
	"github.com/tgsession/session/storagetest"
)

// openDB opens a fresh database in t's temporary directory. noSync skips
// fsync, which only the persistence test needs.
func openDB(t testing.TB, path string, noSync bool) *bolt.DB {
	t.Helper()
	if path == "" {
		path = filepath.Join(t.TempDir(), "sessions.db")
	}
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: time.Second, NoSync: noSync})
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func newStore(t testing.TB, db *bolt.DB, opts boltstore.Options) *boltstore.Store {
	t.Helper()
	s, err := boltstore.New(db, opts)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	return s
}

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.Store {
		return newStore(t, openDB(t, "", true), boltstore.Options{})
	})
}

// TestConformanceSmallPages: listing over many pages, and a purge loop
// running alongside.
func TestConformanceSmallPages(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.Store {
		return newStore(t, openDB(t, "", true), boltstore.Options{PageSize: 7, PurgeInterval: 10 * time.Millisecond, PurgeBatch: 3})
	})
}

func TestExpiry(t *testing.T) {
	storagetest.RunExpiry(t, func(t *testing.T) session.Store {
		return newStore(t, openDB(t, "", true), boltstore.Options{})
	})
}

// TestExpiryWithPurge: expiry is the same whether the purge has deleted
// an expired session yet or not.
func TestExpiryWithPurge(t *testing.T) {
	storagetest.RunExpiry(t, func(t *testing.T) session.Store {
		return newStore(t, openDB(t, "", true), boltstore.Options{PurgeInterval: 10 * time.Millisecond})
	})
}

// TestCapabilities: the store is an Expirer and a Lister, found as the
// middleware finds them, and has no Locker (the middleware's process-wide
// table serialises a bbolt file's single process).
func TestCapabilities(t *testing.T) {
	s := newStore(t, openDB(t, "", true), boltstore.Options{})
	_, ok := session.Unwrap[session.Expirer](s)
	assert.True(t, ok, "Expirer")
	_, ok = session.Unwrap[session.Lister](s)
	assert.True(t, ok, "Lister")
	_, ok = session.Unwrap[session.Locker](s)
	assert.False(t, ok, "Locker")
}

// TestExpiryEncoding: the expiry is kept in the value's header, as the
// file layout says (format byte 1, 8 bytes big-endian Unix nanoseconds,
// 0 for never), so files written before the byte contract read the same.
func TestExpiryEncoding(t *testing.T) {
	ctx := context.Background()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	db := openDB(t, "", true)
	s := newStore(t, db, boltstore.Options{Now: func() time.Time { return now }})
	require.NoError(t, s.WriteTTL(ctx, "ttl", []byte("v"), time.Minute))
	require.NoError(t, s.Write(ctx, "plain", []byte("w")))
	raw := func(key string) []byte {
		var out []byte
		require.NoError(t, db.View(func(tx *bolt.Tx) error {
			out = bytes.Clone(tx.Bucket([]byte("sessions")).Get([]byte(key)))
			return nil
		}))
		return out
	}
	exp := make([]byte, 8)
	binary.BigEndian.PutUint64(exp, uint64(now.Add(time.Minute).UnixNano()))
	assert.Equal(t, append(append([]byte{1}, exp...), 'v'), raw("ttl"))
	assert.Equal(t, append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0}, 'w'), raw("plain"))

	// Touch rewrites the expiry only; a zero TTL means never.
	now = now.Add(30 * time.Second)
	require.NoError(t, s.Touch(ctx, "ttl", time.Hour))
	binary.BigEndian.PutUint64(exp, uint64(now.Add(time.Hour).UnixNano()))
	assert.Equal(t, append(append([]byte{1}, exp...), 'v'), raw("ttl"))
	require.NoError(t, s.Touch(ctx, "ttl", 0))
	assert.Equal(t, append([]byte{1, 0, 0, 0, 0, 0, 0, 0, 0}, 'v'), raw("ttl"))

	// A value written in that layout by an older version reads back.
	binary.BigEndian.PutUint64(exp, uint64(now.Add(time.Hour).UnixNano()))
	require.NoError(t, db.Update(func(tx *bolt.Tx) error {
		return tx.Bucket([]byte("sessions")).Put([]byte("old"), append(append([]byte{1}, exp...), `{"n":3}`...))
	}))
	v, found, err := s.Read(ctx, "old")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, `{"n":3}`, string(v))
	now = now.Add(2 * time.Hour)
	_, found, err = s.Read(ctx, "old")
	require.NoError(t, err)
	assert.False(t, found, "expired by the stored expiry")
}

// TestPersistence: sessions survive closing and reopening the file, with
// their expiry.
func TestPersistence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	s, err := boltstore.New(db, boltstore.Options{Bucket: "bot"})
	require.NoError(t, err)
	require.NoError(t, s.WriteTTL(ctx, "42", []byte(`{"n":1}`), time.Hour))
	require.NoError(t, s.WriteTTL(ctx, "gone", []byte(`{"n":2}`), time.Hour))
	s.Close()
	require.NoError(t, db.Close())

	// Reopened two hours later: "42" was touched, "gone" was not.
	later := time.Now().Add(2 * time.Hour)
	db = openDB(t, path, false)
	s2 := newStore(t, db, boltstore.Options{Bucket: "bot"})
	require.NoError(t, s2.Touch(ctx, "42", 3*time.Hour))
	s3 := newStore(t, db, boltstore.Options{Bucket: "bot", Now: func() time.Time { return later }})
	v, found, err := s3.Read(ctx, "42")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, `{"n":1}`, string(v))
	_, found, err = s3.Read(ctx, "gone")
	require.NoError(t, err)
	assert.False(t, found, "expired while the file was closed")
}

// TestPurge uses a fake clock: expired sessions are deleted over several
// batches, live ones and ones rewritten since stay.
func TestPurge(t *testing.T) {
	ctx := context.Background()
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	db := openDB(t, "", true)
	s := newStore(t, db, boltstore.Options{PurgeBatch: 7, Now: clock})
	for i := range 30 {
		require.NoError(t, s.WriteTTL(ctx, "old-"+strconv.Itoa(i), []byte("x"), time.Minute))
	}
	require.NoError(t, s.WriteTTL(ctx, "touched", []byte("t"), time.Minute))
	require.NoError(t, s.Write(ctx, "forever", []byte("f")))
	now.Add(int64(time.Minute / 2))
	require.NoError(t, s.Touch(ctx, "touched", time.Minute))
	now.Add(int64(2 * time.Minute / 3))
	require.NoError(t, s.WriteTTL(ctx, "new", []byte("y"), time.Minute))

	n, err := s.Purge(ctx)
	require.NoError(t, err)
	assert.Equal(t, 30, n)
	var keys []string
	for k, err := range s.Keys(ctx) {
		require.NoError(t, err)
		keys = append(keys, k)
	}
	assert.Equal(t, []string{"forever", "new", "touched"}, keys)
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		assert.Equal(t, 3, tx.Bucket([]byte("sessions")).Stats().KeyN, "rows left in the file")
		return nil
	}))
	n, err = s.Purge(ctx)
	require.NoError(t, err)
	assert.Zero(t, n, "a second purge finds nothing")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Purge(cancelled)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestBackgroundPurge(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "", true)
	var errs atomic.Int64
	s := newStore(t, db, boltstore.Options{PurgeInterval: 20 * time.Millisecond, OnError: func(error) { errs.Add(1) }})
	require.NoError(t, s.WriteTTL(ctx, "k", []byte("x"), 10*time.Millisecond))
	require.NoError(t, s.Write(ctx, "stays", []byte("y")))
	assert.Eventually(t, func() bool {
		n := -1
		_ = db.View(func(tx *bolt.Tx) error { n = tx.Bucket([]byte("sessions")).Stats().KeyN; return nil })
		return n == 1
	}, 5*time.Second, 10*time.Millisecond)
	s.Close()
	s.Close()
	assert.Zero(t, errs.Load(), "purge errors")
	_, found, err := s.Read(ctx, "stays")
	require.NoError(t, err)
	assert.True(t, found)
}

// TestCorruptData: bytes that are not the store's format are an error
// wrapping session.ErrCorrupt naming the key, never a panic.
func TestCorruptData(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "", true)
	s := newStore(t, db, boltstore.Options{})
	for _, raw := range [][]byte{{}, {1, 2, 3}, {9, 0, 0, 0, 0, 0, 0, 0, 0}} {
		require.NoError(t, db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("sessions")).Put([]byte("bad"), raw) }))
		_, _, err := s.Read(ctx, "bad")
		assert.ErrorIs(t, err, session.ErrCorrupt, "%v", raw)
		assert.ErrorContains(t, err, `"bad"`)
		assert.ErrorIs(t, s.Touch(ctx, "bad", time.Hour), session.ErrCorrupt)
		n := 0
		for k, err := range s.Keys(ctx) {
			assert.ErrorIs(t, err, session.ErrCorrupt, "Keys")
			assert.Empty(t, k, "the error is yielded with an empty key")
			n++
		}
		assert.Equal(t, 1, n, "Keys stops at the error")
		_, err = s.Purge(ctx)
		assert.NoError(t, err, "Purge leaves undecodable data alone")
	}

	// Through the middleware: the update fails with the error, naming
	// the key; nothing panics and nothing is overwritten.
	sess, err := session.New(session.Options[counter]{Storage: s})
	require.NoError(t, err)
	h := sess.Middleware(func(c *session.Context[counter]) error {
		_, err := c.Session()
		return err
	})
	require.NoError(t, db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("sessions")).Put([]byte("7"), []byte{1, 2}) }))
	err = h(session.NewContext[counter](ctx, nil, chatUpdate(1, 7)))
	assert.ErrorIs(t, err, session.ErrCorrupt)
	assert.ErrorContains(t, err, `"7"`)
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		assert.Equal(t, []byte{1, 2}, tx.Bucket([]byte("sessions")).Get([]byte("7")))
		return nil
	}))
}

// TestNewRejectsBadOptions: every mistake in New's arguments is an error
// wrapping session.ErrConfig that names the parameter or option, and New
// makes no store.
func TestNewRejectsBadOptions(t *testing.T) {
	db := openDB(t, "", true)
	for _, tc := range []struct {
		name  string
		db    *bolt.DB
		opts  boltstore.Options
		field string // what the message must name
	}{
		{"nil db", nil, boltstore.Options{}, "nil db"},
		{"bucket name too long", db, boltstore.Options{Bucket: strings.Repeat("b", bolt.MaxKeySize+1)}, "Options.Bucket"},
		{"negative PurgeInterval", db, boltstore.Options{PurgeInterval: -time.Second}, "Options.PurgeInterval"},
		{"negative PurgeBatch", db, boltstore.Options{PurgeBatch: -1}, "Options.PurgeBatch"},
		{"negative PageSize", db, boltstore.Options{PageSize: -1}, "Options.PageSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := boltstore.New(tc.db, tc.opts)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.ErrorIs(t, err, session.ErrConfig)
			assert.ErrorContains(t, err, tc.field)
			assert.ErrorContains(t, err, "boltstore: ")
		})
	}
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		assert.Nil(t, tx.Bucket([]byte("sessions")), "no bucket created by a rejected New")
		return nil
	}))
}

// TestNewRejectsReadOnlyDatabase: the store writes, so a database opened
// read-only is a configuration mistake, reported by New rather than by
// every write.
func TestNewRejectsReadOnlyDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sessions.db")
	rw, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	require.NoError(t, rw.Close())
	ro, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: time.Second})
	require.NoError(t, err)
	t.Cleanup(func() { _ = ro.Close() })

	s, err := boltstore.New(ro, boltstore.Options{})
	require.Error(t, err)
	assert.Nil(t, s)
	assert.ErrorIs(t, err, session.ErrConfig)
	assert.ErrorContains(t, err, "read-only")
	assert.ErrorContains(t, err, path)
}

// TestNewAcceptsLimitsAndDefaults: zero values mean their documented
// defaults (the bucket "sessions"), and the limits themselves are allowed.
func TestNewAcceptsLimitsAndDefaults(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "", true)
	s := newStore(t, db, boltstore.Options{})
	require.NoError(t, s.Write(ctx, "k", []byte("v")))
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket([]byte("sessions"))
		if assert.NotNil(t, b, "default bucket") {
			assert.NotNil(t, b.Get([]byte("k")))
		}
		return nil
	}))

	long := strings.Repeat("b", bolt.MaxKeySize)
	s = newStore(t, db, boltstore.Options{Bucket: long, PurgeBatch: 1, PageSize: 1})
	require.NoError(t, s.WriteTTL(ctx, "k", []byte("v"), time.Nanosecond))
}

type counter struct{ N int }

func chatUpdate(id int, chat int64) tgbotapi.Update {
	return tgbotapi.Update{UpdateID: id, Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: chat}}}
}

// TestIncrements: concurrent updates of one chat through the middleware,
// over two sessions sharing the store, lose nothing: the store has no
// Locker, and the middleware's process-wide lock table serialises them
// (bbolt has no other process to fear). With a session TTL, writes and
// touches go through WriteTTL and Touch.
func TestIncrements(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, openDB(t, "", true), boltstore.Options{})
	var hs []session.Handler[counter]
	for range 2 {
		sess, err := session.New(session.Options[counter]{Storage: s, TTL: time.Hour})
		require.NoError(t, err)
		hs = append(hs, sess.Middleware(func(c *session.Context[counter]) error {
			v, err := c.Session()
			if err != nil {
				return err
			}
			v.N++
			return nil
		}))
	}
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				if err := hs[g%2](session.NewContext[counter](ctx, nil, chatUpdate(g*1000+i, 7))); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, failed.Load())

	sess, err := session.New(session.Options[counter]{Storage: s, TTL: time.Hour})
	require.NoError(t, err)
	var got []session.Entry[counter]
	for e, err := range sess.Entries(ctx) {
		require.NoError(t, err)
		got = append(got, e)
	}
	assert.Equal(t, []session.Entry[counter]{{Key: "7", Value: counter{N: 400}}}, got)
}

// TestClosedDatabase: errors of the database surface, naming the key.
func TestClosedDatabase(t *testing.T) {
	db := openDB(t, "", true)
	s := newStore(t, db, boltstore.Options{})
	require.NoError(t, db.Close())
	err := s.Write(context.Background(), "k", []byte("v"))
	require.Error(t, err)
	assert.ErrorIs(t, err, berrors.ErrDatabaseNotOpen)
	assert.ErrorContains(t, err, `"k"`)
	_, _, err = s.Read(context.Background(), "k")
	assert.ErrorContains(t, err, `"k"`)
}
