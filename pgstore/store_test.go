package pgstore_test

// Direct tests of the store and its leases, through the session.Store
// API alone (no middleware, no storagetest).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/pgstore"
)

// dsn is the test database: PGSTORE_TEST_DSN, DATABASE_URL, or the local
// default.
func dsn() string {
	for _, env := range []string{"PGSTORE_TEST_DSN", "DATABASE_URL"} {
		if v := os.Getenv(env); v != "" {
			return v
		}
	}
	return "postgres://postgres@127.0.0.1:5432/test?sslmode=disable"
}

// newPool connects to the test database, failing the test (never skipping
// it) if the server does not answer. appName, if set, names the
// connections (to find them in pg_stat_activity); tracer, if set, traces
// them.
func newPool(t testing.TB, appName string, tracer ...pgx.QueryTracer) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn())
	require.NoError(t, err, "bad DSN %q", dsn())
	if appName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = appName
	}
	if len(tracer) > 0 {
		cfg.ConnConfig.Tracer = tracer[0]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	t.Cleanup(pool.Close)
	require.NoError(t, pool.Ping(ctx),
		"PostgreSQL at %s does not answer: start it (scripts/test.sh does) or set PGSTORE_TEST_DSN", dsn())
	return pool
}

// uniqueTable is a table name no other test or run uses; its tables are
// dropped when t ends, so reruns start clean.
func uniqueTable(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	name := "pgstore_test_" + hex.EncodeToString(b[:])
	t.Cleanup(func() { dropTables(t, name) })
	return name
}

func dropTables(t testing.TB, name string) {
	conn, err := pgx.Connect(context.Background(), dsn())
	if err != nil {
		t.Errorf("cleanup of %s: %v", name, err)
		return
	}
	defer conn.Close(context.Background())
	for _, n := range []string{name, name + "_locks", name + "_applied"} {
		if _, err := conn.Exec(context.Background(), "DROP TABLE IF EXISTS "+pgx.Identifier{n}.Sanitize()); err != nil {
			t.Errorf("cleanup of %s: %v", n, err)
		}
	}
}

// newStore makes a store over pool and creates its tables.
func newStore(t testing.TB, pool *pgxpool.Pool, opts pgstore.Options) *pgstore.Store {
	t.Helper()
	s, err := pgstore.New(pool, opts)
	require.NoError(t, err)
	t.Cleanup(s.Close)
	require.NoError(t, s.Migrate(context.Background()))
	return s
}

// countTracer counts the round trips a pool makes: a statement (once pgx
// has cached its prepared form) or a batch.
type countTracer struct{ n *atomic.Int64 }

func (c countTracer) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (countTracer) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// A batch is one round trip, whatever it holds.
func (c countTracer) TraceBatchStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceBatchStartData) context.Context {
	c.n.Add(1)
	return ctx
}

func (countTracer) TraceBatchQuery(context.Context, *pgx.Conn, pgx.TraceBatchQueryData) {}
func (countTracer) TraceBatchEnd(context.Context, *pgx.Conn, pgx.TraceBatchEndData)     {}

// lockWithin locks key, failing the test if that takes longer than a
// few seconds (a failure detector only).
func lockWithin(t *testing.T, lk session.Locker, key string) session.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	l, err := lk.Lock(ctx, key, "")
	require.NoError(t, err, "Lock(%q)", key)
	return l
}

// tables gives a test's SQL access to a store's rows.
type tables struct {
	t     *testing.T
	pool  *pgxpool.Pool
	name  string // the sessions table, quoted
	locks string // the locks table, quoted
}

func newTables(t *testing.T, pool *pgxpool.Pool, table string) tables {
	return tables{t, pool, pgx.Identifier{table}.Sanitize(), pgx.Identifier{table + "_locks"}.Sanitize()}
}

func (tb tables) exec(sql string, args ...any) {
	tb.t.Helper()
	_, err := tb.pool.Exec(context.Background(), sql, args...)
	require.NoError(tb.t, err, sql)
}

// row returns key's stored value and expiry (nil: never), and whether
// there is a row (live or not).
func (tb tables) row(key string) (value string, expires *time.Time, found bool) {
	tb.t.Helper()
	var v []byte
	err := tb.pool.QueryRow(context.Background(), "SELECT value, expires_at FROM "+tb.name+" WHERE key = $1", key).Scan(&v, &expires)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", nil, false
	}
	require.NoError(tb.t, err)
	return string(v), expires, true
}

