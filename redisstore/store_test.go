package redisstore_test

// Direct tests of the store and its leases, through the session.Store
// API alone (no middleware, no storagetest).

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/redisstore"
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

// countHook counts the requests a client sends: a pipeline or a script is
// one round trip.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

type quietLogger struct{}

func (quietLogger) Printf(context.Context, string, ...any) {}

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

// pttl is the remaining life of Redis key rk: -1 no expiry, -2 no key.
func pttl(t *testing.T, c redis.UniversalClient, rk string) time.Duration {
	t.Helper()
	d, err := c.PTTL(context.Background(), rk).Result()
	require.NoError(t, err)
	return d
}

func get(t *testing.T, c redis.UniversalClient, rk string) (string, bool) {
	t.Helper()
	v, err := c.Get(context.Background(), rk).Result()
	if errors.Is(err, redis.Nil) {
		return "", false
	}
	require.NoError(t, err)
	return v, true
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

// TestCapabilities: the store has every capability; its unlocked view
// has all but the lock, and nothing to unwrap to one.
func TestCapabilities(t *testing.T) {
	s := newStore(t, newClient(t), redisstore.Options{Prefix: uniquePrefix(t)})
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

// TestLayout pins the Redis keys, which other tools and the cluster
// hash-slot rule depend on.
func TestLayout(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	prefix := uniquePrefix(t)
	s := newStore(t, c, redisstore.Options{Prefix: prefix, LockLease: time.Minute})
	require.NoError(t, s.WriteTTL(ctx, "42", []byte(`{"n":1}`), time.Hour))
	v, _ := get(t, c, prefix+"{42}")
	assert.Equal(t, `{"n":1}`, v)
	assert.InDelta(t, time.Hour.Seconds(), pttl(t, c, prefix+"{42}").Seconds(), 5, "SET ... PX")

	l := lockWithin(t, s, "42")
	tok, held := get(t, c, prefix+"{42}:lock")
	assert.True(t, held, "lock key while held")
	assert.Len(t, tok, 32, "a random token")
	assert.InDelta(t, time.Minute.Seconds(), pttl(t, c, prefix+"{42}:lock").Seconds(), 5, "the lease")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpKeep}))
	assert.Equal(t, time.Duration(-2), pttl(t, c, prefix+"{42}:lock"), "lock key after the commit")
}

// TestExpiryCommands: WriteTTL and Touch set the key's expiry, Write
// drops it, Touch never revives a key nor makes one persistent.
func TestExpiryCommands(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	prefix := uniquePrefix(t)
	s := newStore(t, c, redisstore.Options{Prefix: prefix})
	rk := prefix + "{k}"

	require.NoError(t, s.Write(ctx, "k", []byte("v")))
	assert.Equal(t, time.Duration(-1), pttl(t, c, rk), "Write: no expiry")
	require.NoError(t, s.Touch(ctx, "k", 0))
	assert.Equal(t, time.Duration(-1), pttl(t, c, rk), "Touch with no TTL changes nothing")
	require.NoError(t, s.Touch(ctx, "k", time.Hour))
	assert.InDelta(t, time.Hour.Seconds(), pttl(t, c, rk).Seconds(), 5, "Touch: PEXPIRE")
	require.NoError(t, s.WriteTTL(ctx, "k", []byte("w"), 2*time.Hour))
	assert.InDelta(t, (2 * time.Hour).Seconds(), pttl(t, c, rk).Seconds(), 5, "WriteTTL: SET PX")
	require.NoError(t, s.Write(ctx, "k", []byte("x")))
	assert.Equal(t, time.Duration(-1), pttl(t, c, rk), "Write drops the expiry")
	require.NoError(t, s.WriteTTL(ctx, "k", []byte("y"), 0))
	assert.Equal(t, time.Duration(-1), pttl(t, c, rk), "WriteTTL without a TTL: no expiry")
	// Below Redis's millisecond: rounded up, not "no expiry".
	require.NoError(t, s.WriteTTL(ctx, "short", []byte("v"), time.Microsecond))
	assert.NotEqual(t, time.Duration(-1), pttl(t, c, prefix+"{short}"), "a sub-millisecond TTL expires")

	require.NoError(t, s.Touch(ctx, "missing", time.Hour))
	_, found, err := s.Read(ctx, "missing")
	require.NoError(t, err)
	assert.False(t, found, "Touch does not create a key")
}

