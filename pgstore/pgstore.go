// Package pgstore stores sessions in PostgreSQL, for bots that run as
// several processes (replicas behind a webhook load balancer) or that
// already keep their data in PostgreSQL.
//
// A [Store] is a byte store: wrap it with [session.Encoded] (JSON by
// default) or [session.Enhance] to hold typed sessions:
//
//	pool, err := pgxpool.New(ctx, "postgres://bot@db/bot")
//	store, err := pgstore.New(pool, pgstore.Options{TTL: 30 * 24 * time.Hour})
//	err = store.Migrate(ctx) // or run store.Schema() with your migration tool
//	h := session.Strict(session.Options[Data]{Storage: session.Encoded[Data](store, nil)})(handler)
//
// # Tables
//
// Sessions live in one table (default "tg_sessions"; [Options.Table] and
// [Options.Schema] change it; names are always quoted):
//
//	CREATE TABLE IF NOT EXISTS "tg_sessions" (
//		key        text COLLATE "C" PRIMARY KEY,
//		value      bytea NOT NULL,
//		expires_at timestamptz          -- NULL: never
//	);
//	CREATE INDEX IF NOT EXISTS "tg_sessions_expires_at_idx"
//		ON "tg_sessions" (expires_at) WHERE expires_at IS NOT NULL;
//
// and the locks of [Store.Lock] in a second, unlogged table (locks are
// leases of seconds: they need no WAL, and a crash that empties the table
// only makes the writes of holders from before the crash fail with
// [session.ErrConflict]):
//
//	CREATE UNLOGGED TABLE IF NOT EXISTS "tg_sessions_locks" (
//		key        text COLLATE "C" PRIMARY KEY,
//		token      text NOT NULL,
//		expires_at timestamptz NOT NULL
//	);
//
// [Store.Migrate] creates both; [Store.Schema] returns the statements for
// a migration tool. Expired sessions are never read; [Store.Purge] (or
// [Options.PurgeInterval]) deletes them in batches.
//
// Keys are PostgreSQL text: valid UTF-8 without NUL bytes (the
// middleware's keys always are). All times are the database server's, so
// the clocks of the bot's machines do not matter.
//
// # Locking and cost
//
// [Store.Lock] takes a lease row in the locks table (a random token and an
// expiry), renewed while held; writes made under it check the token in the
// same statement (see the comment on the fenced write in the source for
// why this design over SELECT ... FOR UPDATE or a version column). A strict
// update that changes its session costs 3 round trips with the lock (take
// the lease and read in one batch, fenced upsert, release) and 2 without it
// ([Options.DisableLocking]: SELECT, upsert); a lazy update that never
// touches its session costs none. Locking is needed as soon as two
// processes share the table.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tgsession/session"
	"github.com/tgsession/session/internal/lease"
	"github.com/tgsession/session/internal/locallock"
	"github.com/tgsession/session/internal/purgeloop"
)

