// Package pgstore stores sessions in PostgreSQL, for bots that run as
// several processes (replicas behind a webhook load balancer) or that
// already keep their data in PostgreSQL.
//
// A [Store] is a [session.Store] (sessions as bytes by key) to give the
// middleware:
//
//	pool, err := pgxpool.New(ctx, "postgres://bot@db/bot")
//	store, err := pgstore.New(pool, pgstore.Options{})
//	err = store.Migrate(ctx) // or run store.Schema() with your migration tool
//	sess, err := session.New(session.Options[Data]{Storage: store, TTL: 30 * 24 * time.Hour})
//	h := sess.Middleware(handler)
//
// The store is a [session.Locker] across processes (see Locking below), a
// [session.Expirer] (an expiry column) and a [session.Lister] (keyset
// pagination). [Store.Unlocked] is the same store without the lock, for a
// bot that runs as one process.
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
// only makes the commits of holders from before the crash fail with
// [session.ErrConflict]):
//
//	CREATE UNLOGGED TABLE IF NOT EXISTS "tg_sessions_locks" (
//		key        text COLLATE "C" PRIMARY KEY,
//		token      text NOT NULL,
//		expires_at timestamptz NOT NULL
//	);
//
// and the record of the updates applied to each key (see [session.Locker]:
// the marks of the last [session.AppliedWindow] updates, newest first, for
// [session.AppliedTTL] after the last), in a third table, logged since it
// must survive a crash as the sessions do:
//
//	CREATE TABLE IF NOT EXISTS "tg_sessions_applied" (
//		key        text COLLATE "C" PRIMARY KEY,
//		marks      text[] NOT NULL,
//		expires_at timestamptz NOT NULL
//	) WITH (fillfactor = 50);      -- room for in-place (HOT) updates
//	CREATE INDEX IF NOT EXISTS "tg_sessions_applied_idx"
//		ON "tg_sessions_applied" (expires_at);
//
// [Store.Migrate] creates them (run it again after upgrading from a
// version without the third table); [Store.Schema] returns the statements
// for a migration tool. Expired sessions and records are never read;
// [Store.Purge] (or [Options.PurgeInterval]) deletes them in batches.
//
// Keys are PostgreSQL text: valid UTF-8 without NUL bytes (the
// middleware's keys always are). All times are the database server's, so
// the clocks of the bot's machines do not matter.
//
// # Locking and cost
//
// [Store.Lock] takes a lease row in the locks table (a random token and an
// expiry), renewed while held, and reads the session in the same round
// trip; the lease's commit checks the token, applies the change and
// deletes the lease row in one statement (see the comments on the lock
// and commit statements in the source for why this design over SELECT ...
// FOR UPDATE or a version column). So a locked update costs 2 round trips
// whatever it does to its session, with or without a TTL, and holds no
// transaction open while the handler runs. Through [Store.Unlocked] an
// update costs 1 round trip to read and 1 to write or touch, if it does,
// and one more of each for the record of applied updates when it names
// its bot (as runner.Run's updates do): 3 to 4. A
// lazy update that never touches its session costs none either way. A
// lease held longer than LockLease/3 is renewed, one statement each
// LockLease/3.
package pgstore

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/tgsession/session"
	"github.com/tgsession/session/internal/lease"
	"github.com/tgsession/session/internal/locallock"
	"github.com/tgsession/session/internal/purgeloop"
	"github.com/tgsession/session/internal/unlocked"
)