// TestLeaseValue: the lease holds the value read with the lock.
func TestLeaseValue(t *testing.T) {
	ctx := context.Background()
	s := newStore(t, newClient(t), redisstore.Options{Prefix: uniquePrefix(t)})
	l := lockWithin(t, s, "k")
	v, found := l.Value()
	assert.False(t, found, "%q", v)
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("1")}))

	l = lockWithin(t, s, "k")
	v, found = l.Value()
	assert.True(t, found)
	assert.Equal(t, "1", string(v))
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte{}}))

	l = lockWithin(t, s, "k")
	v, found = l.Value()
	assert.True(t, found, "an empty value is a value")
	assert.Empty(t, v)
	l.Release()
}

// TestCommitOps: each operation of a commit does what it says, and the
// commit deletes the lock.
func TestCommitOps(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	prefix := uniquePrefix(t)
	s := newStore(t, c, redisstore.Options{Prefix: prefix})
	const ttl = time.Hour
	for i, tc := range []struct {
		name      string
		seed      string        // "" none
		seedTTL   time.Duration // of the seed
		change    session.Change
		want      string // "" missing
		wantPTTL  time.Duration
		wantAbout bool // wantPTTL is approximate (an expiry)
	}{
		{"write", "", 0, session.Change{Op: session.OpWrite, Value: []byte("new")}, "new", -1, false},
		{"write over an expiring key drops its expiry", "old", ttl, session.Change{Op: session.OpWrite, Value: []byte("new")}, "new", -1, false},
		{"write with TTL", "old", 0, session.Change{Op: session.OpWrite, Value: []byte("new"), TTL: ttl}, "new", ttl, true},
		{"touch", "old", 0, session.Change{Op: session.OpTouch, TTL: ttl}, "old", ttl, true},
		{"touch restarts the expiry", "old", time.Minute, session.Change{Op: session.OpTouch, TTL: ttl}, "old", ttl, true},
		{"touch without TTL changes nothing", "old", time.Minute, session.Change{Op: session.OpTouch}, "old", time.Minute, true},
		{"touch of a missing key", "", 0, session.Change{Op: session.OpTouch, TTL: ttl}, "", -2, false},
		{"delete", "old", 0, session.Change{Op: session.OpDelete}, "", -2, false},
		{"delete of a missing key", "", 0, session.Change{Op: session.OpDelete}, "", -2, false},
		{"keep", "old", time.Minute, session.Change{Op: session.OpKeep}, "old", time.Minute, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			key := "k-" + strconv.Itoa(i)
			rk := prefix + "{" + key + "}"
			if tc.seed != "" {
				require.NoError(t, s.WriteTTL(ctx, key, []byte(tc.seed), tc.seedTTL))
			}
			l := lockWithin(t, s, key)
			require.NoError(t, l.Commit(ctx, tc.change))
			v, found := get(t, c, rk)
			if tc.want == "" {
				assert.False(t, found, "%q", v)
			} else {
				assert.True(t, found)
				assert.Equal(t, tc.want, v)
			}
			if tc.wantAbout {
				assert.InDelta(t, tc.wantPTTL.Seconds(), pttl(t, c, rk).Seconds(), 5)
			} else {
				assert.Equal(t, tc.wantPTTL, pttl(t, c, rk))
			}
			assert.Equal(t, time.Duration(-2), pttl(t, c, rk+":lock"), "the commit deleted the lock")
		})
	}

	t.Run("unknown op", func(t *testing.T) {
		l := lockWithin(t, s, "u")
		err := l.Commit(ctx, session.Change{Op: 99})
		assert.ErrorContains(t, err, `"u"`)
		assert.Equal(t, time.Duration(-2), pttl(t, c, prefix+"{u}:lock"), "released")
	})
}