// Options configures a [Store]. The zero value is usable: table
// "tg_sessions" in the search path, no expiry, locking across processes
// with a 10-second lease, no background purge.
//
// [New] checks the options and reports every mistake as an error wrapping
// [session.ErrConfig] that names the field; the rules are given with each
// field. The zero value of every field is valid and means what the field
// says (a default, or none: no expiry, no background purge).
type Options struct {
	// Table names the sessions table; the locks table is Table + "_locks"
	// and the expiry index Table + "_expires_at_idx". Default
	// "tg_sessions". Any name works (it is always quoted) as long as it is
	// valid UTF-8 without NUL bytes and the index name fits PostgreSQL's
	// 63-byte identifiers: at most 48 bytes. (A longer name would be cut
	// short by the server, and the locks table could end up being the
	// sessions table.)
	Table string

	// Schema, if set, qualifies both tables. Default: the search path.
	// Like Table, it must be valid UTF-8 without NUL bytes, at most 63
	// bytes.
	Schema string

	// TTL, if positive, makes every session expire this long after its
	// last write or touch. Zero means sessions never expire. PostgreSQL
	// counts in microseconds, so a TTL must be at least 1µs; a negative
	// one is an error.
	TTL time.Duration

	// LockLease is how long a lock outlives a holder that stopped renewing
	// it (a crashed or frozen process): other processes wait at most this
	// long for the key. While held, the lock is renewed every LockLease/3.
	// Default (zero) 10s; otherwise at least 30ms, so that a renewal has
	// time to reach the database before the lease runs out (a negative
	// lease is an error).
	LockLease time.Duration

	// LockRetry is the longest pause between two attempts to take a lock
	// held by another process. Attempts start 1ms apart and double up to
	// LockRetry, with jitter. Default (zero) 20ms; negative is an error.
	LockRetry time.Duration

	// DisableLocking makes Lock exclude holders within this process only,
	// with no lease in the database and no fencing: two statements fewer
	// per update, but two processes sharing the table can lose each
	// other's updates. For single-process bots.
	DisableLocking bool

	// PurgeInterval, if positive, runs [Store.Purge] this often in the
	// background until [Store.Close]. Errors go to OnError. Zero means no
	// background purge; negative is an error.
	PurgeInterval time.Duration

	// PurgeBatch is how many expired rows one DELETE of [Store.Purge]
	// removes, so that a purge never holds many row locks or a long
	// transaction. Default (zero) 1000; negative is an error.
	PurgeBatch int

	// PageSize is how many rows one query of the iterators fetches.
	// Default (zero) 500; negative is an error.
	PageSize int

	// OnError, if set, receives the errors that have no caller to return
	// to: a failed lock renewal or release, a lease found lost while
	// renewing, a failed background purge. Nil ignores them. Nothing is
	// logged by default.
	OnError func(error)
}

const (
	defaultTable      = "tg_sessions"
	defaultLease      = 10 * time.Second
	defaultRetry      = 20 * time.Millisecond
	defaultPurgeBatch = 1000
	defaultPageSize   = 500
	minLease          = 30 * time.Millisecond

	// maxIdentifier is PostgreSQL's longest identifier in bytes
	// (NAMEDATALEN - 1); the server cuts longer ones short.
	maxIdentifier = 63
	// indexSuffix and locksSuffix make the names of the expiry index and
	// the locks table from Options.Table.
	indexSuffix = "_expires_at_idx"
	locksSuffix = "_locks"
	// maxTable is the longest Options.Table whose derived names all fit.
	maxTable = maxIdentifier - len(indexSuffix)
)

// Store is a session store in PostgreSQL. It implements
// session.StorageAdapter[[]byte], [session.Locker], [session.Toucher] and
// session.Iterator[[]byte], and is safe for concurrent use. Make one with
// [New] and share it: locks are excluded within the process by the Store
// value, across processes by the database.
type Store struct {
	pool  *pgxpool.Pool
	opts  Options
	q     queries
	local locallock.Table

	held *lease.Table // the leases this Store holds

	purger *purgeloop.Loop // nil without a background purge
}

var (
	_ session.StorageAdapter[[]byte] = (*Store)(nil)
	_ session.Locker                 = (*Store)(nil)
	_ session.Toucher                = (*Store)(nil)
	_ session.Iterator[[]byte]       = (*Store)(nil)
)

// queries are the store's SQL statements, built once with its quoted
// table names. $1 is always the key.
type queries struct {
	schema []string

	read, write, fencedWrite, del, fencedDel, touch string
	keysFirst, keysNext, entriesFirst, entriesNext  string
	purge, purgeLocks                               string
	lock, renew, release                            string
}

