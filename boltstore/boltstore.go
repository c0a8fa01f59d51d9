// Package boltstore stores sessions in a bbolt file: an embedded,
// persistent store for a bot that runs as one process and must keep its
// sessions across restarts without a database server.
//
// A [Store] is a [session.Store] with native expiry ([session.Expirer]:
// the session TTL comes with each write or touch) and listing
// ([session.Lister]):
//
//	db, err := bolt.Open("sessions.db", 0o600, &bolt.Options{Timeout: time.Second})
//	store, err := boltstore.New(db, boltstore.Options{PurgeInterval: time.Hour})
//	defer store.Close()
//	sess, err := session.New(session.Options[Data]{Storage: store, TTL: 30 * 24 * time.Hour})
//	h := sess.Middleware(handler)
//
// # Locking
//
// bbolt locks its file to one process (a second bolt.Open of the file
// waits for it, up to bolt.Options.Timeout), so there is no other process
// to exclude: the store has no [session.Locker], and the middleware
// serialises the updates of one key in its process-wide lock table, which
// every middleware over the same Store shares. That table is all the
// locking a bbolt file needs; it is also why no [session.Lease] fencing
// is needed: within one process a lock is never lost.
//
// # File layout
//
// Sessions live in one bucket (default "sessions"), keyed by session key.
// Each value is a format byte (1), the expiry as 8 bytes big-endian Unix
// nanoseconds (0: never), then the stored bytes. Expired sessions are
// never read, listed or touched back to life; [Store.Purge] (or
// [Options.PurgeInterval]) deletes them, in bounded batches.
//
// Keys are bbolt keys: the empty key and keys longer than
// bolt.MaxKeySize (32768 bytes) are refused by Write (the middleware's
// keys never are).
package boltstore

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"iter"
	"time"

	bolt "go.etcd.io/bbolt"

	"github.com/tgsession/session"
	"github.com/tgsession/session/internal/purgeloop"
)

// Options configures a [Store]. The zero value is usable: bucket
// "sessions", no background purge. Expiry is not an option: each session
// expires as [session.Options.TTL] says, through [Store.WriteTTL] and
// [Store.Touch].
//
// [New] checks the options and reports every mistake as an error wrapping
// [session.ErrConfig] that names the field; the rules are given with each
// field. The zero value of every field is valid and means what the field
// says (a default, or none: no background purge).
type Options struct {
	// Bucket names the bbolt bucket of the sessions. Default "sessions";
	// at most bolt.MaxKeySize (32768) bytes.
	Bucket string

	// PurgeInterval, if positive, runs [Store.Purge] this often in the
	// background until [Store.Close]. Errors go to OnError. Zero means no
	// background purge; negative is an error.
	PurgeInterval time.Duration

	// PurgeBatch is how many expired sessions one write transaction of
	// [Store.Purge] deletes, so that a purge never holds the database's
	// single writer for long. Default (zero) 1000; negative is an error.
	PurgeBatch int

	// PageSize is how many keys [Store.Keys] reads per read
	// transaction. A page is copied out and the transaction closed before
	// the loop body runs, so the body may write to the store (bbolt would
	// deadlock on a write inside an open read transaction of the same
	// goroutine). Default (zero) 500; negative is an error.
	PageSize int

	// OnError, if set, receives the errors of the background purge. Nil
	// ignores them. Nothing is logged by default.
	OnError func(error)

	// Now, if set, replaces time.Now as the store's clock: expiries are
	// computed and checked with it (for tests of the purge).
	Now func() time.Time
}

// Store is a session store in a bbolt database: a [session.Store], a
// [session.Expirer] and a [session.Lister], with no [session.Locker] (see
// the package documentation). It is safe for concurrent use.
type Store struct {
	db     *bolt.DB
	bucket []byte
	opts   Options

	purger *purgeloop.Loop // nil without a background purge
}

var (
	_ session.Store   = (*Store)(nil)
	_ session.Expirer = (*Store)(nil)
	_ session.Lister  = (*Store)(nil)
)

const (
	format     = 1 // first byte of every stored value
	headerSize = 9 // format byte + expiry

	defaultBucket     = "sessions"
	defaultPurgeBatch = 1000
	defaultPageSize   = 500
)