// lock returns key's lock row: its token and how long its lease has left
// by the server's clock.
func (tb tables) lock(key string) (token string, left time.Duration, found bool) {
	tb.t.Helper()
	var us int64
	err := tb.pool.QueryRow(context.Background(),
		"SELECT token, (extract(epoch FROM expires_at - now()) * 1000000)::bigint FROM "+tb.locks+" WHERE key = $1", key).Scan(&token, &us)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", 0, false
	}
	require.NoError(tb.t, err)
	return token, time.Duration(us) * time.Microsecond, true
}

// ttlLeft is how long key has left to live by the server's clock.
func (tb tables) ttlLeft(key string) time.Duration {
	tb.t.Helper()
	var us int64
	require.NoError(tb.t, tb.pool.QueryRow(context.Background(),
		"SELECT (extract(epoch FROM expires_at - now()) * 1000000)::bigint FROM "+tb.name+" WHERE key = $1", key).Scan(&us))
	return time.Duration(us) * time.Microsecond
}

// TestNewRejectsBadOptions: every mistake in New's arguments is an error
// wrapping session.ErrConfig that names the parameter or option, and New
// makes no store.
func TestNewRejectsBadOptions(t *testing.T) {
	pool := newPool(t, "")
	for _, tc := range []struct {
		name  string
		pool  *pgxpool.Pool
		opts  pgstore.Options
		field string // what the message must name
	}{
		{"nil pool", nil, pgstore.Options{}, "nil pool"},
		{"table name too long for its index", pool, pgstore.Options{Table: strings.Repeat("t", 49)}, "Options.Table"},
		{"table name too long for PostgreSQL", pool, pgstore.Options{Table: strings.Repeat("t", 64)}, "Options.Table"},
		{"multibyte table name too long", pool, pgstore.Options{Table: strings.Repeat("ü", 25)}, "Options.Table"},
		{"NUL in the table name", pool, pgstore.Options{Table: "tg\x00sessions"}, "Options.Table"},
		{"table name not UTF-8", pool, pgstore.Options{Table: "tg\xffsessions"}, "Options.Table"},
		{"schema name too long", pool, pgstore.Options{Schema: strings.Repeat("s", 64)}, "Options.Schema"},
		{"NUL in the schema name", pool, pgstore.Options{Schema: "bot\x00"}, "Options.Schema"},
		{"schema name not UTF-8", pool, pgstore.Options{Schema: "bot\xff"}, "Options.Schema"},
		{"negative LockLease", pool, pgstore.Options{LockLease: -time.Second}, "Options.LockLease"},
		{"LockLease too short to renew", pool, pgstore.Options{LockLease: 29 * time.Millisecond}, "Options.LockLease"},
		{"negative LockRetry", pool, pgstore.Options{LockRetry: -time.Millisecond}, "Options.LockRetry"},
		{"negative PurgeInterval", pool, pgstore.Options{PurgeInterval: -time.Second}, "Options.PurgeInterval"},
		{"negative PurgeBatch", pool, pgstore.Options{PurgeBatch: -1}, "Options.PurgeBatch"},
		{"negative PageSize", pool, pgstore.Options{PageSize: -1}, "Options.PageSize"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := pgstore.New(tc.pool, tc.opts)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.ErrorIs(t, err, session.ErrConfig)
			assert.ErrorContains(t, err, tc.field)
			assert.ErrorContains(t, err, "pgstore: ")
		})
	}
}

// TestNewAcceptsLimitsAndDefaults: zero values mean their documented
// defaults, and the limits themselves are allowed.
func TestNewAcceptsLimitsAndDefaults(t *testing.T) {
	pool := newPool(t, "")
	for _, tc := range []struct {
		name string
		opts pgstore.Options
	}{
		{"zero options", pgstore.Options{}},
		{"LockLease of 30ms", pgstore.Options{LockLease: 30 * time.Millisecond}},
		{"48-byte table name", pgstore.Options{Table: strings.Repeat("t", 48)}},
		{"63-byte schema name", pgstore.Options{Schema: strings.Repeat("s", 63)}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := pgstore.New(pool, tc.opts)
			require.NoError(t, err)
			assert.NotNil(t, s)
			s.Close()
		})
	}
}

// TestCapabilities: the store has every capability; its unlocked view
// has all but the lock, and nothing to unwrap to one.
func TestCapabilities(t *testing.T) {
	s := newStore(t, newPool(t, ""), pgstore.Options{Table: uniqueTable(t)})
	var st session.Store = s
	_, ok := st.(session.Locker)
	assert.True(t, ok, "Locker")
	_, ok = st.(session.Expirer)
	assert.True(t, ok, "Expirer")
	_, ok = st.(session.Lister)
	assert.True(t, ok, "Lister")

	u := s.Unlocked()
	assert.Same(t, u, s.Unlocked(), "one view per store: the middleware's in-process lock table is keyed by it")
	_, ok = u.(session.Locker)
	assert.False(t, ok, "the unlocked view is no Locker")
	_, ok = session.Unwrap[session.Locker](u)
	assert.False(t, ok, "nor does it unwrap to one")
	_, ok = u.(interface{ Unwrap() session.Store })
	assert.False(t, ok, "no Unwrap")
	_, ok = u.(session.Expirer)
	assert.True(t, ok, "the unlocked view is an Expirer")
	_, ok = u.(session.Lister)
	assert.True(t, ok, "the unlocked view is a Lister")
}