func buildQueries(opts Options) queries {
	ident := func(name string) string {
		if opts.Schema != "" {
			return pgx.Identifier{opts.Schema, name}.Sanitize()
		}
		return pgx.Identifier{name}.Sanitize()
	}
	t, l := ident(opts.Table), ident(opts.Table+locksSuffix)
	idx := pgx.Identifier{opts.Table + indexSuffix}.Sanitize()
	// Expiry of a row written now: NULL when the store has no TTL. $n is
	// the TTL in microseconds.
	exp := func(n int) string {
		return fmt.Sprintf("CASE WHEN $%d::bigint > 0 THEN now() + $%d::bigint * interval '1 microsecond' END", n, n)
	}
	const live = "(expires_at IS NULL OR expires_at > now())"
	upsert := " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"
	return queries{
		schema: []string{
			`CREATE TABLE IF NOT EXISTS ` + t + ` (
	key        text COLLATE "C" PRIMARY KEY,
	value      bytea NOT NULL,
	expires_at timestamptz
)`,
			`CREATE INDEX IF NOT EXISTS ` + idx + ` ON ` + t + ` (expires_at) WHERE expires_at IS NOT NULL`,
			`CREATE UNLOGGED TABLE IF NOT EXISTS ` + l + ` (
	key        text COLLATE "C" PRIMARY KEY,
	token      text NOT NULL,
	expires_at timestamptz NOT NULL
)`,
		},
		read:  `SELECT value FROM ` + t + ` WHERE key = $1 AND ` + live,
		write: `INSERT INTO ` + t + ` (key, value, expires_at) VALUES ($1, $2, ` + exp(3) + `)` + upsert,
		// Fencing. The write happens only if this Store's token ($4) is
		// still the key's lock, checked in the same statement: one round
		// trip, no transaction held open while the handler runs.
		//
		// FOR SHARE keeps the lock row from changing until the statement
		// commits, so a process taking the lock over (an UPDATE of that
		// row, in Lock) waits for this write and then reads its result:
		// the check and the write are atomic with respect to lock
		// takeovers. The expiry of the lease is deliberately not checked:
		// as long as nobody has taken the lock over (the token still
		// matches), nobody can have written since, so the write is safe
		// even if the lease ran out a moment ago.
		//
		// Alternatives considered: SELECT ... FOR UPDATE on the session
		// row from Lock to write-back holds a transaction and a pooled
		// connection for the whole handler (a pool of N connections
		// would serve only N chats at once, and a stuck handler would pin
		// a connection); a version column needs Read to hand the version
		// to Write, for which the StorageAdapter interface has no room.
		fencedWrite: `WITH lock AS (SELECT 1 FROM ` + l + ` WHERE key = $1 AND token = $4 FOR SHARE)
INSERT INTO ` + t + ` (key, value, expires_at) SELECT $1::text, $2::bytea, ` + exp(3) + ` FROM lock` + upsert,
		del: `DELETE FROM ` + t + ` WHERE key = $1`,
		// Returns 1 if the lease held (and the row, if any, is gone), 0
		// if it was lost (and nothing was deleted).
		fencedDel: `WITH lock AS (SELECT 1 FROM ` + l + ` WHERE key = $1 AND token = $2 FOR SHARE),
del AS (DELETE FROM ` + t + ` WHERE key = $1 AND EXISTS (SELECT 1 FROM lock))
SELECT count(*) FROM lock`,
		touch: `UPDATE ` + t + ` SET expires_at = now() + $2::bigint * interval '1 microsecond' WHERE key = $1 AND ` + live,
		// Keyset pagination: each page is its own short query, so no
		// connection or snapshot is held while the caller's loop runs.
		keysFirst:    `SELECT key FROM ` + t + ` WHERE ` + live + ` ORDER BY key LIMIT $1`,
		keysNext:     `SELECT key FROM ` + t + ` WHERE key > $2 AND ` + live + ` ORDER BY key LIMIT $1`,
		entriesFirst: `SELECT key, value FROM ` + t + ` WHERE ` + live + ` ORDER BY key LIMIT $1`,
		entriesNext:  `SELECT key, value FROM ` + t + ` WHERE key > $2 AND ` + live + ` ORDER BY key LIMIT $1`,
		// SKIP LOCKED: a purge never waits for, nor blocks, a writer.
		purge: `DELETE FROM ` + t + ` WHERE key IN (SELECT key FROM ` + t + `
	WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`,
		purgeLocks: `DELETE FROM ` + l + ` WHERE key IN (SELECT key FROM ` + l + `
	WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
		// Takes the lock if nobody holds it or its lease has run out;
		// affects no row otherwise. $3: lease in microseconds.
		lock: `INSERT INTO ` + l + ` AS cur (key, token, expires_at) VALUES ($1, $2, now() + $3::bigint * interval '1 microsecond')
ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
WHERE cur.expires_at <= now()`,
		renew:   `UPDATE ` + l + ` SET expires_at = now() + $3::bigint * interval '1 microsecond' WHERE key = $1 AND token = $2`,
		release: `DELETE FROM ` + l + ` WHERE key = $1 AND token = $2`,
	}
}

// New returns a store over pool. It does not contact the server or create
// tables (see [Store.Migrate]). A nil pool and invalid [Options] are
// reported as an error wrapping [session.ErrConfig] that names the
// parameter or field. If [Options.PurgeInterval] is set, call
// [Store.Close] when done.
func New(pool *pgxpool.Pool, opts Options) (*Store, error) {
	if pool == nil {
		return nil, configError("nil pool")
	}
	if opts.Table == "" {
		opts.Table = defaultTable
	}
	if err := checkIdentifier("Options.Table", opts.Table, maxTable); err != nil {
		return nil, err
	}
	if opts.Schema != "" {
		if err := checkIdentifier("Options.Schema", opts.Schema, maxIdentifier); err != nil {
			return nil, err
		}
	}
	if opts.TTL < 0 || (opts.TTL > 0 && opts.TTL < time.Microsecond) {
		return nil, configError("Options.TTL %v: must be 0 (no expiry) or at least 1µs", opts.TTL)
	}
	if opts.LockLease == 0 {
		opts.LockLease = defaultLease
	}
	if opts.LockLease < minLease {
		return nil, configError("Options.LockLease %v: must be 0 (default %v) or at least %v", opts.LockLease, defaultLease, minLease)
	}
	if opts.LockRetry == 0 {
		opts.LockRetry = defaultRetry
	}
	if opts.LockRetry < 0 {
		return nil, configError("Options.LockRetry %v: must not be negative", opts.LockRetry)
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
	s := &Store{pool: pool, opts: opts, q: buildQueries(opts)}
	s.held = lease.NewTable(lease.Config{
		Name:  "pgstore",
		Lease: opts.LockLease,
		Retry: opts.LockRetry,
		Renew: func(ctx context.Context, key, token string) (bool, error) {
			tag, err := s.pool.Exec(ctx, s.q.renew, key, token, s.opts.LockLease.Microseconds())
			return err == nil && tag.RowsAffected() != 0, err
		},
		Release: func(ctx context.Context, key, token string) error {
			_, err := s.pool.Exec(ctx, s.q.release, key, token)
			return err
		},
		Lost:    session.ErrConflict,
		OnError: opts.OnError,
	})
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
	return fmt.Errorf("pgstore: %w: %s", session.ErrConfig, fmt.Sprintf(format, args...))
}

// checkIdentifier reports a name the server would not keep as given:
// invalid UTF-8, a NUL byte (which the quoting drops) or more than max
// bytes (which the server cuts short).
func checkIdentifier(field, name string, max int) error {
	switch {
	case !utf8.ValidString(name):
		return configError("%s %q: must be valid UTF-8", field, name)
	case strings.IndexByte(name, 0) >= 0:
		return configError("%s %q: must not contain a NUL byte", field, name)
	case len(name) > max:
		return configError("%s %q is %d bytes: must be at most %d (PostgreSQL cuts its names at %d bytes)", field, name, len(name), max, maxIdentifier)
	}
	return nil
}

// Schema returns the statements that create the store's tables and index,
// for a migration tool; [Store.Migrate] runs them.
func (s *Store) Schema() []string { return append([]string(nil), s.q.schema...) }

// Migrate creates the store's tables and index if they do not exist. It
// is safe to run from several processes at once (they take turns on an
// advisory lock).
func (s *Store) Migrate(ctx context.Context) error {
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext('pgstore migrate ' || $1))`, s.opts.Schema+"."+s.opts.Table); err != nil {
			return err
		}
		for _, stmt := range s.q.schema {
			if _, err := tx.Exec(ctx, stmt); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("pgstore: migrate %s: %w", s.opts.Table, err)
	}
	return nil
}

