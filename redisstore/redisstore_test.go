package redisstore_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/redisstore"
	"github.com/tgsession/session/storagetest"
)

// redisAddr is the test server: REDIS_ADDR, or the local default.
func redisAddr() string {
	if a := os.Getenv("REDIS_ADDR"); a != "" {
		return a
	}
	return "127.0.0.1:6379"
}

// newClient connects to the test server, failing the test (never
// skipping it) if the server does not answer.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr(), ContextTimeoutEnabled: true})
	t.Cleanup(func() { _ = c.Close() })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	require.NoError(t, c.Ping(ctx).Err(),
		"Redis at %s does not answer: start it (scripts/test.sh does) or set REDIS_ADDR", redisAddr())
	return c
}

// uniquePrefix is a key prefix no other test or run uses. Its keys are
// deleted when t ends, so reruns start clean.
func uniquePrefix(t testing.TB) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	p := "redisstore-test:" + hex.EncodeToString(b[:]) + ":"
	t.Cleanup(func() { dropPrefix(t, p) })
	return p
}

func dropPrefix(t testing.TB, prefix string) {
	c := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer c.Close()
	ctx := context.Background()
	iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
	var keys []string
	for iter.Next(ctx) {
		keys = append(keys, iter.Val())
	}
	if err := iter.Err(); err != nil {
		t.Errorf("cleanup of %s: %v", prefix, err)
		return
	}
	if len(keys) > 0 {
		if err := c.Del(ctx, keys...).Err(); err != nil {
			t.Errorf("cleanup of %s: %v", prefix, err)
		}
	}
}

func newStore(t testing.TB, client redis.UniversalClient, opts redisstore.Options) *redisstore.Store {
	t.Helper()
	s, err := redisstore.New(client, opts)
	require.NoError(t, err)
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
		return session.Encoded[storagetest.Value](newStore(t, newClient(t), redisstore.Options{Prefix: uniquePrefix(t)}), nil)
	})
}

func TestConformanceWithTTL(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.StorageAdapter[storagetest.Value] {
		return session.Encoded[storagetest.Value](newStore(t, newClient(t),
			redisstore.Options{Prefix: uniquePrefix(t), TTL: time.Hour}), nil)
	})
}

// TestConformanceOddPrefix uses a prefix with glob and hash-tag
// characters: SCAN must match it literally.
func TestConformanceOddPrefix(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.StorageAdapter[storagetest.Value] {
		return session.Encoded[storagetest.Value](newStore(t, newClient(t),
			redisstore.Options{Prefix: uniquePrefix(t) + `*?[a]\x`}), nil)
	})
}

func TestExpiry(t *testing.T) {
	storagetest.RunExpiry(t, func(t *testing.T) session.StorageAdapter[[]byte] {
		return newStore(t, newClient(t), redisstore.Options{Prefix: uniquePrefix(t), TTL: expiryTTL})
	}, expiryTTL)
}

func TestLocker(t *testing.T) {
	const lease = lockLease
	storagetest.RunLocker(t, func(t *testing.T) (a, b session.StorageAdapter[[]byte]) {
		prefix := uniquePrefix(t)
		opts := redisstore.Options{Prefix: prefix, LockLease: lease}
		// Two clients, two stores: two processes as far as Redis can tell.
		return newStore(t, newClient(t), opts), newStore(t, newClient(t), opts)
	}, lease)
}

// TestLockerSingleStoreIterator checks the byte store's own capabilities
// directly, whatever session.Encoded passes through.
func TestByteStoreCapabilities(t *testing.T) {
	var s any = newStore(t, newClient(t), redisstore.Options{Prefix: uniquePrefix(t)})
	_, ok := s.(session.Locker)
	assert.True(t, ok, "Locker")
	_, ok = s.(session.Toucher)
	assert.True(t, ok, "Toucher")
	_, ok = s.(session.Iterator[[]byte])
	assert.True(t, ok, "Iterator")
}