// New returns a store in db, creating its bucket if needed. A nil db, one
// opened read-only (bolt.Options.ReadOnly: the store writes) and invalid
// [Options] are reported as an error wrapping [session.ErrConfig] that
// names the parameter or field. If [Options.PurgeInterval] is set, call
// [Store.Close] when done. Close does not close db.
func New(db *bolt.DB, opts Options) (*Store, error) {
	if db == nil {
		return nil, configError("nil db")
	}
	if db.IsReadOnly() {
		return nil, configError("database %s opened read-only: the store writes to it", db.Path())
	}
	if opts.Bucket == "" {
		opts.Bucket = defaultBucket
	}
	if len(opts.Bucket) > bolt.MaxKeySize {
		return nil, configError("Options.Bucket is %d bytes: must be at most %d", len(opts.Bucket), bolt.MaxKeySize)
	}
	if opts.PurgeInterval < 0 {
		return nil, configError("Options.PurgeInterval %v: must not be negative", opts.PurgeInterval)
	}
	if opts.PurgeBatch == 0 {
		opts.PurgeBatch = defaultPurgeBatch
	}
	if opts.PurgeBatch < 0 {
		return nil, configError("Options.PurgeBatch %d: must not be negative", opts.PurgeBatch)
	}
	if opts.PageSize == 0 {
		opts.PageSize = defaultPageSize
	}
	if opts.PageSize < 0 {
		return nil, configError("Options.PageSize %d: must not be negative", opts.PageSize)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	s := &Store{db: db, bucket: []byte(opts.Bucket), opts: opts}
	err := db.Update(func(tx *bolt.Tx) error {
		_, err := tx.CreateBucketIfNotExists(s.bucket)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("boltstore: create bucket %q: %w", opts.Bucket, err)
	}
	if opts.PurgeInterval > 0 {
		s.purger = purgeloop.Start(opts.PurgeInterval, func(ctx context.Context) error {
			_, err := s.Purge(ctx)
			return err
		}, opts.OnError)
	}
	return s, nil
}

// configError reports a mistake in New's arguments.
func configError(format string, args ...any) error {
	return fmt.Errorf("boltstore: %w: %s", session.ErrConfig, fmt.Sprintf(format, args...))
}

// Close stops the background purge, if any. It does not close the
// database.
func (s *Store) Close() { s.purger.Stop() }

func fail(op, key string, err error) error {
	return fmt.Errorf("boltstore: %s %q: %w", op, key, err)
}

// expiry is the expiry of a value written now to live for ttl, in Unix
// nanoseconds; 0 means never (ttl <= 0).
func (s *Store) expiry(ttl time.Duration) uint64 {
	if ttl <= 0 {
		return 0
	}
	return uint64(s.opts.Now().Add(ttl).UnixNano())
}

// decode splits a stored value into its expiry and data, reporting
// malformed bytes as [session.ErrCorrupt]: a damaged file must not panic
// the bot.
func decode(key string, raw []byte) (exp uint64, data []byte, err error) {
	if len(raw) < headerSize || raw[0] != format {
		return 0, nil, fmt.Errorf("boltstore: key %q: %w: bad header", key, session.ErrCorrupt)
	}
	return binary.BigEndian.Uint64(raw[1:headerSize]), raw[headerSize:], nil
}

func encode(exp uint64, data []byte) []byte {
	raw := make([]byte, headerSize+len(data))
	raw[0] = format
	binary.BigEndian.PutUint64(raw[1:headerSize], exp)
	copy(raw[headerSize:], data)
	return raw
}

func (s *Store) live(exp uint64, now time.Time) bool {
	return exp == 0 || exp > uint64(now.UnixNano())
}

// Read returns the value stored at key; found is false if there is none
// or it has expired.
func (s *Store) Read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fail("read", key, err)
	}
	var out []byte
	var found bool
	err := s.db.View(func(tx *bolt.Tx) error {
		b, err := s.bucketIn(tx)
		if err != nil {
			return err
		}
		data, ok, err := s.getLive(b, key)
		if !ok || err != nil {
			return err
		}
		// bbolt's bytes are valid only inside the transaction.
		out, found = bytes.Clone(data), true
		if out == nil {
			out = []byte{}
		}
		return nil
	})
	if err != nil {
		return nil, false, fail("read", key, err)
	}
	return out, found, nil
}

// Write stores value at key, to live until deleted: a TTL the key had is
// gone.
func (s *Store) Write(ctx context.Context, key string, value []byte) error {
	return s.put(ctx, key, value, 0)
}

// WriteTTL stores value at key, to expire ttl from now (never, if ttl <=
// 0, as with Write).
func (s *Store) WriteTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return s.put(ctx, key, value, ttl)
}

func (s *Store) put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fail("write", key, err)
	}
	raw := encode(s.expiry(ttl), value)
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := s.bucketIn(tx)
		if err != nil {
			return err
		}
		return b.Put([]byte(key), raw)
	})
	if err != nil {
		return fail("write", key, err)
	}
	return nil
}

// Delete removes key; a missing key is not an error.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fail("delete", key, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := s.bucketIn(tx)
		if err != nil {
			return err
		}
		return b.Delete([]byte(key))
	})
	if err != nil {
		return fail("delete", key, err)
	}
	return nil
}