// Close stops the background purge, if any. It does not close the pool.
func (s *Store) Close() { s.purger.Stop() }

// fail wraps err from operation op on key. If ctx has ended, the result
// also wraps ctx's error, whatever error the driver made of it, so callers
// can test for context.Canceled.
func fail(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("pgstore: %s %q: %w (%w)", op, key, cerr, err)
	}
	return fmt.Errorf("pgstore: %s %q: %w", op, key, err)
}

func (s *Store) ttlMicros() int64 { return s.opts.TTL.Microseconds() }

// Read returns the value stored at key; found is false if there is none
// or it has expired.
//
// The first Read of a key after this Store locked it costs no round trip:
// Lock read the value in the same round trip as it took the lease, and
// under the lease nobody else may change it.
func (s *Store) Read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fail(ctx, "read", key, err)
	}
	if v, found, ok := s.held.TakePrefetched(key, s.opts.TTL); ok {
		return v, found, nil
	}
	var v []byte
	err := s.pool.QueryRow(ctx, s.q.read, key).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, fail(ctx, "read", key, err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, true, nil
}

// Write stores value at key (an upsert), restarting its TTL. If this Store
// holds key's lock, the write happens only if the lock is still this
// Store's, checked in the same statement; otherwise it returns an error
// wrapping [session.ErrConflict] and writes nothing.
func (s *Store) Write(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "write", key, err)
	}
	if value == nil {
		value = []byte{} // the column is NOT NULL; nil and empty are one value
	}
	if tok, ok := s.held.Token(key); ok {
		tag, err := s.pool.Exec(ctx, s.q.fencedWrite, key, value, s.ttlMicros(), tok)
		if err != nil {
			return fail(ctx, "write", key, err)
		}
		if tag.RowsAffected() == 0 {
			return fmt.Errorf("pgstore: write %q: %w", key, session.ErrConflict)
		}
		return nil
	}
	if _, err := s.pool.Exec(ctx, s.q.write, key, value, s.ttlMicros()); err != nil {
		return fail(ctx, "write", key, err)
	}
	return nil
}