func TestIteratorBytes(t *testing.T) {
	ctx := context.Background()
	prefix := uniquePrefix(t)
	s := newStore(t, newClient(t), redisstore.Options{Prefix: prefix, ScanCount: 7})
	other := newStore(t, newClient(t), redisstore.Options{Prefix: prefix + "x"}) // a longer prefix: not ours
	want := map[string]string{}
	for i := range 250 {
		k := "k" + strconv.Itoa(i)
		require.NoError(t, s.Write(ctx, k, []byte("v"+k)))
		want[k] = "v" + k
	}
	require.NoError(t, other.Write(ctx, "foreign", []byte("no")))
	// A held lock leaves a lock key in Redis: not a session.
	unlock, err := s.Lock(ctx, "k1")
	require.NoError(t, err)
	defer unlock()

	got := map[string]string{}
	for e, err := range s.Entries(ctx) {
		require.NoError(t, err)
		_, dup := got[e.Key]
		assert.False(t, dup, "key %q yielded twice", e.Key)
		got[e.Key] = string(e.Value)
	}
	assert.Equal(t, want, got)
}

// TestNewRejectsBadOptions: every mistake in New's arguments is an error
// wrapping session.ErrConfig that names the parameter or option, and New
// makes no store.
func TestNewRejectsBadOptions(t *testing.T) {
	// Clients are created but never used: New does not contact the server.
	single := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer single.Close()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{redisAddr()}})
	defer cluster.Close()
	ring := redis.NewRing(&redis.RingOptions{Addrs: map[string]string{"a": redisAddr()}})
	defer ring.Close()

	for _, tc := range []struct {
		name   string
		client redis.UniversalClient
		opts   redisstore.Options
		field  string // what the message must name
	}{
		{"nil client", nil, redisstore.Options{}, "nil client"},
		{"nil *redis.Client", (*redis.Client)(nil), redisstore.Options{}, "nil client"},
		{"nil *redis.ClusterClient", (*redis.ClusterClient)(nil), redisstore.Options{}, "nil client"},
		{"nil *redis.Ring", (*redis.Ring)(nil), redisstore.Options{}, "nil client"},
		{"negative TTL", single, redisstore.Options{TTL: -time.Second}, "Options.TTL"},
		{"TTL below 1ms", single, redisstore.Options{TTL: time.Microsecond}, "Options.TTL"},
		{"negative LockLease", single, redisstore.Options{LockLease: -time.Second}, "Options.LockLease"},
		{"LockLease too short to renew", single, redisstore.Options{LockLease: 29 * time.Millisecond}, "Options.LockLease"},
		{"negative LockRetry", single, redisstore.Options{LockRetry: -time.Millisecond}, "Options.LockRetry"},
		{"negative ScanCount", single, redisstore.Options{ScanCount: -1}, "Options.ScanCount"},
		{"hash tag in a cluster prefix", cluster, redisstore.Options{Prefix: "bot{1}:"}, "Options.Prefix"},
		{"empty hash tag in a cluster prefix", cluster, redisstore.Options{Prefix: "{}"}, "Options.Prefix"},
		{"brace in a ring prefix", ring, redisstore.Options{Prefix: "bot}"}, "Options.Prefix"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.New(tc.client, tc.opts)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.ErrorIs(t, err, session.ErrConfig)
			assert.ErrorContains(t, err, tc.field)
			assert.ErrorContains(t, err, "redisstore: ")
		})
	}
}

// TestNewAcceptsLimitsAndDefaults: zero values mean their documented
// defaults, and the limits themselves are allowed.
func TestNewAcceptsLimitsAndDefaults(t *testing.T) {
	single := redis.NewClient(&redis.Options{Addr: redisAddr()})
	defer single.Close()
	cluster := redis.NewClusterClient(&redis.ClusterOptions{Addrs: []string{redisAddr()}})
	defer cluster.Close()
	for _, tc := range []struct {
		name   string
		client redis.UniversalClient
		opts   redisstore.Options
	}{
		{"zero options", single, redisstore.Options{}},
		{"TTL of 1ms", single, redisstore.Options{TTL: time.Millisecond}},
		{"LockLease of 30ms", single, redisstore.Options{LockLease: 30 * time.Millisecond}},
		{"braces in a single-node prefix", single, redisstore.Options{Prefix: "bot{1}:"}},
		{"plain cluster prefix", cluster, redisstore.Options{Prefix: "bot:"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, err := redisstore.New(tc.client, tc.opts)
			require.NoError(t, err)
			assert.NotNil(t, s)
		})
	}
}