// TestCommitConflict: a holder whose lease expired and was taken over
// writes nothing, whatever its change, and gets an error wrapping
// ErrConflict that names the key; the new holder's lock and value stay.
func TestCommitConflict(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	prefix := uniquePrefix(t)
	opts := redisstore.Options{Prefix: prefix}
	a, b := newStore(t, c, opts), newStore(t, newClient(t), opts)
	for name, op := range map[string]session.Op{"write": session.OpWrite, "touch": session.OpTouch,
		"delete": session.OpDelete, "keep": session.OpKeep} {
		t.Run(name, func(t *testing.T) {
			key := "k" + strconv.Itoa(int(op))
			rk := prefix + "{" + key + "}"
			la := lockWithin(t, a, key)
			// The lease runs out (a stalled process): as if it expired.
			require.NoError(t, c.Del(ctx, rk+":lock").Err())
			lb := lockWithin(t, b, key)
			tokB, _ := get(t, c, rk+":lock")

			err := la.Commit(ctx, session.Change{Op: op, Value: []byte("a"), TTL: time.Minute})
			require.ErrorIs(t, err, session.ErrConflict)
			assert.ErrorContains(t, err, strconv.Quote(key))
			assert.Equal(t, time.Duration(-2), pttl(t, c, rk), "nothing written")
			tok, held := get(t, c, rk+":lock")
			assert.True(t, held, "b's lock stays")
			assert.Equal(t, tokB, tok)

			require.NoError(t, lb.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("b")}))
			v, _ := get(t, c, rk)
			assert.Equal(t, "b", v)

			// Expired and not taken over: refused all the same (Redis
			// cannot tell who may have written since).
			la = lockWithin(t, a, key)
			require.NoError(t, c.Del(ctx, rk+":lock").Err())
			err = la.Commit(ctx, session.Change{Op: op, Value: []byte("a"), TTL: time.Minute})
			require.ErrorIs(t, err, session.ErrConflict)
			v, _ = get(t, c, rk)
			assert.Equal(t, "b", v)
			assert.Equal(t, time.Duration(-1), pttl(t, c, rk))
		})
	}
}

// TestRenewalFindsLeaseLost: a renewal that finds the lease taken over
// reports it to OnError, wrapping ErrConflict, and the commit fails
// without writing.
func TestRenewalFindsLeaseLost(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	prefix := uniquePrefix(t)
	errs := make(chan error, 10)
	s := newStore(t, c, redisstore.Options{Prefix: prefix, LockLease: 60 * time.Millisecond,
		OnError: func(err error) { errs <- err }})
	l := lockWithin(t, s, "k")
	require.NoError(t, c.Set(ctx, prefix+"{k}:lock", "another holder", time.Minute).Err())
	select {
	case err := <-errs:
		assert.ErrorIs(t, err, session.ErrConflict)
		assert.ErrorContains(t, err, `redisstore: renew lock "k"`)
	case <-time.After(5 * time.Second):
		require.FailNow(t, "the lost lease was not reported")
	}
	err := l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("a")})
	assert.ErrorIs(t, err, session.ErrConflict)
	assert.ErrorContains(t, err, `"k"`)
	_, found := get(t, c, prefix+"{k}")
	assert.False(t, found, "nothing written")
	tok, _ := get(t, c, prefix+"{k}:lock")
	assert.Equal(t, "another holder", tok, "the other holder's lock stays")
}

