package pgstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
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
	"github.com/tgsession/session/storagetest"
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
// connections (to find them in pg_stat_activity).
func newPool(t testing.TB, appName string) *pgxpool.Pool {
	t.Helper()
	cfg, err := pgxpool.ParseConfig(dsn())
	require.NoError(t, err, "bad DSN %q", dsn())
	if appName != "" {
		cfg.ConnConfig.RuntimeParams["application_name"] = appName
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
	for _, n := range []string{name, name + "_locks"} {
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

// Timings of the expiry and lock suites: long enough that a loaded CI
// machine (2 cores, -race, other packages testing at once) does not miss
// a renewal or outlive a TTL by accident, short enough to keep the suites
// at a few seconds.
const (
	expiryTTL = 600 * time.Millisecond
	lockLease = 600 * time.Millisecond
)

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.StorageAdapter[storagetest.Value] {
		return session.Encoded[storagetest.Value](newStore(t, newPool(t, ""), pgstore.Options{Table: uniqueTable(t)}), nil)
	})
}

func TestConformanceWithTTL(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.StorageAdapter[storagetest.Value] {
		return session.Encoded[storagetest.Value](newStore(t, newPool(t, ""),
			pgstore.Options{Table: uniqueTable(t), TTL: time.Hour, PageSize: 7}), nil)
	})
}

// TestConformanceOddTableName: the table name needs quoting (and is 48
// bytes, the longest allowed).
func TestConformanceOddTableName(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.StorageAdapter[storagetest.Value] {
		name := uniqueTable(t) + `"; DROP TABLE x;--Ünï`
		require.Len(t, name, 48)
		t.Cleanup(func() { dropTables(t, name) })
		return session.Encoded[storagetest.Value](newStore(t, newPool(t, ""), pgstore.Options{Table: name}), nil)
	})
}

func TestExpiry(t *testing.T) {
	storagetest.RunExpiry(t, func(t *testing.T) session.StorageAdapter[[]byte] {
		return newStore(t, newPool(t, ""), pgstore.Options{Table: uniqueTable(t), TTL: expiryTTL})
	}, expiryTTL)
}

