package boltstore_test

import (
	"context"
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

// expiryTTL is the TTL of the expiry suite: long enough that a loaded CI
// machine does not outlive it by accident.
const expiryTTL = 500 * time.Millisecond

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.StorageAdapter[storagetest.Value] {
		return session.Encoded[storagetest.Value](newStore(t, openDB(t, "", true), boltstore.Options{}), nil)
	})
}

func TestConformanceWithTTL(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.StorageAdapter[storagetest.Value] {
		return session.Encoded[storagetest.Value](newStore(t, openDB(t, "", true),
			boltstore.Options{TTL: time.Hour, PageSize: 7}), nil)
	})
}

func TestExpiry(t *testing.T) {
	storagetest.RunExpiry(t, func(t *testing.T) session.StorageAdapter[[]byte] {
		return newStore(t, openDB(t, "", true), boltstore.Options{TTL: expiryTTL})
	}, expiryTTL)
}

// TestPersistence: sessions survive closing and reopening the file, with
// their expiry.
func TestPersistence(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "sessions.db")
	db, err := bolt.Open(path, 0o600, nil)
	require.NoError(t, err)
	s, err := boltstore.New(db, boltstore.Options{Bucket: "bot", TTL: time.Hour})
	require.NoError(t, err)
	require.NoError(t, s.Write(ctx, "42", []byte(`{"n":1}`)))
	s.Close()
	require.NoError(t, db.Close())

	s2 := newStore(t, openDB(t, path, false), boltstore.Options{Bucket: "bot", TTL: time.Hour})
	v, found, err := s2.Read(ctx, "42")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, `{"n":1}`, string(v))
}

// TestPurge uses a fake clock: expired sessions are deleted over several
// batches, live ones and ones rewritten since stay.
func TestPurge(t *testing.T) {
	ctx := context.Background()
	var now atomic.Int64
	now.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	db := openDB(t, "", true)
	s := newStore(t, db, boltstore.Options{TTL: time.Minute, PurgeBatch: 7, Now: clock})
	for i := range 30 {
		require.NoError(t, s.Write(ctx, "old-"+strconv.Itoa(i), []byte("x")))
	}
	now.Add(int64(2 * time.Minute))
	require.NoError(t, s.Write(ctx, "new", []byte("y")))

	n, err := s.Purge(ctx)
	require.NoError(t, err)
	assert.Equal(t, 30, n)
	var keys []string
	for k, err := range s.Keys(ctx) {
		require.NoError(t, err)
		keys = append(keys, k)
	}
	assert.Equal(t, []string{"new"}, keys)
	require.NoError(t, db.View(func(tx *bolt.Tx) error {
		assert.Equal(t, 1, tx.Bucket([]byte("sessions")).Stats().KeyN, "rows left in the file")
		return nil
	}))

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Purge(cancelled)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestBackgroundPurge(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "", true)
	s := newStore(t, db, boltstore.Options{TTL: 10 * time.Millisecond, PurgeInterval: 20 * time.Millisecond})
	require.NoError(t, s.Write(ctx, "k", []byte("x")))
	assert.Eventually(t, func() bool {
		n := -1
		_ = db.View(func(tx *bolt.Tx) error { n = tx.Bucket([]byte("sessions")).Stats().KeyN; return nil })
		return n == 0
	}, 5*time.Second, 10*time.Millisecond)
	s.Close()
	s.Close()
}

// TestCorruptData: bytes that are not the store's format are an error
// wrapping session.ErrCorrupt naming the key, never a panic.
func TestCorruptData(t *testing.T) {
	ctx := context.Background()
	db := openDB(t, "", true)
	s := newStore(t, db, boltstore.Options{TTL: time.Hour})
	for _, raw := range [][]byte{{}, {1, 2, 3}, {9, 0, 0, 0, 0, 0, 0, 0, 0}} {
		require.NoError(t, db.Update(func(tx *bolt.Tx) error { return tx.Bucket([]byte("sessions")).Put([]byte("bad"), raw) }))
		_, _, err := s.Read(ctx, "bad")
		assert.ErrorIs(t, err, session.ErrCorrupt, "%v", raw)
		assert.ErrorContains(t, err, `"bad"`)
		assert.ErrorIs(t, s.Touch(ctx, "bad"), session.ErrCorrupt)
		for _, err := range s.Keys(ctx) {
			assert.ErrorIs(t, err, session.ErrCorrupt, "Keys")
		}
		_, err = s.Purge(ctx)
		assert.NoError(t, err, "Purge leaves undecodable data alone")
	}
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
		{"negative TTL", db, boltstore.Options{TTL: -time.Second}, "Options.TTL"},
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
	s = newStore(t, db, boltstore.Options{Bucket: long, TTL: time.Nanosecond})
	require.NoError(t, s.Write(ctx, "k", []byte("v")))
}

// TestStrictIncrements: concurrent updates of one chat through the strict
// middleware lose nothing (the middleware's process-wide lock table
// serialises them; bbolt has no other process to fear).
func TestStrictIncrements(t *testing.T) {
	type counter struct{ N int }
	s := newStore(t, openDB(t, "", true), boltstore.Options{TTL: time.Hour})
	h := session.Strict(session.Options[counter]{Storage: session.Encoded[counter](s, nil)})(
		func(c *session.Context[counter]) error {
			v, err := c.Session()
			if err != nil {
				return err
			}
			v.N++
			return nil
		})
	var wg sync.WaitGroup
	var failed atomic.Int64
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 50 {
				u := tgbotapi.Update{UpdateID: g*1000 + i, Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 7}}}
				if err := h(session.NewContext[counter](context.Background(), nil, u)); err != nil {
					failed.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	assert.Zero(t, failed.Load())
	v, found, err := session.Encoded[counter](s, nil).Read(context.Background(), "7")
	require.NoError(t, err)
	require.True(t, found)
	assert.Equal(t, 400, v.N)
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