// Options configures a [Store]. The zero value is usable: table
// "tg_sessions" in the search path, locking across processes with a
// 10-second lease, no background purge.
//
// [New] checks the options and reports every mistake as an error wrapping
// [session.ErrConfig] that names the field; the rules are given with each
// field. The zero value of every field is valid and means what the field
// says (a default, or none: no background purge). Sessions expire as the
// middleware says (its TTL), not by an option of the store.
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

	// PurgeInterval, if positive, runs [Store.Purge] this often in the
	// background until [Store.Close]. Errors go to OnError. Zero means no
	// background purge; negative is an error.
	PurgeInterval time.Duration

	// PurgeBatch is how many expired rows one DELETE of [Store.Purge]
	// removes, so that a purge never holds many row locks or a long
	// transaction. Default (zero) 1000; negative is an error.
	PurgeBatch int

	// PageSize is how many keys one query of [Store.Keys] fetches.
	// Default (zero) 500; negative is an error.
	PageSize int

	// OnError, if set, receives the errors that have no caller to return
	// to: a failed lock renewal or release, a lease found lost while
	// renewing (wrapping [session.ErrConflict]), a failed background
	// purge. Nil ignores them. Nothing is logged by default.
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
	// appliedSuffix and appliedIndexSuffix name the table of records of
	// applied updates and its expiry index (shorter than indexSuffix).
	appliedSuffix      = "_applied"
	appliedIndexSuffix = "_applied_idx"
	// maxTable is the longest Options.Table whose derived names all fit.
	maxTable = maxIdentifier - len(indexSuffix)
)

// Store is a session store in PostgreSQL: a [session.Store] that is also
// a [session.Locker] (across processes), a [session.Expirer] and a
// [session.Lister]. It is safe for concurrent use and keeps no state per
// key but the locks it holds. Make one with [New] and share it: the
// waiters for a key's lock in one process queue on the Store value
// instead of polling the database.
type Store struct {
	pool     *pgxpool.Pool
	opts     Options
	q        queries
	leases   lease.Config
	local    locallock.Table
	unlocked session.Store // the view Unlocked returns

	purger *purgeloop.Loop // nil without a background purge
}

var (
	_ session.Store   = (*Store)(nil)
	_ session.Locker  = (*Store)(nil)
	_ session.Expirer = (*Store)(nil)
	_ session.Lister  = (*Store)(nil)
)

// queries are the store's SQL statements, built once with its quoted
// table names. $1 is always the key.
type queries struct {
	schema []string

	read, write, del, touch string
	keysFirst, keysNext     string
	purge, purgeLocks       string
	purgeApplied            string

	lock, lockedRead, renew, release                   string
	commitWrite, commitTouch, commitDelete, commitKeep string
}