func TestLocker(t *testing.T) {
	const lease = lockLease
	storagetest.RunLocker(t, func(t *testing.T) (a, b session.StorageAdapter[[]byte]) {
		opts := pgstore.Options{Table: uniqueTable(t), LockLease: lease}
		// Two pools, two stores: two processes as far as the database
		// can tell.
		return newStore(t, newPool(t, ""), opts), newStore(t, newPool(t, ""), opts)
	}, lease)
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
		{"negative TTL", pool, pgstore.Options{TTL: -time.Second}, "Options.TTL"},
		{"TTL below 1µs", pool, pgstore.Options{TTL: time.Nanosecond}, "Options.TTL"},
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
// defaults, and the limits themselves are allowed; the longest table and
// schema names are kept whole by the server.
func TestNewAcceptsLimitsAndDefaults(t *testing.T) {
	pool := newPool(t, "")
	for _, tc := range []struct {
		name string
		opts pgstore.Options
	}{
		{"zero options", pgstore.Options{}},
		{"TTL of 1µs", pgstore.Options{TTL: time.Microsecond}},
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

// TestLongestTableNameKeepsItsNames: with the longest table name allowed
// the server creates the tables and the index under exactly the names
// the package doc gives.
func TestLongestTableNameKeepsItsNames(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	table += strings.Repeat("x", 48-len(table))
	s := newStore(t, pool, pgstore.Options{Table: table})
	for _, name := range []string{table, table + "_locks", table + "_expires_at_idx"} {
		var found bool
		require.NoError(t, pool.QueryRow(ctx,
			"SELECT EXISTS (SELECT 1 FROM pg_class WHERE relname = $1 AND pg_table_is_visible(oid))", name).Scan(&found))
		assert.True(t, found, "%s exists", name)
	}
	require.NoError(t, s.Write(ctx, "k", []byte("v")))
	unlock, err := s.Lock(ctx, "k")
	require.NoError(t, err)
	require.NoError(t, s.Write(ctx, "k", []byte("w")))
	unlock()
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
	assert.Len(t, s.Schema(), 3)
}

func TestPurge(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	short := newStore(t, pool, pgstore.Options{Table: table, TTL: 50 * time.Millisecond, PurgeBatch: 7})
	forever := newStore(t, pool, pgstore.Options{Table: table})
	for i := range 30 {
		require.NoError(t, short.Write(ctx, "short-"+strconv.Itoa(i), []byte("x")))
	}
	require.NoError(t, forever.Write(ctx, "forever", []byte("y")))
	time.Sleep(100 * time.Millisecond)

	n, err := short.Purge(ctx)
	require.NoError(t, err)
	assert.EqualValues(t, 30, n, "expired rows purged over several batches")
	var rows int
	require.NoError(t, pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&rows))
	assert.Equal(t, 1, rows, "only the row without expiry is left")

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, err = short.Purge(cancelled)
	assert.ErrorIs(t, err, context.Canceled)
}

func TestBackgroundPurge(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	var reported atomic.Int64
	s := newStore(t, pool, pgstore.Options{Table: table, TTL: 20 * time.Millisecond,
		PurgeInterval: 50 * time.Millisecond, OnError: func(error) { reported.Add(1) }})
	require.NoError(t, s.Write(ctx, "k", []byte("x")))
	assert.Eventually(t, func() bool {
		var rows int
		err := pool.QueryRow(ctx, "SELECT count(*) FROM "+pgx.Identifier{table}.Sanitize()).Scan(&rows)
		return err == nil && rows == 0
	}, 5*time.Second, 20*time.Millisecond, "the background purge deletes the expired row")
	s.Close()
	s.Close() // idempotent
	assert.Zero(t, reported.Load())
}

// TestTouchUpdatesExpiry: Touch moves the expiry column (and does nothing
// without a TTL).
func TestTouchUpdatesExpiry(t *testing.T) {
	ctx := context.Background()
	pool := newPool(t, "")
	table := uniqueTable(t)
	s := newStore(t, pool, pgstore.Options{Table: table, TTL: time.Hour})
	require.NoError(t, s.Write(ctx, "k", []byte("v")))
	expiry := func() time.Time {
		var e time.Time
		require.NoError(t, pool.QueryRow(ctx, "SELECT expires_at FROM "+pgx.Identifier{table}.Sanitize()+" WHERE key = 'k'").Scan(&e))
		return e
	}
	before := expiry()
	time.Sleep(20 * time.Millisecond)
	require.NoError(t, s.Touch(ctx, "k"))
	assert.True(t, expiry().After(before), "Touch moved the expiry")

	plain := newStore(t, pool, pgstore.Options{Table: table})
	require.NoError(t, plain.Write(ctx, "p", []byte("v")))
	require.NoError(t, plain.Touch(ctx, "p"))
	var e *time.Time
	require.NoError(t, pool.QueryRow(ctx, "SELECT expires_at FROM "+pgx.Identifier{table}.Sanitize()+" WHERE key = 'p'").Scan(&e))
	assert.Nil(t, e, "no TTL: no expiry")
}

func TestBadKeyIsAnError(t *testing.T) {
	s := newStore(t, newPool(t, ""), pgstore.Options{Table: uniqueTable(t)})
	err := s.Write(context.Background(), "nul\x00byte", []byte("v"))
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"nul\x00byte"`, "the error names the key")
}

// TestConnectionKilled terminates the store's connections
// (pg_terminate_backend, as a server restart does to its clients) while
// goroutines increment counters under the lock. Failures must surface as
// errors, values stay whole, acknowledged increments stay, and the store
// works again afterwards.
func TestConnectionKilled(t *testing.T) {
	ctx := context.Background()
	admin := newPool(t, "")
	name := "pgstore-kill-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	var reported atomic.Int64
	s := newStore(t, newPool(t, name), pgstore.Options{Table: uniqueTable(t), LockLease: 2 * time.Second,
		OnError: func(error) { reported.Add(1) }})

	l := storagetest.StartFaultLoad(t, s, 4, "pgstore: ")
	for range 10 {
		time.Sleep(50 * time.Millisecond)
		_, err := admin.Exec(ctx, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", name)
		require.NoError(t, err)
	}
	time.Sleep(50 * time.Millisecond)
	l.Stop()
	t.Logf("%d updates done, %d failed with an error, %d background errors reported", l.Okays(), l.Failures(), reported.Load())
	assert.Positive(t, l.Failures(), "killing connections surfaced no error")
	assert.Positive(t, l.Okays(), "no update went through")
	l.Check(t)
}

// TestCrossProcessStorm: 4 processes x 10 chats x 500 increments through
// the strict middleware, locked and unlocked.
func TestCrossProcessStorm(t *testing.T) {
	storagetest.RunCrossProcess(t, storagetest.CrossProcess{
		NewStore: func(t *testing.T, namespace string, locking bool) session.StorageAdapter[[]byte] {
			pool := newPool(t, "")
			s, err := pgstore.New(pool, pgstore.Options{Table: "pgstore_test_" + namespace, DisableLocking: !locking})
			require.NoError(t, err)
			require.NoError(t, s.Migrate(context.Background()))
			return s
		},
		Cleanup: func(t *testing.T, namespace string) { dropTables(t, "pgstore_test_"+namespace) },
	})
}

// TestLockPrefetch: the first Read after Lock is served from the value
// read in the lock's round trip, correct and with no round trip of its
// own; any later use of the key queries again.
func TestLockPrefetch(t *testing.T) {
	ctx := context.Background()
	cfg, err := pgxpool.ParseConfig(dsn())
	require.NoError(t, err)
	var n atomic.Int64
	cfg.ConnConfig.Tracer = countTracer{&n}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	require.NoError(t, err)
	defer pool.Close()
	s := newStore(t, pool, pgstore.Options{Table: uniqueTable(t)})

	read := func(key string) (string, bool, int64) {
		before := n.Load()
		v, found, err := s.Read(ctx, key)
		require.NoError(t, err)
		return string(v), found, n.Load() - before
	}

	unlock, err := s.Lock(ctx, "k")
	require.NoError(t, err)
	v, found, rts := read("k")
	assert.False(t, found, "%q", v)
	assert.Zero(t, rts, "first Read under the lock")
	require.NoError(t, s.Write(ctx, "k", []byte("1")))
	v, found, rts = read("k")
	assert.True(t, found)
	assert.Equal(t, "1", v, "a Read after a Write sees the Write")
	assert.EqualValues(t, 1, rts)
	unlock()

	unlock, err = s.Lock(ctx, "k")
	require.NoError(t, err)
	v, found, rts = read("k")
	assert.True(t, found)
	assert.Equal(t, "1", v)
	assert.Zero(t, rts)
	_, _, rts = read("k")
	assert.EqualValues(t, 1, rts, "second Read queries")
	require.NoError(t, s.Write(ctx, "k", []byte{}))
	unlock()

	// An empty value is prefetched as found.
	unlock, err = s.Lock(ctx, "k")
	require.NoError(t, err)
	v, found, rts = read("k")
	assert.True(t, found)
	assert.Equal(t, "", v)
	assert.Zero(t, rts)
	unlock()
}