// TestLongestTableNameKeepsItsNames: with the longest table name allowed
// the server creates the tables and the index under exactly the names
// the package doc gives.
func TestLongestTableNameKeepsItsNames(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	table += strings.Repeat("x", 48-len(table))
	s := newStore(t, pool, pgstore.Options{Table: table})
	for _, name := range []string{table, table + "_locks", table + "_expires_at_idx", table + "_applied", table + "_applied_idx"} {
		var found bool
		require.NoError(t, pool.QueryRow(ctx,
			"SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = $1 AND pg_table_is_visible(oid))", name).Scan(&found))
		assert.True(t, found, "%s exists", name)
	}
	require.NoError(t, s.Write(ctx, "k", []byte("v")))
	l := lockWithin(t, s, "k")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("w")}))
	v, _, _ := newTables(t, pool, table).row("k")
	assert.Equal(t, "w", v)
}

// TestOddTableName: the table name needs quoting (and is 48 bytes, the
// longest allowed).
func TestOddTableName(t *testing.T) {
	ctx := context.Background()
	name := uniqueTable(t) + `"; DROP TABLE x;--Ünï`
	require.Len(t, name, 48)
	t.Cleanup(func() { dropTables(t, name) })
	s := newStore(t, newPool(t, ""), pgstore.Options{Table: name, PageSize: 2})
	for _, k := range []string{"a", "b", "c"} {
		require.NoError(t, s.WriteTTL(ctx, k, []byte(k), time.Hour))
	}
	l := lockWithin(t, s, "a")
	v, found := l.Value()
	assert.True(t, found)
	assert.Equal(t, "a", string(v))
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpTouch, TTL: time.Hour}))
	var keys []string
	for k, err := range s.Keys(ctx) {
		require.NoError(t, err)
		keys = append(keys, k)
	}
	assert.Equal(t, []string{"a", "b", "c"}, keys)
}

// TestMigrateTwiceAndConcurrently: Migrate is idempotent and several
// processes may run it at once.
func TestMigrateTwiceAndConcurrently(t *testing.T) {
	pool := newPool(t, "")
	table := uniqueTable(t)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s, err := pgstore.New(pool, pgstore.Options{Table: table})
			if assert.NoError(t, err) {
				assert.NoError(t, s.Migrate(context.Background()))
			}
		}()
	}
	wg.Wait()
	s := newStore(t, pool, pgstore.Options{Table: table})
	require.NoError(t, s.Migrate(context.Background()))
	assert.Len(t, s.Schema(), 5)
}

func TestPurge(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	s := newStore(t, pool, pgstore.Options{Table: table, PurgeBatch: 7})
	for i := range 30 {
		require.NoError(t, s.WriteTTL(ctx, "short-"+strconv.Itoa(i), []byte("x"), 50*time.Millisecond))
	}
	require.NoError(t, s.Write(ctx, "forever", []byte("y")))
	tb := newTables(t, pool, table)
	// Locks whose lease has run out go too; live ones stay.
	tb.exec("INSERT INTO " + tb.locks + " VALUES ('gone', 't', now() - interval '1 second'), ('held', 't', now() + interval '1 hour')")
	time.Sleep(100 * time.Millisecond)

	n, err := s.Purge(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 30, n, "expired rows purged over several batches")
	var rows int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+tb.name).Scan(&rows))
	assert.Equal(t, 1, rows, "only the row without expiry is left")
	_, _, found := tb.lock("gone")
	assert.False(t, found, "expired lock purged")
	_, _, found = tb.lock("held")
	assert.True(t, found, "live lock kept")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = s.Purge(cancelled)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestBackgroundPurge(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	var reported atomic.Int64
	s := newStore(t, pool, pgstore.Options{Table: table,
		PurgeInterval: 50 * time.Millisecond, OnError: func(error) { reported.Add(1) }})
	require.NoError(t, s.WriteTTL(ctx, "k", []byte("x"), 20*time.Millisecond))
	assert.Eventually(t, func() bool {
		var rows int
		err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&rows)
		return err == nil && rows == 0
	}, 5*time.Second, 20*time.Millisecond, "the background purge deletes the expired row")
	s.Close()
	s.Close() // idempotent
	assert.Zero(t, reported.Load())
}