// Delete removes key; a missing key is not an error. Under this Store's
// lock it is fenced like [Store.Write].
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "delete", key, err)
	}
	if tok, ok := s.held.Token(key); ok {
		var held int
		if err := s.pool.QueryRow(ctx, s.q.fencedDel, key, tok).Scan(&held); err != nil {
			return fail(ctx, "delete", key, err)
		}
		if held == 0 {
			return fmt.Errorf("pgstore: delete %q: %w", key, session.ErrConflict)
		}
		return nil
	}
	if _, err := s.pool.Exec(ctx, s.q.del, key); err != nil {
		return fail(ctx, "delete", key, err)
	}
	return nil
}

// Touch restarts key's TTL without rewriting its value (an UPDATE of the
// expiry column). It does nothing when the store has no TTL; a missing or
// expired key is not an error and is not brought back.
func (s *Store) Touch(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "touch", key, err)
	}
	if s.opts.TTL <= 0 {
		return nil
	}
	s.held.Token(key) // drops a prefetched value
	if _, err := s.pool.Exec(ctx, s.q.touch, key, s.ttlMicros()); err != nil {
		return fail(ctx, "touch", key, err)
	}
	return nil
}

// Purge deletes expired sessions, and locks whose lease has run out, in
// batches of [Options.PurgeBatch] rows, until none is left or ctx ends. It
// returns the number of sessions deleted.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	var total int64
	for _, q := range []string{s.q.purge, s.q.purgeLocks} {
		for {
			if err := ctx.Err(); err != nil {
				return total, fmt.Errorf("pgstore: purge: %w", err)
			}
			tag, err := s.pool.Exec(ctx, q, s.opts.PurgeBatch)
			if err != nil {
				return total, fmt.Errorf("pgstore: purge: %w", err)
			}
			if q == s.q.purge {
				total += tag.RowsAffected()
			}
			if tag.RowsAffected() < int64(s.opts.PurgeBatch) {
				break
			}
		}
	}
	return total, nil
}