func buildQueries(opts Options) queries {
	ident := func(name string) string {
		if opts.Schema != "" {
			return pgx.Identifier{opts.Schema, name}.Sanitize()
		}
		return pgx.Identifier{name}.Sanitize()
	}
	t, l, a := ident(opts.Table), ident(opts.Table+locksSuffix), ident(opts.Table+appliedSuffix)
	idx := pgx.Identifier{opts.Table + indexSuffix}.Sanitize()
	aidx := pgx.Identifier{opts.Table + appliedIndexSuffix}.Sanitize()
	// Expiry of a row written now, $n being its TTL in microseconds: NULL
	// (never) unless positive.
	exp := func(n int) string {
		return fmt.Sprintf("CASE WHEN $%d::bigint > 0 THEN now() + $%d::bigint * interval '1 microsecond' END", n, n)
	}
	const live = "(expires_at IS NULL OR expires_at > now())"
	upsert := " ON CONFLICT (key) DO UPDATE SET value = excluded.value, expires_at = excluded.expires_at"

	// The commit of a lease: one statement that deletes the lease row if
	// the token ($2) still owns it, makes the change only if it did, and
	// returns whether it did (count 1) or the lease was lost (0, nothing
	// changed).
	//
	// The DELETE locks the lease row until the statement commits, so a
	// process taking the lock over (the UPDATE in lock, below) waits for
	// the commit and then finds the row gone, and a takeover that came
	// first makes the DELETE find another token: the check and the change
	// are atomic with respect to takeovers. The expiry of the lease is
	// deliberately not checked: as long as nobody has taken the lock over
	// (the token still matches), nobody can have written since, so the
	// change is safe even if the lease ran out a moment ago.
	//
	// Alternatives considered: SELECT ... FOR UPDATE on the session row
	// from Lock to the commit holds a transaction and a pooled connection
	// for the whole handler (a pool of N connections would serve only N
	// chats at once, and a stuck handler would pin a connection); a
	// version column needs a schema change and still a lease to keep two
	// processes from running the same chat's updates at once.
	//
	// The mark $m of the update, if not empty, is added to the key's
	// record of applied updates in the same statement, only if the lease
	// held: the change and its record commit together.
	commit := func(change string, m int) string {
		//
		// The record's expiry is pushed out (to 1.5 AppliedTTL from now)
		// only once less than AppliedTTL is left: most commits then leave
		// the indexed column as it was, so PostgreSQL updates the row in
		// place (a HOT update, no index write), and a record still lives
		// at least AppliedTTL after its last commit.
		mark := fmt.Sprintf(`,
m AS (INSERT INTO `+a+` AS cur (key, marks, expires_at)
	SELECT $1::text, ARRAY[$%d::text], now() + interval '%d microseconds' FROM lock WHERE $%d::text <> ''
	ON CONFLICT (key) DO UPDATE SET
		expires_at = CASE WHEN cur.expires_at > now() + interval '%d microseconds' THEN cur.expires_at ELSE excluded.expires_at END,
		marks = (excluded.marks || CASE WHEN cur.expires_at > now() THEN cur.marks ELSE '{}' END)[1:%d])`,
			m, session.AppliedTTL.Microseconds()*3/2, m, session.AppliedTTL.Microseconds(), session.AppliedWindow)
		return `WITH lock AS (DELETE FROM ` + l + ` WHERE key = $1 AND token = $2 RETURNING 1)` + change + mark + `
SELECT count(*) FROM lock`
	}
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
			`CREATE TABLE IF NOT EXISTS ` + a + ` (
	key        text COLLATE "C" PRIMARY KEY,
	marks      text[] NOT NULL,
	expires_at timestamptz NOT NULL
) WITH (fillfactor = 50)`,
			`CREATE INDEX IF NOT EXISTS ` + aidx + ` ON ` + a + ` (expires_at)`,
		},
		read:  `SELECT value FROM ` + t + ` WHERE key = $1 AND ` + live,
		write: `INSERT INTO ` + t + ` (key, value, expires_at) VALUES ($1, $2, ` + exp(3) + `)` + upsert,
		del:   `DELETE FROM ` + t + ` WHERE key = $1`,
		touch: `UPDATE ` + t + ` SET expires_at = now() + $2::bigint * interval '1 microsecond' WHERE key = $1 AND ` + live,
		// Keyset pagination: each page is its own short query, so no
		// connection or snapshot is held while the caller's loop runs.
		keysFirst: `SELECT key FROM ` + t + ` WHERE ` + live + ` ORDER BY key LIMIT $1`,
		keysNext:  `SELECT key FROM ` + t + ` WHERE key > $2 AND ` + live + ` ORDER BY key LIMIT $1`,
		// SKIP LOCKED: a purge never waits for, nor blocks, a writer.
		purge: `DELETE FROM ` + t + ` WHERE key IN (SELECT key FROM ` + t + `
	WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`,
		purgeLocks: `DELETE FROM ` + l + ` WHERE key IN (SELECT key FROM ` + l + `
	WHERE expires_at <= now() LIMIT $1 FOR UPDATE SKIP LOCKED)`,
		purgeApplied: `DELETE FROM ` + a + ` WHERE key IN (SELECT key FROM ` + a + `
	WHERE expires_at <= now() ORDER BY expires_at LIMIT $1 FOR UPDATE SKIP LOCKED)`,
		// Takes the lock for token $2 if nobody holds it or its lease has
		// run out; affects no row otherwise. $3: lease in microseconds.
		lock: `INSERT INTO ` + l + ` AS cur (key, token, expires_at) VALUES ($1, $2, now() + $3::bigint * interval '1 microsecond')
ON CONFLICT (key) DO UPDATE SET token = excluded.token, expires_at = excluded.expires_at
WHERE cur.expires_at <= now()`,
		// The session, if token $2 holds the lock: sent with lock in one
		// batch (one round trip), as a statement of its own. In the lock
		// statement itself (a CTE) the read would use the snapshot taken
		// when that statement began: if it then waited for the previous
		// holder's commit (a row lock on the lease row), it would take the
		// lock and miss the value that commit wrote. The next statement's
		// snapshot sees it.
		// It returns one row (the value or NULL, whether there is one,
		// whether the mark $3 is in the key's record) if the lock is held,
		// none otherwise.
		lockedRead: `SELECT v.value, v.value IS NOT NULL,
	$3::text <> '' AND EXISTS (SELECT 1 FROM ` + a + ` WHERE key = $1 AND expires_at > now() AND $3::text = ANY (marks))
FROM (SELECT (SELECT value FROM ` + t + ` WHERE key = $1 AND ` + live + `) AS value) v
WHERE EXISTS (SELECT 1 FROM ` + l + ` WHERE key = $1 AND token = $2)`,
		renew:   `UPDATE ` + l + ` SET expires_at = now() + $3::bigint * interval '1 microsecond' WHERE key = $1 AND token = $2`,
		release: `DELETE FROM ` + l + ` WHERE key = $1 AND token = $2`,
		// $3 the mark; $4 the value, $5 its TTL in microseconds (0: none).
		commitWrite: commit(`,
w AS (INSERT INTO `+t+` (key, value, expires_at) SELECT $1::text, $4::bytea, `+exp(5)+` FROM lock`+upsert+`)`, 3),
		// $3 the mark; $4 the TTL in microseconds, positive.
		commitTouch: commit(`,
w AS (UPDATE `+t+` SET expires_at = now() + $4::bigint * interval '1 microsecond'
	WHERE key = $1 AND `+live+` AND EXISTS (SELECT 1 FROM lock))`, 3),
		// $3 the mark.
		commitDelete: commit(`,
w AS (DELETE FROM `+t+` WHERE key = $1 AND EXISTS (SELECT 1 FROM lock))`, 3),
		commitKeep: commit("", 3),
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
	s.unlocked = unlocked.Of(s)
	s.leases = lease.Config{
		Name:  "pgstore",
		Lease: opts.LockLease,
		Retry: opts.LockRetry,
		Renew: func(ctx context.Context, key, token string) (bool, error) {
			tag, err := s.pool.Exec(ctx, s.q.renew, key, token, opts.LockLease.Microseconds())
			return err == nil && tag.RowsAffected() != 0, err
		},
		Release: func(ctx context.Context, key, token string) error {
			_, err := s.pool.Exec(ctx, s.q.release, key, token)
			return err
		},
		Lost:    session.ErrConflict,
		OnError: opts.OnError,
	}
	if opts.PurgeInterval > 0 {
		s.purger = purgeloop.Start(opts.PurgeInterval, func(ctx context.Context) error {
			_, err := s.Purge(ctx)
			if notMigrated(err) {
				// The usual order is New, then Migrate: a purge that
				// comes first finds no table, which is not an error
				// (and a store that is never migrated fails every
				// session call, loudly).
				return nil
			}
			return err
		}, opts.OnError)
	}
	return s, nil
}