// TestBackgroundPurgeBeforeMigrate: the README's order (New, then
// Migrate) with a short PurgeInterval reports no error for the purges
// that run before the tables exist, and purges once they do.
func TestBackgroundPurgeBeforeMigrate(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	var reported atomic.Int64
	s, err := pgstore.New(pool, pgstore.Options{Table: table,
		PurgeInterval: time.Millisecond, OnError: func(error) { reported.Add(1) }})
	require.NoError(t, err)
	defer s.Close()
	_, err = s.Purge(ctx)
	require.Error(t, err, "an explicit Purge before Migrate reports the missing table")
	time.Sleep(50 * time.Millisecond) // many background purges before Migrate
	require.NoError(t, s.Migrate(ctx))
	require.NoError(t, s.WriteTTL(ctx, "k", []byte("x"), time.Millisecond))
	assert.Eventually(t, func() bool {
		var rows int
		err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&rows)
		return err == nil && rows == 0
	}, 5*time.Second, 10*time.Millisecond, "the background purge deletes the expired row")
	assert.Zero(t, reported.Load(), "errors reported by the background purge")
}

// TestExpiryColumn: WriteTTL and Touch set the expiry column, Write
// clears it, Touch never revives a row nor makes one persistent, and
// expired rows are neither read nor listed nor touched.
func TestExpiryColumn(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	s := newStore(t, pool, pgstore.Options{Table: table})
	tb := newTables(t, pool, table)

	require.NoError(t, s.Write(ctx, "k", []byte("v")))
	_, e, _ := tb.row("k")
	assert.Nil(t, e, "Write: no expiry")
	require.NoError(t, s.Touch(ctx, "k", 0))
	_, e, _ = tb.row("k")
	assert.Nil(t, e, "Touch with no TTL changes nothing")
	require.NoError(t, s.Touch(ctx, "k", time.Hour))
	assert.InDelta(t, time.Hour.Seconds(), tb.ttlLeft("k").Seconds(), 5, "Touch")
	require.NoError(t, s.WriteTTL(ctx, "k", []byte("w"), 2*time.Hour))
	assert.InDelta(t, (2 * time.Hour).Seconds(), tb.ttlLeft("k").Seconds(), 5, "WriteTTL")
	require.NoError(t, s.Write(ctx, "k", []byte("x")))
	_, e, _ = tb.row("k")
	assert.Nil(t, e, "Write clears the expiry")
	require.NoError(t, s.WriteTTL(ctx, "k", []byte("y"), 0))
	_, e, _ = tb.row("k")
	assert.Nil(t, e, "WriteTTL without a TTL: no expiry")
	require.NoError(t, s.WriteTTL(ctx, "short", []byte("v"), time.Nanosecond))
	_, e, _ = tb.row("short")
	assert.NotNil(t, e, "a sub-microsecond TTL expires")

	require.NoError(t, s.Touch(ctx, "missing", time.Hour))
	_, _, found := tb.row("missing")
	assert.False(t, found, "Touch does not create a row")

	// An expired row that is not purged yet.
	tb.exec("INSERT INTO "+tb.name+" VALUES ($1, 'old', now() - interval '1 second')", "expired")
	require.NoError(t, s.Touch(ctx, "expired", time.Hour))
	_, found, err := s.Read(ctx, "expired")
	require.NoError(t, err)
	assert.False(t, found, "an expired row is not read, and Touch does not revive it")
	l := lockWithin(t, s, "expired")
	_, found = l.Value()
	assert.False(t, found, "nor read with the lock")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpTouch, TTL: time.Hour}))
	_, found, err = s.Read(ctx, "expired")
	require.NoError(t, err)
	assert.False(t, found, "nor revived by a commit's touch")
	for k, err := range s.Keys(ctx) {
		require.NoError(t, err)
		assert.NotEqual(t, "expired", k, "nor listed")
	}
}

func TestBadKeyIsAnError(t *testing.T) {
	s := newStore(t, newPool(t, ""), pgstore.Options{Table: uniqueTable(t)})
	err := s.Write(context.Background(), "nul\x00byte", []byte("v"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"nul\x00byte"`, "the error names the key")
	_, err = s.Lock(context.Background(), "nul\x00byte", "")
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"nul\x00byte"`, "the error names the key")
}

// TestLeaseValue: the lease holds the value read with the lock.
func TestLeaseValue(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	s := newStore(t, pool, pgstore.Options{Table: table, LockLease: time.Minute})
	tb := newTables(t, pool, table)
	l := lockWithin(t, s, "k")
	v, found := l.Value()
	assert.False(t, found, "%q", v)
	tok, left, held := tb.lock("k")
	assert.True(t, held, "a lock row while held")
	assert.Len(t, tok, 32, "a random token")
	assert.InDelta(t, time.Minute.Seconds(), left.Seconds(), 5, "the lease")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("1")}))
	_, _, held = tb.lock("k")
	assert.False(t, held, "no lock row after the commit")

	l = lockWithin(t, s, "k")
	v, found = l.Value()
	assert.True(t, found)
	assert.Equal(t, "1", string(v))
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite}))

	l = lockWithin(t, s, "k")
	v, found = l.Value()
	assert.True(t, found, "an empty value is a value")
	assert.Empty(t, v)
	l.Release()
}