// Lock takes key's lock: first within this process, then, unless
// [Options.DisableLocking] is set, a lease in the locks table (a row
// with a random token and an expiry) that no other process can take until
// it is released or expires. It waits until both are had or ctx ends;
// then it returns an error wrapping ctx's error.
//
// The lease is renewed every LockLease/3 until unlock is called or ctx
// ends: a holder whose context has ended can no longer use the store, and
// a holder that is gone must not keep the key. While this Store holds
// key's lease, its writes and deletes of key are fenced (see
// [Store.Write]). unlock stops the renewal and deletes the lease only if
// this Store still owns it; calling it again does nothing.
//
// Round trips: one to lock and one to unlock when the key is free. The
// lock's round trip also reads the key's value, which the first
// [Store.Read] under the lock returns, so a locked update costs one round
// trip more than an unlocked one, not two.
func (s *Store) Lock(ctx context.Context, key string) (unlock func(), err error) {
	unlockLocal, err := s.local.Lock(ctx, key)
	if err != nil {
		return nil, fail(ctx, "lock", key, err)
	}
	if s.opts.DisableLocking {
		var once atomic.Bool
		return func() {
			if once.CompareAndSwap(false, true) {
				unlockLocal()
			}
		}, nil
	}
	leaseMicros := s.opts.LockLease.Microseconds()
	var value []byte
	var found bool
	l, err := s.held.Acquire(ctx, key, func(token string) (bool, error) {
		// One round trip: the lock statement and, in a new snapshot that
		// sees every write made under the previous lease, the session.
		// (In one statement the read would use the snapshot from before
		// the statement waited for the previous holder, and could miss
		// its last write.)
		batch := &pgx.Batch{}
		batch.Queue(s.q.lock, key, token, leaseMicros)
		batch.Queue(s.q.read, key)
		br := s.pool.SendBatch(ctx, batch)
		tag, err := br.Exec()
		acquired := err == nil && tag.RowsAffected() == 1
		if err == nil {
			value, found = nil, true
			err = br.QueryRow().Scan(&value)
			if errors.Is(err, pgx.ErrNoRows) {
				found, err = false, nil
			}
			if found && value == nil {
				value = []byte{}
			}
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		return acquired, err
	})
	if err != nil {
		unlockLocal()
		return nil, fail(ctx, "lock", key, err)
	}
	l.Prefetch(value, found)
	return s.held.Hold(ctx, key, l, unlockLocal), nil
}

// Keys yields the key of every live session, each once, in byte order.
// It reads pages of [Options.PageSize] keys, each its own query, so the
// loop body may use the store; sessions written or deleted during the
// loop may or may not be seen.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		s.pages(ctx, false, func(k string, _ []byte, err error) bool { return yield(k, err) })
	}
}

// Values yields the value of every live session, as [Store.Keys] finds
// them.
func (s *Store) Values(ctx context.Context) iter.Seq2[[]byte, error] {
	return func(yield func([]byte, error) bool) {
		s.pages(ctx, true, func(_ string, v []byte, err error) bool { return yield(v, err) })
	}
}

// Entries yields the key and value of every live session, as
// [Store.Keys] finds them.
func (s *Store) Entries(ctx context.Context) iter.Seq2[session.Entry[[]byte], error] {
	return func(yield func(session.Entry[[]byte], error) bool) {
		s.pages(ctx, true, func(k string, v []byte, err error) bool {
			if err != nil {
				return yield(session.Entry[[]byte]{}, err)
			}
			return yield(session.Entry[[]byte]{Key: k, Value: v}, nil)
		})
	}
}

type row struct {
	key   string
	value []byte
}

func (s *Store) pages(ctx context.Context, values bool, yield func(string, []byte, error) bool) {
	first, next := s.q.keysFirst, s.q.keysNext
	if values {
		first, next = s.q.entriesFirst, s.q.entriesNext
	}
	var after string
	for page := 0; ; page++ {
		if err := ctx.Err(); err != nil {
			yield("", nil, fmt.Errorf("pgstore: list: %w", err))
			return
		}
		var rows pgx.Rows
		var err error
		if page == 0 {
			rows, err = s.pool.Query(ctx, first, s.opts.PageSize)
		} else {
			rows, err = s.pool.Query(ctx, next, s.opts.PageSize, after)
		}
		var batch []row
		if err == nil {
			batch, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (row, error) {
				var x row
				if values {
					err := r.Scan(&x.key, &x.value)
					return x, err
				}
				err := r.Scan(&x.key)
				return x, err
			})
		}
		if err != nil {
			if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
				err = fmt.Errorf("%w (%w)", cerr, err)
			}
			yield("", nil, fmt.Errorf("pgstore: list: %w", err))
			return
		}
		for _, r := range batch {
			v := r.value
			if values && v == nil {
				v = []byte{}
			}
			if !yield(r.key, v, nil) {
				return
			}
		}
		if len(batch) < s.opts.PageSize {
			return
		}
		after = batch[len(batch)-1].key
	}
}