// TestLayout pins the Redis keys, which other tools and the cluster
// hash-slot rule depend on.
func TestLayout(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	prefix := uniquePrefix(t)
	s := newStore(t, c, redisstore.Options{Prefix: prefix, TTL: time.Hour})
	require.NoError(t, s.Write(ctx, "42", []byte(`{"n":1}`)))
	v, err := c.Get(ctx, prefix+"{42}").Result()
	require.NoError(t, err)
	assert.Equal(t, `{"n":1}`, v)
	ttl, err := c.PTTL(ctx, prefix+"{42}").Result()
	require.NoError(t, err)
	assert.InDelta(t, time.Hour.Seconds(), ttl.Seconds(), 5, "SET ... PX")

	unlock, err := s.Lock(ctx, "42")
	require.NoError(t, err)
	n, err := c.Exists(ctx, prefix+"{42}:lock").Result()
	require.NoError(t, err)
	assert.EqualValues(t, 1, n, "lock key while held")
	unlock()
	n, err = c.Exists(ctx, prefix+"{42}:lock").Result()
	require.NoError(t, err)
	assert.EqualValues(t, 0, n, "lock key after unlock")
}

// TestTouchWithoutTTL: no TTL configured, Touch changes nothing (no
// PEXPIRE that would make a persistent session expire).
func TestTouchWithoutTTL(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	prefix := uniquePrefix(t)
	s := newStore(t, c, redisstore.Options{Prefix: prefix})
	require.NoError(t, s.Write(ctx, "k", []byte("v")))
	require.NoError(t, s.Touch(ctx, "k"))
	ttl, err := c.PTTL(ctx, prefix+"{k}").Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-1), ttl, "no expiry")
}

// TestConnectionKilled breaks the store's connections (CLIENT KILL, as a
// network cut does) while goroutines increment counters under the lock.
// Every failure must surface as an error, every stored value must stay
// whole, no increment reported as done may be lost, and the store must
// work again afterwards.
func TestConnectionKilled(t *testing.T) {
	admin := newClient(t)
	name := "redisstore-kill-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	// No retries: the errors must reach the caller, not be papered over.
	c := redis.NewClient(&redis.Options{Addr: redisAddr(), ClientName: name, MaxRetries: -1, ContextTimeoutEnabled: true})
	defer c.Close()
	var reported atomic.Int64
	s := newStore(t, c, redisstore.Options{Prefix: uniquePrefix(t), LockLease: 2 * time.Second,
		OnError: func(error) { reported.Add(1) }})

	l := storagetest.StartFaultLoad(t, s, 4, "redisstore: ")
	for range 10 {
		time.Sleep(30 * time.Millisecond)
		killClients(t, admin, name)
	}
	time.Sleep(30 * time.Millisecond)
	l.Stop()
	t.Logf("%d updates done, %d failed with an error, %d background errors reported", l.Okays(), l.Failures(), reported.Load())
	assert.Positive(t, l.Failures(), "killing connections surfaced no error")
	assert.Positive(t, l.Okays(), "no update went through")
	l.Check(t)
}