// TestCommitOps: each operation of a commit does what it says, and the
// commit deletes the lock row.
func TestCommitOps(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	s := newStore(t, pool, pgstore.Options{Table: table})
	tb := newTables(t, pool, table)
	const ttl = time.Hour
	for i, tc := range []struct {
		name     string
		seed     string        // "" none
		seedTTL  time.Duration // of the seed
		change   session.Change
		want     string        // "" missing
		wantLeft time.Duration // 0: no expiry
	}{
		{"write", "", 0, session.Change{Op: session.OpWrite, Value: []byte("new")}, "new", 0},
		{"write over an expiring key drops its expiry", "old", ttl, session.Change{Op: session.OpWrite, Value: []byte("new")}, "new", 0},
		{"write with TTL", "old", 0, session.Change{Op: session.OpWrite, Value: []byte("new"), TTL: ttl}, "new", ttl},
		{"touch", "old", 0, session.Change{Op: session.OpTouch, TTL: ttl}, "old", ttl},
		{"touch restarts the expiry", "old", time.Minute, session.Change{Op: session.OpTouch, TTL: ttl}, "old", ttl},
		{"touch without TTL changes nothing", "old", time.Minute, session.Change{Op: session.OpTouch}, "old", time.Minute},
		{"touch of a missing key", "", 0, session.Change{Op: session.OpTouch, TTL: ttl}, "", 0},
		{"delete", "old", 0, session.Change{Op: session.OpDelete}, "", 0},
		{"delete of a missing key", "", 0, session.Change{Op: session.OpDelete}, "", 0},
		{"keep", "old", time.Minute, session.Change{Op: session.OpKeep}, "old", time.Minute},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "k-" + strconv.Itoa(i)
			if tc.seed != "" {
				require.NoError(t, s.WriteTTL(ctx, key, []byte(tc.seed), tc.seedTTL))
			}
			l := lockWithin(t, s, key)
			require.NoError(t, l.Commit(ctx, tc.change))
			v, exp, found := tb.row(key)
			if tc.want == "" {
				assert.False(t, found, "%q", v)
			} else {
				assert.True(t, found)
				assert.Equal(t, tc.want, v)
				if tc.wantLeft == 0 {
					assert.Nil(t, exp, "no expiry")
				} else {
					assert.InDelta(t, tc.wantLeft.Seconds(), tb.ttlLeft(key).Seconds(), 5)
				}
			}
			_, _, held := tb.lock(key)
			assert.False(t, held, "the commit deleted the lock row")
		})
	}

	t.Run("unknown op", func(t *testing.T) {
		l := lockWithin(t, s, "u")
		err := l.Commit(ctx, session.Change{Op: 99})
		assert.ErrorContains(t, err, `"u"`)
		_, _, held := tb.lock("u")
		assert.False(t, held, "released")
	})
}

// TestCommitConflict: a holder whose lease ran out and was taken over,
// or whose lease row is gone, writes nothing, whatever its change, and
// gets an error wrapping ErrConflict that names the key; the new
// holder's lock and value stay. A lease that ran out with nobody taking
// it over still commits: nobody can have written since.
func TestCommitConflict(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	opts := pgstore.Options{Table: table}
	a, b := newStore(t, pool, opts), newStore(t, newPool(t, ""), opts)
	tb := newTables(t, pool, table)
	expire := func(key string) {
		tb.exec("UPDATE "+tb.locks+" SET expires_at = now() - interval '1 second' WHERE key = $1", key)
	}
	for name, op := range map[string]session.Op{"write": session.OpWrite, "touch": session.OpTouch,
		"delete": session.OpDelete, "keep": session.OpKeep} {
		t.Run(name, func(t *testing.T) {
			key := "k-" + name
			la := lockWithin(t, a, key)
			expire(key) // a stalled process
			lb := lockWithin(t, b, key)
			tokB, _, _ := tb.lock(key)

			err := la.Commit(ctx, session.Change{Op: op, Value: []byte("a"), TTL: time.Minute})
			require.ErrorIs(t, err, session.ErrConflict)
			assert.ErrorContains(t, err, strconv.Quote(key))
			_, _, found := tb.row(key)
			assert.False(t, found, "nothing written")
			tok, _, held := tb.lock(key)
			assert.True(t, held, "b's lock stays")
			assert.Equal(t, tokB, tok)

			require.NoError(t, lb.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("b")}))
			v, _, _ := tb.row(key)
			assert.Equal(t, "b", v)

			// The lease row gone (a crash emptied the unlogged table).
			la = lockWithin(t, a, key)
			tb.exec("DELETE FROM "+tb.locks+" WHERE key = $1", key)
			err = la.Commit(ctx, session.Change{Op: op, Value: []byte("a"), TTL: time.Minute})
			require.ErrorIs(t, err, session.ErrConflict)
			v, e, _ := tb.row(key)
			assert.Equal(t, "b", v)
			assert.Nil(t, e)

			// Ran out, not taken over: committed.
			la = lockWithin(t, a, key)
			expire(key)
			require.NoError(t, la.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("a2")}))
			v, _, _ = tb.row(key)
			assert.Equal(t, "a2", v)
		})
	}
}

