// Package boltstore stores sessions in a bbolt file: an embedded,
// persistent store for a bot that runs as one process and must keep its
// sessions across restarts without a database server.
//
// A [Store] is a byte store: wrap it with [session.Encoded] (JSON by
// default) or [session.Enhance] to hold typed sessions:
//
//	db, err := bolt.Open("sessions.db", 0o600, &bolt.Options{Timeout: time.Second})
//	store, err := boltstore.New(db, boltstore.Options{TTL: 30 * 24 * time.Hour, PurgeInterval: time.Hour})
//	defer store.Close()
//	h := session.Strict(session.Options[Data]{Storage: session.Encoded[Data](store, nil)})(handler)
//
// bbolt locks its file to one process, so there is no cross-process
// locking to do: the store has no [session.Locker], and the middleware
// serialises updates of one key in its process-wide lock table. It
// implements [session.Toucher] and [session.Iterator].
//
// # File layout
//
// Sessions live in one bucket (default "sessions"), keyed by session key.
// Each value is a format byte (1), the expiry as 8 bytes big-endian Unix
// nanoseconds (0: never), then the stored bytes. Expired sessions are
// never read; [Store.Purge] (or [Options.PurgeInterval]) deletes them.
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
// "sessions", no expiry, no background purge.
//
// [New] checks the options and reports every mistake as an error wrapping
// [session.ErrConfig] that names the field; the rules are given with each
// field. The zero value of every field is valid and means what the field
// says (a default, or none: no expiry, no background purge).
type Options struct {
	// Bucket names the bbolt bucket of the sessions. Default "sessions";
	// at most bolt.MaxKeySize (32768) bytes.
	Bucket string

	// TTL, if positive, makes every session expire this long after its
	// last write or touch. Zero means sessions never expire; negative is
	// an error.
	TTL time.Duration

	// PurgeInterval, if positive, runs [Store.Purge] this often in the
	// background until [Store.Close]. Errors go to OnError. Zero means no
	// background purge; negative is an error.
	PurgeInterval time.Duration

	// PurgeBatch is how many expired sessions one write transaction of
	// [Store.Purge] deletes, so that a purge never holds the database's
	// single writer for long. Default (zero) 1000; negative is an error.
	PurgeBatch int

	// PageSize is how many sessions the iterators read per read
	// transaction. A page is copied out and the transaction closed before
	// the loop body runs, so the body may write to the store (bbolt would
	// deadlock on a write inside an open read transaction of the same
	// goroutine). Default (zero) 500; negative is an error.
	PageSize int

	// OnError, if set, receives the errors of the background purge. Nil
	// ignores them. Nothing is logged by default.
	OnError func(error)

	// Now, if set, replaces time.Now as the store's clock (for tests).
	Now func() time.Time
}

// Store is a session store in a bbolt database. It implements
// session.StorageAdapter[[]byte], [session.Toucher] and
// session.Iterator[[]byte], and is safe for concurrent use.
type Store struct {
	db     *bolt.DB
	bucket []byte
	opts   Options

	purger *purgeloop.Loop // nil without a background purge
}

var (
	_ session.StorageAdapter[[]byte] = (*Store)(nil)
	_ session.Toucher                = (*Store)(nil)
	_ session.Iterator[[]byte]       = (*Store)(nil)
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
	if opts.TTL < 0 {
		return nil, configError("Options.TTL %v: must not be negative", opts.TTL)
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

// expiry is the expiry of a value written now, in Unix nanoseconds; 0
// means never.
func (s *Store) expiry() uint64 {
	if s.opts.TTL <= 0 {
		return 0
	}
	return uint64(s.opts.Now().Add(s.opts.TTL).UnixNano())
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

// Write stores value at key, restarting its TTL.
func (s *Store) Write(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fail("write", key, err)
	}
	raw := encode(s.expiry(), value)
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

// Touch restarts key's TTL. It does nothing when the store has no TTL; a
// missing or expired key is not an error and is not brought back. (bbolt
// rewrites the whole value on any change; Touch still saves the caller an
// encode and the value's transfer.)
func (s *Store) Touch(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fail("touch", key, err)
	}
	if s.opts.TTL <= 0 {
		return nil
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
		return b.Put([]byte(key), encode(s.expiry(), data))
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
// reading [Options.PageSize] at a time. Sessions written or deleted
// during the loop may or may not be seen.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		s.pages(ctx, func(k string, _ []byte, err error) bool { return yield(k, err) })
	}
}

// Values yields the value of every live session, as [Store.Keys] finds
// them.
func (s *Store) Values(ctx context.Context) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		s.pages(ctx, func(_ string, v []byte, err error) bool { return yield(v, err) })
	}
}

// Entries yields the key and value of every live session, as [Store.Keys]
// finds them.
func (s *Store) Entries(ctx context.Context) iter.Seq2[session.Entry[[]byte], error] {
	return func(yield func(session.Entry[[]byte], error) bool) {
		s.pages(ctx, func(k string, v []byte, err error) bool {
			if err != nil {
				return yield(session.Entry[[]byte]{}, err)
			}
			return yield(session.Entry[[]byte]{Key: k, Value: v}, nil)
		})
	}
}

func (s *Store) pages(ctx context.Context, yield func(string, []byte, error) bool) {
	var after []byte
	for {
		if err := ctx.Err(); err != nil {
			yield("", nil, fmt.Errorf("boltstore: list: %w", err))
			return
		}
		type entry struct {
			key   string
			value []byte
		}
		var page []entry
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
				exp, data, err := decode(string(k), v)
				if err != nil {
					return err
				}
				if s.live(exp, now) {
					d := bytes.Clone(data)
					if d == nil {
						d = []byte{}
					}
					page = append(page, entry{string(k), d})
				}
			}
			done = k == nil
			return nil
		})
		if err != nil {
			yield("", nil, fmt.Errorf("boltstore: list: %w", err))
			return
		}
		for _, e := range page {
			if !yield(e.key, e.value, nil) {
				return
			}
		}
		if done {
			return
		}
	}
}