// notMigrated reports an error of a statement on a table that does not
// exist (yet): SQLSTATE 42P01, undefined_table.
func notMigrated(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "42P01"
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

// micros is ttl in whole microseconds, PostgreSQL's unit, rounded up so
// that a positive TTL never becomes 0 (no expiry); 0 if ttl is not
// positive.
func micros(ttl time.Duration) int64 {
	if ttl <= 0 {
		return 0
	}
	return int64((ttl + time.Microsecond - 1) / time.Microsecond)
}

// Read returns the value stored at key; found is false if there is none
// or it has expired. It is one SELECT, unfenced.
func (s *Store) Read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, fail(ctx, "read", key, err)
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

// Write stores value at key (an upsert) with no expiry. It is unfenced:
// it does not look at key's lock.
func (s *Store) Write(ctx context.Context, key string, value []byte) error {
	return s.WriteTTL(ctx, key, value, 0)
}

// WriteTTL stores value at key (an upsert), to expire ttl from now (ttl
// rounded up to a whole microsecond). A ttl of zero or less means no
// expiry, as [Store.Write]. It is unfenced.
func (s *Store) WriteTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "write", key, err)
	}
	if value == nil {
		value = []byte{} // the column is NOT NULL; nil and empty are one value
	}
	if _, err := s.pool.Exec(ctx, s.q.write, key, value, micros(ttl)); err != nil {
		return fail(ctx, "write", key, err)
	}
	return nil
}