// TestLockSeesTheCommitItWaitedFor: a process whose lock statement waits
// for another holder's commit (a row lock on the lease row) reads the
// value that commit wrote, also a new row: the read is a statement of
// its own, with a snapshot taken after the wait.
func TestLockSeesTheCommitItWaitedFor(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pool := newPool(t, "")
	table := uniqueTable(t)
	opts := pgstore.Options{Table: table}
	a := newStore(t, pool, opts)
	const appName = "pgstore-waiter"
	b := newStore(t, newPool(t, appName), opts)
	tb := newTables(t, pool, table)

	la := lockWithin(t, a, "k")
	defer la.Release()
	tokA, _, _ := tb.lock("k")
	// a's commit, held open in a transaction: it deletes the lease row and
	// writes a new session row.
	tx, err := pool.Begin(ctx)
	require.NoError(t, err)
	defer func() { _ = tx.Rollback(ctx) }()
	_, err = tx.Exec(ctx, "DELETE FROM "+tb.locks+" WHERE key = 'k' AND token = $1", tokA)
	require.NoError(t, err)
	_, err = tx.Exec(ctx, "INSERT INTO "+tb.name+" VALUES ('k', 'from a', NULL)")
	require.NoError(t, err)

	got := make(chan session.Lease, 1)
	go func() {
		l, err := b.Lock(ctx, "k", "")
		assert.NoError(t, err)
		got <- l
	}()
	// b's lock statement waits for the transaction (found by the
	// application name of b's pool).
	require.Eventually(t, func() bool {
		var waiting bool
		err := pool.QueryRow(ctx, "SELECT EXISTS (SELECT 1 FROM pg_stat_activity WHERE application_name = $1 AND wait_event_type = 'Lock')", appName).Scan(&waiting)
		return err == nil && waiting
	}, 10*time.Second, 5*time.Millisecond, "b's lock does not wait for a's commit")
	require.NoError(t, tx.Commit(ctx))

	select {
	case lb := <-got:
		require.NotNil(t, lb)
		v, found := lb.Value()
		assert.True(t, found, "b reads the row a's commit inserted")
		assert.Equal(t, "from a", string(v))
		lb.Release()
	case <-ctx.Done():
		require.FailNow(t, "b did not get the lock")
	}
}

// TestRenewalFindsLeaseLost: a renewal that finds the lease taken over
// reports it to OnError, wrapping ErrConflict, and the commit fails
// without writing.
func TestRenewalFindsLeaseLost(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	errs := make(chan error, 10)
	s := newStore(t, pool, pgstore.Options{Table: table, LockLease: 60 * time.Millisecond,
		OnError: func(err error) { errs <- err }})
	tb := newTables(t, pool, table)
	l := lockWithin(t, s, "k")
	tb.exec("UPDATE " + tb.locks + " SET token = 'another holder', expires_at = now() + interval '1 minute' WHERE key = 'k'")
	select {
	case err := <-errs:
		assert.ErrorIs(t, err, session.ErrConflict)
		assert.ErrorContains(t, err, `pgstore: renew lock "k"`)
	case <-time.After(5 * time.Second):
		require.FailNow(t, "the lost lease was not reported")
	}
	err := l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("a")})
	assert.ErrorIs(t, err, session.ErrConflict)
	assert.ErrorContains(t, err, `"k"`)
	_, _, found := tb.row("k")
	assert.False(t, found, "nothing written")
	tok, _, _ := tb.lock("k")
	assert.Equal(t, "another holder", tok, "the other holder's lock stays")
}