// TestServerRestart kills a Redis server (SIGKILL) in the middle of a run
// and starts it again on the same port and data directory. The server is
// the test's own redis-server, with an fsynced append-only file, so that
// the data survives as it would on a production server: updates fail with
// errors while it is down, none acknowledged before the crash is lost, no
// value is half-written, and updates go through again once it is back
// (after the leases held at the crash have run out).
func TestServerRestart(t *testing.T) {
	// go-redis logs failed dials by default; they are expected here.
	redis.SetLogger(quietLogger{})
	bin, err := exec.LookPath("redis-server")
	require.NoError(t, err, "this test runs its own Redis server: install redis-server (Debian: apt-get install redis-server)")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	_, port, _ := net.SplitHostPort(addr)
	dir := t.TempDir()

	var srv *exec.Cmd
	start := func() {
		srv = exec.Command(bin, "--port", port, "--bind", "127.0.0.1", "--save", "",
			"--appendonly", "yes", "--appendfsync", "always", "--dir", dir)
		require.NoError(t, srv.Start())
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		require.Eventually(t, func() bool { return c.Ping(context.Background()).Err() == nil },
			10*time.Second, 20*time.Millisecond, "redis-server on %s did not start", addr)
	}
	kill := func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
	}
	start()
	t.Cleanup(kill)

	c := redis.NewClient(&redis.Options{Addr: addr, MaxRetries: -1, ContextTimeoutEnabled: true,
		DialTimeout: 200 * time.Millisecond, ReadTimeout: time.Second, WriteTimeout: time.Second})
	defer c.Close()
	s := newStore(t, c, redisstore.Options{Prefix: "restart:", LockLease: 500 * time.Millisecond})

	l := storagetest.StartFaultLoad(t, s, 4, "redisstore: ")
	time.Sleep(300 * time.Millisecond)
	beforeCrash := l.Okays()
	kill()
	time.Sleep(300 * time.Millisecond)
	failedDown := l.Failures()
	start()
	restarted := l.Okays()
	time.Sleep(1500 * time.Millisecond) // leases of the crash run out, then work resumes
	l.Stop()
	t.Logf("%d updates before the crash, %d failed with an error while down, %d after the restart",
		beforeCrash, failedDown, l.Okays()-restarted)
	assert.Positive(t, beforeCrash, "no update before the crash")
	assert.Positive(t, failedDown, "the server being down surfaced no error")
	assert.Positive(t, l.Okays()-restarted, "no update after the restart")
	l.Check(t)
}

// killClients kills every connection named name.
func killClients(t *testing.T, admin *redis.Client, name string) {
	t.Helper()
	list, err := admin.ClientList(context.Background()).Result()
	require.NoError(t, err)
	for _, line := range strings.Split(list, "\n") {
		if !strings.Contains(line, " name="+name+" ") {
			continue
		}
		for _, f := range strings.Fields(line) {
			if id, ok := strings.CutPrefix(f, "id="); ok {
				_ = admin.Do(context.Background(), "CLIENT", "KILL", "ID", id).Err()
			}
		}
	}
}

// TestCrossProcessStorm: 4 processes x 10 chats x 500 increments through
// the strict middleware, locked and unlocked.
func TestCrossProcessStorm(t *testing.T) {
	storagetest.RunCrossProcess(t, storagetest.CrossProcess{
		NewStore: func(t *testing.T, namespace string, locking bool) session.StorageAdapter[[]byte] {
			c := redis.NewClient(&redis.Options{Addr: redisAddr(), ContextTimeoutEnabled: true, PoolSize: 32})
			t.Cleanup(func() { _ = c.Close() })
			require.NoError(t, c.Ping(context.Background()).Err(), "Redis at %s does not answer", redisAddr())
			return newStore(t, c, redisstore.Options{Prefix: "redisstore-test:" + namespace + ":", DisableLocking: !locking})
		},
		Cleanup: func(t *testing.T, namespace string) { dropPrefix(t, "redisstore-test:"+namespace+":") },
	})
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

// TestLockPrefetch: the first Read after Lock is served from the value
// the lock's round trip fetched, correct and with no request of its own;
// any later use of the key goes to Redis.
func TestLockPrefetch(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	var n atomic.Int64
	c.AddHook(countHook{&n})
	s := newStore(t, c, redisstore.Options{Prefix: uniquePrefix(t)})

	read := func(key string) (string, bool, int64) {
		before := n.Load()
		v, found, err := s.Read(ctx, key)
		require.NoError(t, err)
		return string(v), found, n.Load() - before
	}

	// A missing key: prefetched as missing.
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

	// A stored key: prefetched with its value, once.
	unlock, err = s.Lock(ctx, "k")
	require.NoError(t, err)
	v, found, rts = read("k")
	assert.True(t, found)
	assert.Equal(t, "1", v)
	assert.Zero(t, rts)
	_, _, rts = read("k")
	assert.EqualValues(t, 1, rts, "second Read asks Redis")
	require.NoError(t, s.Delete(ctx, "k"))
	unlock()

	// Without the lock, every Read asks Redis.
	_, found, rts = read("k")
	assert.False(t, found)
	assert.EqualValues(t, 1, rts)
}