// TestRenewal: a lease held for several leases is kept alive, and
// nothing renews it after Commit or Release: no request at all reaches
// Redis for longer than two renewal periods.
func TestRenewal(t *testing.T) {
	const lease = 900 * time.Millisecond // renewals every 300ms: a loaded machine keeps up
	ctx := context.Background()
	c := newClient(t)
	var n atomic.Int64
	c.AddHook(countHook{&n})
	prefix := uniquePrefix(t)
	errs := make(chan error, 10)
	s := newStore(t, c, redisstore.Options{Prefix: prefix, LockLease: lease,
		OnError: func(err error) { errs <- err }})
	lockKey := prefix + "{k}:lock"

	// The locker's context ends at once: the lease lives on until its
	// commit.
	lctx, cancel := context.WithCancel(ctx)
	l, err := s.Lock(lctx, "k", "")
	require.NoError(t, err)
	cancel()
	time.Sleep(3 * lease)
	assert.Positive(t, pttl(t, c, lockKey), "renewed past its first lease")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("v")}))
	assert.Empty(t, errs)

	// Nothing after Commit.
	before := n.Load() // Commit waited for a renewal under way
	time.Sleep(lease)  // three renewal periods
	assert.Equal(t, before, n.Load(), "requests after Commit")
	assert.Equal(t, time.Duration(-2), pttl(t, c, lockKey))

	// Nothing after Release, nor after a second Release or a Commit.
	l = lockWithin(t, s, "k")
	l.Release() // waits for a renewal under way
	before = n.Load()
	l.Release()
	assert.Error(t, l.Commit(ctx, session.Change{Op: session.OpDelete}), "a Commit after Release")
	time.Sleep(lease)
	assert.Equal(t, before, n.Load(), "requests after Release")
	assert.Equal(t, time.Duration(-2), pttl(t, c, lockKey))
	v, _ := get(t, c, prefix+"{k}")
	assert.Equal(t, "v", v, "the Commit after Release deleted nothing")
}

// TestReleaseAfterCommit: Release after Commit does nothing, not even a
// request.
func TestReleaseAfterCommit(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	var n atomic.Int64
	c.AddHook(countHook{&n})
	s := newStore(t, c, redisstore.Options{Prefix: uniquePrefix(t)})
	l := lockWithin(t, s, "k")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpKeep}))
	before := n.Load()
	l.Release()
	l.Release()
	assert.Equal(t, before, n.Load())
	// And the key is free.
	lockWithin(t, s, "k").Release()
}

// TestCancelledContext: an ended context fails every call with an error
// wrapping its error and changes nothing; a Commit with one releases the
// lock, in Redis and in the process.
func TestCancelledContext(t *testing.T) {
	c := newClient(t)
	prefix := uniquePrefix(t)
	s := newStore(t, c, redisstore.Options{Prefix: prefix})
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
	assert.Equal(t, time.Duration(-2), pttl(t, c, prefix+"{k}:lock"), "no lock taken")

	l := lockWithin(t, s, "k")
	err = l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("w")})
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, `"k"`)
	assert.Equal(t, time.Duration(-2), pttl(t, c, prefix+"{k}:lock"), "released")
	v, _ := get(t, c, prefix+"{k}")
	assert.Equal(t, "v", v, "nothing written")
	lockWithin(t, s, "k").Release() // free in the process too
}