// Touch makes key expire ttl from now (never, if ttl <= 0), keeping its
// value; a missing or expired key is not an error and is not brought
// back. (bbolt rewrites the whole value on any change; Touch still saves
// the caller an encode and the value's transfer.)
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fail("touch", key, err)
	}
	err := s.db.Update(func(tx *bolt.Tx) error {
		b, err := s.bucketIn(tx)
		if err != nil {
			return err
		}
		data, ok, err := s.getLive(b, key)
		if !ok || err != nil {
			return err
		}
		return b.Put([]byte(key), encode(s.expiry(ttl), data))
	})
	if err != nil {
		return fail("touch", key, err)
	}
	return nil
}

// Purge deletes expired sessions, at most [Options.PurgeBatch] per write
// transaction, until none is left or ctx ends. It returns how many it
// deleted. Values that do not decode are left alone (and reported by
// Read).
func (s *Store) Purge(ctx context.Context) (int, error) {
	total := 0
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			return total, fmt.Errorf("boltstore: purge: %w", err)
		}
		// Find a batch under a read transaction, then delete it under a
		// write one, checking each expiry again: a session written
		// between the two must stay.
		var batch [][]byte
		done := false
		err := s.db.View(func(tx *bolt.Tx) error {
			b, err := s.bucketIn(tx)
			if err != nil {
				return err
			}
			now := s.opts.Now()
			c := b.Cursor()
			k, v := seekAfter(c, after)
			for ; k != nil && len(batch) < s.opts.PurgeBatch; k, v = c.Next() {
				after = bytes.Clone(k)
				if exp, _, err := decode(string(k), v); err == nil && !s.live(exp, now) {
					batch = append(batch, bytes.Clone(k))
				}
			}
			done = k == nil
			return nil
		})
		if err == nil && len(batch) > 0 {
			err = s.db.Update(func(tx *bolt.Tx) error {
				b, err := s.bucketIn(tx)
				if err != nil {
					return err
				}
				now := s.opts.Now()
				for _, k := range batch {
					if exp, _, err := decode(string(k), b.Get(k)); err == nil && !s.live(exp, now) {
						if err := b.Delete(k); err != nil {
							return err
						}
						total++
					}
				}
				return nil
			})
		}
		if err != nil {
			return total, fmt.Errorf("boltstore: purge: %w", err)
		}
		if done {
			return total, nil
		}
	}
}

// bucketIn returns the store's bucket in tx.
func (s *Store) bucketIn(tx *bolt.Tx) (*bolt.Bucket, error) {
	b := tx.Bucket(s.bucket)
	if b == nil {
		return nil, errors.New("bucket is gone")
	}
	return b, nil
}

// getLive returns the value stored in b at key; ok is false if there is
// none or it has expired. The bytes are valid only inside the
// transaction.
func (s *Store) getLive(b *bolt.Bucket, key string) (data []byte, ok bool, err error) {
	raw := b.Get([]byte(key))
	if raw == nil {
		return nil, false, nil
	}
	exp, data, err := decode(key, raw)
	if err != nil {
		return nil, false, err
	}
	if !s.live(exp, s.opts.Now()) {
		return nil, false, nil
	}
	return data, true, nil
}

// seekAfter positions c on the first key after after (the first key when
// after is nil).
func seekAfter(c *bolt.Cursor, after []byte) (k, v []byte) {
	if after == nil {
		return c.First()
	}
	k, v = c.Seek(after)
	if k != nil && bytes.Equal(k, after) {
		k, v = c.Next()
	}
	return k, v
}

// Keys yields the key of every live session, each once, in byte order,
// reading [Options.PageSize] keys per read transaction; the loop body
// runs outside it and may use the store. Sessions written or deleted
// during the loop may or may not be seen. A value that does not decode
// ends the sequence with an error wrapping [session.ErrCorrupt]; a
// cancelled ctx ends it with the context's error.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		s.pages(ctx, yield)
	}
}

func (s *Store) pages(ctx context.Context, yield func(string, error) bool) {
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			yield("", fmt.Errorf("boltstore: list: %w", err))
			return
		}
		var page []string
		done := false
		err := s.db.View(func(tx *bolt.Tx) error {
			b, err := s.bucketIn(tx)
			if err != nil {
				return err
			}
			now := s.opts.Now()
			c := b.Cursor()
			k, v := seekAfter(c, after)
			for ; k != nil && len(page) < s.opts.PageSize; k, v = c.Next() {
				after = bytes.Clone(k)
				exp, _, err := decode(string(k), v)
				if err != nil {
					return err
				}
				if s.live(exp, now) {
					page = append(page, string(k))
				}
			}
			done = k == nil
			return nil
		})
		if err != nil {
			yield("", fmt.Errorf("boltstore: list: %w", err))
			return
		}
		for _, k := range page {
			if !yield(k, nil) {
				return
			}
		}
		if done {
			return
		}
	}
}