// Delete removes key; a missing key is not an error. It is unfenced.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "delete", key, err)
	}
	if _, err := s.pool.Exec(ctx, s.q.del, key); err != nil {
		return fail(ctx, "delete", key, err)
	}
	return nil
}

// Touch makes key expire ttl from now without rewriting its value (an
// UPDATE of the expiry column). A missing or expired key is not an error
// and is not brought back; a ttl of zero or less does nothing (it does
// not make a key persistent).
func (s *Store) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return fail(ctx, "touch", key, err)
	}
	if ttl <= 0 {
		return nil
	}
	if _, err := s.pool.Exec(ctx, s.q.touch, key, micros(ttl)); err != nil {
		return fail(ctx, "touch", key, err)
	}
	return nil
}

// Purge deletes expired sessions, locks whose lease has run out and
// expired records of applied updates, in
// batches of [Options.PurgeBatch] rows, until none is left or ctx ends. It
// returns the number of sessions deleted.
func (s *Store) Purge(ctx context.Context) (int64, error) {
	var total int64
	for _, q := range []string{s.q.purge, s.q.purgeLocks, s.q.purgeApplied} {
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

// Lock takes key's lock and reads its value. It waits first for the
// holders of key in this process (on the Store, without asking the
// database), then takes a lease row in the locks table (a random token
// and an expiry) and reads the session in the same round trip, polling
// with backoff while another process holds the lease. It waits until the
// lock is had or ctx ends; then it returns an error wrapping ctx's error.
//
// The lease is renewed every LockLease/3 until the [session.Lease] is
// committed or released, and never after; the renewals do not depend on
// ctx. Its Commit checks the token, applies the change and deletes the
// lease row in one statement. Round trips: one to lock and read, one to
// commit, when the key is free.
func (s *Store) Lock(ctx context.Context, key, mark string) (session.Lease, error) {
	unlockLocal, err := s.local.Lock(ctx, key)
	if err != nil {
		return nil, fail(ctx, "lock", key, err)
	}
	x := &lockLease{s: s, key: key, mark: mark}
	leaseMicros := s.opts.LockLease.Microseconds()
	x.l, err = lease.Acquire(ctx, &s.leases, key, unlockLocal, func(token string) (bool, error) {
		// One round trip, one implicit transaction, two statements: see
		// lockedRead.
		batch := &pgx.Batch{}
		batch.Queue(s.q.lock, key, token, leaseMicros)
		batch.Queue(s.q.lockedRead, key, token, mark)
		br := s.pool.SendBatch(ctx, batch)
		tag, err := br.Exec()
		acquired := err == nil && tag.RowsAffected() == 1
		if err == nil {
			var v []byte
			var found, applied bool
			err = br.QueryRow().Scan(&v, &found, &applied)
			switch {
			case errors.Is(err, pgx.ErrNoRows): // not acquired
				x.value, x.found, x.applied, err = nil, false, false, nil
			case err == nil:
				if found && v == nil {
					v = []byte{}
				}
				if !found {
					v = nil
				}
				x.value, x.found, x.applied = v, found, applied
			}
		}
		if cerr := br.Close(); err == nil {
			err = cerr
		}
		return acquired, err
	})
	if err != nil {
		return nil, fail(ctx, "lock", key, err)
	}
	return x, nil
}

// lockLease is a [session.Lease] of a [Store]: the lease row and the
// value read with it.
type lockLease struct {
	s       *Store
	key     string
	mark    string
	l       *lease.Lease
	value   []byte
	found   bool
	applied bool
}

// Value returns the value read with the lock.
func (x *lockLease) Value() ([]byte, bool) { return x.value, x.found }

// Applied reports whether the lease's mark was in the key's record of
// applied updates when the lock was taken.
func (x *lockLease) Applied() bool { return x.applied }

// Commit applies c and deletes the lease row in one statement, if the
// lease still holds; otherwise it changes nothing and returns an error
// wrapping [session.ErrConflict]. It ends the lease whatever it returns.
func (x *lockLease) Commit(ctx context.Context, c session.Change) error {
	var sql string
	args := []any{x.key, nil, x.mark} // the token is filled in below
	switch c.Op {
	case session.OpKeep:
		sql = x.s.q.commitKeep
	case session.OpWrite:
		value := c.Value
		if value == nil {
			value = []byte{}
		}
		sql, args = x.s.q.commitWrite, append(args, value, micros(c.TTL))
	case session.OpTouch:
		if c.TTL > 0 {
			sql, args = x.s.q.commitTouch, append(args, micros(c.TTL))
		} else {
			sql = x.s.q.commitKeep
		}
	case session.OpDelete:
		sql = x.s.q.commitDelete
	default:
		x.l.Release()
		return fmt.Errorf("pgstore: commit %q: unknown operation %d", x.key, c.Op)
	}
	return x.l.Commit(ctx, func(ctx context.Context, token string) (bool, error) {
		args[1] = token
		var n int64
		err := x.s.pool.QueryRow(ctx, sql, args...).Scan(&n)
		return n == 1, err
	})
}

// Release gives the lease back without a change.
func (x *lockLease) Release() { x.l.Release() }

// Freeze stops renewing the lease, as if this process had frozen: a hook
// for storagetest.RunLocker (storagetest.Freezer), which checks what
// happens when the lease runs out under its holder.
func (x *lockLease) Freeze() { x.l.Freeze() }

// Unlocked returns the store without its lock: a [session.Store], a
// [session.Expirer] and a [session.Lister] over the same tables, but not
// a [session.Locker] (nor does it unwrap to one). The middleware then
// locks keys within the process only: no lease rows, but more round
// trips per update (a read and a write of the record of applied updates
// beside the session's, 3 to 4 in all), and two processes sharing the
// tables can lose each other's updates. For bots that run as one process, and for comparing
// the two.
func (s *Store) Unlocked() session.Store { return s.unlocked }

// Keys yields the key of every live session, each once, in byte order.
// It reads pages of [Options.PageSize] keys, each its own query, so the
// loop body may use the store; sessions written or deleted during the
// loop may or may not be seen.
func (s *Store) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		var after string
		for page := 0; ; page++ {
			if err := ctx.Err(); err != nil {
				yield("", fmt.Errorf("pgstore: list: %w", err))
				return
			}
			var rows pgx.Rows
			var err error
			if page == 0 {
				rows, err = s.pool.Query(ctx, s.q.keysFirst, s.opts.PageSize)
			} else {
				rows, err = s.pool.Query(ctx, s.q.keysNext, s.opts.PageSize, after)
			}
			var keys []string
			if err == nil {
				keys, err = pgx.CollectRows(rows, pgx.RowTo[string])
			}
			if err != nil {
				if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
					err = fmt.Errorf("%w (%w)", cerr, err)
				}
				yield("", fmt.Errorf("pgstore: list: %w", err))
				return
			}
			for _, k := range keys {
				if !yield(k, nil) {
					return
				}
			}
			if len(keys) < s.opts.PageSize {
				return
			}
			after = keys[len(keys)-1]
		}
	}
}