// TestLockWaits: a second process waits for the lease, polling, and gets
// it with the value committed; a second holder in the same process
// waits without a single request to Redis.
func TestLockWaits(t *testing.T) {
	ctx := context.Background()
	prefix := uniquePrefix(t)
	c := newClient(t)
	var n atomic.Int64
	c.AddHook(countHook{&n})
	a := newStore(t, c, redisstore.Options{Prefix: prefix})
	b := newStore(t, newClient(t), redisstore.Options{Prefix: prefix})

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
	assert.Equal(t, before, n.Load(), "a waiter in the process does not poll Redis")
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

// TestRoundTrips: a locked update is two requests, whatever it does with
// its session, with or without a TTL; through the unlocked view a read
// and a write are one each.
func TestRoundTrips(t *testing.T) {
	ctx := context.Background()
	c := newClient(t)
	var n atomic.Int64
	c.AddHook(countHook{&n})
	s := newStore(t, c, redisstore.Options{Prefix: uniquePrefix(t)})
	// Load the scripts (the first EVALSHA of each on a server falls back
	// to EVAL).
	l := lockWithin(t, s, "warm")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpKeep}))

	for _, tc := range []struct {
		name   string
		change session.Change
	}{
		{"write", session.Change{Op: session.OpWrite, Value: []byte("v")}},
		{"write with TTL", session.Change{Op: session.OpWrite, Value: []byte("v"), TTL: time.Hour}},
		{"touch", session.Change{Op: session.OpTouch, TTL: time.Hour}},
		{"touch without TTL", session.Change{Op: session.OpTouch}},
		{"keep", session.Change{Op: session.OpKeep}},
		{"delete", session.Change{Op: session.OpDelete}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			before := n.Load()
			l := lockWithin(t, s, "k")
			_, _ = l.Value()
			require.NoError(t, l.Commit(ctx, tc.change))
			assert.EqualValues(t, 2, n.Load()-before, "requests of Lock + Commit")
		})
	}
	t.Run("unlocked", func(t *testing.T) {
		u := s.Unlocked()
		before := n.Load()
		_, _, err := u.Read(ctx, "k")
		require.NoError(t, err)
		require.NoError(t, u.(session.Expirer).WriteTTL(ctx, "k", []byte("v"), time.Hour))
		assert.EqualValues(t, 2, n.Load()-before, "requests of Read + WriteTTL")
	})
}

// TestKeys: every session once, none of another prefix, no lock key.
func TestKeys(t *testing.T) {
	testKeys(t, newClient(t), uniquePrefix(t))
}

func testKeys(t *testing.T, c redis.UniversalClient, prefix string) {
	ctx := context.Background()
	s := newStore(t, c, redisstore.Options{Prefix: prefix, ScanCount: 7})
	other := newStore(t, c, redisstore.Options{Prefix: prefix + "x"}) // a longer prefix: not ours
	want := map[string]bool{}
	for i := range 250 {
		k := "k" + strconv.Itoa(i)
		require.NoError(t, s.Write(ctx, k, []byte("v"+k)))
		want[k] = true
	}
	require.NoError(t, other.Write(ctx, "foreign", []byte("no")))
	// A held lock leaves a lock key in Redis: not a session.
	l := lockWithin(t, s, "k1")
	defer l.Release()
	l2 := lockWithin(t, s, "locked only")
	defer l2.Release()

	got := map[string]bool{}
	for k, err := range s.Keys(ctx) {
		require.NoError(t, err)
		assert.False(t, got[k], "key %q yielded twice", k)
		got[k] = true
	}
	assert.Equal(t, want, got)

	// Through the unlocked view, and stopping early.
	n := 0
	for _, err := range s.Unlocked().(session.Lister).Keys(ctx) {
		require.NoError(t, err)
		n++
		if n == 3 {
			break
		}
	}
	assert.Equal(t, 3, n)
}

// TestOddPrefix: a prefix with glob and hash-tag characters is matched
// literally by SCAN.
func TestOddPrefix(t *testing.T) {
	testKeys(t, newClient(t), uniquePrefix(t)+`*?[a]\x`)
}

// TestConcurrentIncrements: goroutines of two stores (two processes)
// increment counters under the lock; none is lost.
func TestConcurrentIncrements(t *testing.T) {
	testConcurrentIncrements(t, func() redis.UniversalClient { return newClient(t) }, uniquePrefix(t))
}

func testConcurrentIncrements(t *testing.T, newClient func() redis.UniversalClient, prefix string) {
	ctx := context.Background()
	opts := redisstore.Options{Prefix: prefix}
	stores := []*redisstore.Store{newStore(t, newClient(), opts), newStore(t, newClient(), opts)}
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