// TestRenewal: a lease held for several leases is kept alive, and
// nothing renews it after Commit or Release: no statement at all
// reaches the database for longer than two renewal periods.
func TestRenewal(t *testing.T) {
	const lease = 900 * time.Millisecond // renewals every 300ms: a loaded machine keeps up
	ctx := context.Background()
	var n atomic.Int64
	pool := newPool(t, "", countTracer{&n})
	table := uniqueTable(t)
	errs := make(chan error, 10)
	s := newStore(t, pool, pgstore.Options{Table: table, LockLease: lease,
		OnError: func(err error) { errs <- err }})
	tb := newTables(t, newPool(t, ""), table) // untraced

	// The locker's context ends at once: the lease lives on until its
	// commit.
	lctx, cancel := context.WithCancel(ctx)
	l, err := s.Lock(lctx, "k", "")
	require.NoError(t, err)
	cancel()
	time.Sleep(3 * lease)
	_, left, held := tb.lock("k")
	assert.True(t, held)
	assert.Positive(t, left, "renewed past its first lease")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("v")}))
	assert.Empty(t, errs)

	// Nothing after Commit.
	before := n.Load() // Commit waited for a renewal under way
	time.Sleep(lease)  // three renewal periods
	assert.Equal(t, before, n.Load(), "statements after Commit")
	_, _, held = tb.lock("k")
	assert.False(t, held)

	// Nothing after Release, nor after a second Release or a Commit.
	l = lockWithin(t, s, "k")
	l.Release() // waits for a renewal under way
	before = n.Load()
	l.Release()
	assert.Error(t, l.Commit(ctx, session.Change{Op: session.OpDelete}), "a Commit after Release")
	time.Sleep(lease)
	assert.Equal(t, before, n.Load(), "statements after Release")
	_, _, held = tb.lock("k")
	assert.False(t, held)
	v, _, _ := tb.row("k")
	assert.Equal(t, "v", v, "the Commit after Release deleted nothing")
}

// TestReleaseAfterCommit: Release after Commit does nothing, not even a
// statement.
func TestReleaseAfterCommit(t *testing.T) {
	ctx := context.Background()
	var n atomic.Int64
	s := newStore(t, newPool(t, "", countTracer{&n}), pgstore.Options{Table: uniqueTable(t)})
	l := lockWithin(t, s, "k")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpKeep}))
	before := n.Load()
	l.Release()
	l.Release()
	assert.Equal(t, before, n.Load())
	lockWithin(t, s, "k").Release() // and the key is free
}

// TestCancelledContext: an ended context fails every call with an error
// wrapping its error and changes nothing; a Commit with one releases the
// lock, in the database and in the process.
func TestCancelledContext(t *testing.T) {
	pool := newPool(t, "")
	table := uniqueTable(t)
	s := newStore(t, pool, pgstore.Options{Table: table})
	tb := newTables(t, pool, table)
	require.NoError(t, s.Write(context.Background(), "k", []byte("v")))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, _, err := s.Read(ctx, "k")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, s.Write(ctx, "k", []byte("w")), context.Canceled)
	assert.ErrorIs(t, s.WriteTTL(ctx, "k", []byte("w"), time.Hour), context.Canceled)
	assert.ErrorIs(t, s.Touch(ctx, "k", time.Hour), context.Canceled)
	assert.ErrorIs(t, s.Delete(ctx, "k"), context.Canceled)
	for _, err := range s.Keys(ctx) {
		assert.ErrorIs(t, err, context.Canceled)
	}
	_, err = s.Lock(ctx, "k", "")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, `"k"`)
	_, _, held := tb.lock("k")
	assert.False(t, held, "no lock taken")

	l := lockWithin(t, s, "k")
	err = l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("w")})
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, `"k"`)
	_, _, held = tb.lock("k")
	assert.False(t, held, "released")
	v, _, _ := tb.row("k")
	assert.Equal(t, "v", v, "nothing written")
	lockWithin(t, s, "k").Release() // free in the process too
}

// TestLockWaits: a second process waits for the lease, polling, and gets
// it with the value committed; a second holder in the same process
// waits without a single statement.
func TestLockWaits(t *testing.T) {
	ctx := context.Background()
	table := uniqueTable(t)
	var n atomic.Int64
	a := newStore(t, newPool(t, "", countTracer{&n}), pgstore.Options{Table: table})
	b := newStore(t, newPool(t, ""), pgstore.Options{Table: table})

	l := lockWithin(t, a, "k")
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	_, err := b.Lock(short, "k", "")
	assert.ErrorIs(t, err, context.DeadlineExceeded, "held by another process")

	got := make(chan session.Lease, 1)
	before := n.Load()
	go func() {
		l2, err := a.Lock(ctx, "k", "")
		assert.NoError(t, err)
		got <- l2
	}()
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, before, n.Load(), "a waiter in the process does not poll the database")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("1")}))
	var l2 session.Lease
	select {
	case l2 = <-got:
	case <-time.After(5 * time.Second):
		require.FailNow(t, "the waiter did not get the lock")
	}
	v, found := l2.Value()
	assert.True(t, found)
	assert.Equal(t, "1", string(v), "the waiter reads the committed value")

	go func() {
		time.Sleep(20 * time.Millisecond)
		assert.NoError(t, l2.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("2")}))
	}()
	lb := lockWithin(t, b, "k")
	v, _ = lb.Value()
	assert.Equal(t, "2", string(v), "the other process reads the committed value")
	lb.Release()
}

