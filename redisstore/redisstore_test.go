package redisstore_test

// The storagetest suites, the fault tests and the cross-process storm.

import (
	"context"
	"net"
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

// lockLease is the lease of the lock suite: long enough that a loaded CI
// machine (2 cores, -race, other packages testing at once) does not miss
// a renewal by accident, short enough to keep the suite at a few
// seconds.
const lockLease = 600 * time.Millisecond

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.Store {
		return newStore(t, newClient(t), redisstore.Options{Prefix: uniquePrefix(t)})
	})
}

func TestConformanceUnlocked(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.Store {
		return newStore(t, newClient(t), redisstore.Options{Prefix: uniquePrefix(t)}).Unlocked()
	})
}

// TestConformanceOddPrefix uses a prefix with glob and hash-tag
// characters: SCAN must match it literally.
func TestConformanceOddPrefix(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.Store {
		return newStore(t, newClient(t), redisstore.Options{Prefix: uniquePrefix(t) + `*?[a]\x`})
	})
}

func TestExpiry(t *testing.T) {
	storagetest.RunExpiry(t, func(t *testing.T) session.Store {
		return newStore(t, newClient(t), redisstore.Options{Prefix: uniquePrefix(t)})
	})
}

func TestLocker(t *testing.T) {
	const lease = lockLease
	storagetest.RunLocker(t, func(t *testing.T) (a, b session.Store) {
		prefix := uniquePrefix(t)
		opts := redisstore.Options{Prefix: prefix, LockLease: lease}
		// Two clients, two stores: two processes as far as Redis can tell.
		return newStore(t, newClient(t), opts), newStore(t, newClient(t), opts)
	}, lease)
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
// the middleware, locked and unlocked.
func TestCrossProcessStorm(t *testing.T) {
	newStormStore := func(t *testing.T, namespace string) *redisstore.Store {
		c := redis.NewClient(&redis.Options{Addr: redisAddr(), ContextTimeoutEnabled: true, PoolSize: 32})
		t.Cleanup(func() { _ = c.Close() })
		require.NoError(t, c.Ping(context.Background()).Err(), "Redis at %s does not answer", redisAddr())
		return newStore(t, c, redisstore.Options{Prefix: "redisstore-test:" + namespace + ":"})
	}
	storagetest.RunCrossProcess(t, storagetest.CrossProcess{
		NewStore: func(t *testing.T, namespace string) session.Store { return newStormStore(t, namespace) },
		Unlocked: func(t *testing.T, namespace string) session.Store { return newStormStore(t, namespace).Unlocked() },
		Cleanup:  func(t *testing.T, namespace string) { dropPrefix(t, "redisstore-test:"+namespace+":") },
	})
}

// TestRedelivery: an update Telegram sends again, after a crash between
// its commit and its acknowledgement or to a second replica, is applied
// once.
func TestRedelivery(t *testing.T) {
	storagetest.RunRedelivery(t, storagetest.CrossProcess{
		NewStore: func(t *testing.T, namespace string) session.Store {
			c := redis.NewClient(&redis.Options{Addr: redisAddr(), ContextTimeoutEnabled: true})
			t.Cleanup(func() { _ = c.Close() })
			return newStore(t, c, redisstore.Options{Prefix: "redisstore-test:" + namespace + ":"})
		},
		Cleanup: func(t *testing.T, namespace string) { dropPrefix(t, "redisstore-test:"+namespace+":") },
	})
}