// TestRoundTrips: a locked update is two round trips, whatever it does
// with its session, with or without a TTL; through the unlocked view a
// read and a write are one each.
func TestRoundTrips(t *testing.T) {
	ctx := context.Background()
	var n atomic.Int64
	s := newStore(t, newPool(t, "", countTracer{&n}), pgstore.Options{Table: uniqueTable(t)})
	changes := []struct {
		name   string
		change session.Change
	}{
		{"write", session.Change{Op: session.OpWrite, Value: []byte("v")}},
		{"write with TTL", session.Change{Op: session.OpWrite, Value: []byte("v"), TTL: time.Hour}},
		{"touch", session.Change{Op: session.OpTouch, TTL: time.Hour}},
		{"touch without TTL", session.Change{Op: session.OpTouch}},
		{"keep", session.Change{Op: session.OpKeep}},
		{"delete", session.Change{Op: session.OpDelete}},
	}
	// Let pgx prepare and cache every statement first.
	for _, c := range changes {
		require.NoError(t, lockWithin(t, s, "warm").Commit(ctx, c.change))
	}
	for _, tc := range changes {
		t.Run(tc.name, func(t *testing.T) {
			before := n.Load()
			l := lockWithin(t, s, "k")
			_, _ = l.Value()
			require.NoError(t, l.Commit(ctx, tc.change))
			assert.EqualValues(t, 2, n.Load()-before, "round trips of Lock + Commit")
		})
	}
	t.Run("unlocked", func(t *testing.T) {
		u := s.Unlocked()
		before := n.Load()
		_, _, err := u.Read(ctx, "k")
		require.NoError(t, err)
		require.NoError(t, u.(session.Expirer).WriteTTL(ctx, "k", []byte("v"), time.Hour))
		assert.EqualValues(t, 2, n.Load()-before, "round trips of Read + WriteTTL")
	})
}

// TestKeys: every live session once, in byte order, over several pages;
// a lock row is not a session.
func TestKeys(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, newPool(t, ""), pgstore.Options{Table: uniqueTable(t), PageSize: 7})
	var want []string
	for i := range 50 {
		k := "k" + strconv.Itoa(100+i)
		require.NoError(t, s.Write(ctx, k, []byte("v")))
		want = append(want, k)
	}
	l := lockWithin(t, s, "locked only")
	defer l.Release()
	var got []string
	for k, err := range s.Keys(ctx) {
		require.NoError(t, err)
		got = append(got, k)
	}
	assert.Equal(t, want, got)

	n := 0
	for _, err := range s.Unlocked().(session.Lister).Keys(ctx) {
		require.NoError(t, err)
		n++
		if n == 3 {
			break
		}
	}
	assert.Equal(t, 3, n, "stopping early")
}

// TestConcurrentIncrements: goroutines of two stores (two processes)
// increment counters under the lock; none is lost.
func TestConcurrentIncrements(t *testing.T) {
	ctx := context.Background()
	opts := pgstore.Options{Table: uniqueTable(t)}
	stores := []*pgstore.Store{newStore(t, newPool(t, ""), opts), newStore(t, newPool(t, ""), opts)}
	const perGoroutine, goroutines, keys = 30, 4, 2
	var wg sync.WaitGroup
	for _, s := range stores {
		for g := range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range perGoroutine {
					key := "c" + strconv.Itoa((g+i)%keys)
					l, err := s.Lock(ctx, key, "")
					if !assert.NoError(t, err) {
						return
					}
					v, _ := l.Value()
					n, _ := strconv.Atoi(string(v))
					if !assert.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite,
						Value: []byte(strconv.Itoa(n + 1)), TTL: time.Hour})) {
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	total := 0
	for k := range keys {
		v, found, err := stores[0].Read(ctx, "c"+strconv.Itoa(k))
		require.NoError(t, err)
		require.True(t, found)
		n, err := strconv.Atoi(string(v))
		require.NoError(t, err)
		total += n
	}
	assert.Equal(t, len(stores)*goroutines*perGoroutine, total)
}
