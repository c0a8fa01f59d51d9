package redisstore_test

import (
	"context"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/redisstore"
)

// startCluster starts a Redis Cluster of three masters on free ports, in
// t's temporary directory, and stops it when t ends. It needs the
// redis-server and redis-cli binaries.
func startCluster(t *testing.T) []string {
	t.Helper()
	server, err := exec.LookPath("redis-server")
	require.NoError(t, err, "this test runs its own Redis Cluster: install redis-server (Debian: apt-get install redis-server)")
	cli, err := exec.LookPath("redis-cli")
	require.NoError(t, err, "this test runs its own Redis Cluster: install redis-tools (redis-cli)")

	var addrs []string
	for range 3 {
		// A cluster node also listens on port+10000: pick ports whose
		// bus port is free too.
		var port int
		for {
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			require.NoError(t, err)
			port = ln.Addr().(*net.TCPAddr).Port
			_ = ln.Close()
			if port+10000 > 65535 {
				continue
			}
			if bus, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port+10000)); err == nil {
				_ = bus.Close()
				break
			}
		}
		dir := t.TempDir()
		cmd := exec.Command(server, "--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--cluster-enabled", "yes", "--cluster-config-file", dir+"/nodes.conf",
			"--save", "", "--appendonly", "no", "--dir", dir)
		require.NoError(t, cmd.Start())
		t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
		addr := "127.0.0.1:" + strconv.Itoa(port)
		c := redis.NewClient(&redis.Options{Addr: addr})
		require.Eventually(t, func() bool { return c.Ping(context.Background()).Err() == nil },
			10*time.Second, 20*time.Millisecond, "cluster node %s did not start", addr)
		_ = c.Close()
		addrs = append(addrs, addr)
	}
	out, err := exec.Command(cli, append(append([]string{"--cluster", "create"}, addrs...),
		"--cluster-replicas", "0", "--cluster-yes")...).CombinedOutput()
	require.NoError(t, err, "redis-cli --cluster create: %s", out)
	// Every node must see the cluster up, not just the first asked.
	for _, addr := range addrs {
		c := redis.NewClient(&redis.Options{Addr: addr})
		require.Eventually(t, func() bool {
			info, err := c.ClusterInfo(context.Background()).Result()
			return err == nil && strings.Contains(info, "cluster_state:ok")
		}, 20*time.Second, 50*time.Millisecond, "the cluster did not come up on %s", addr)
		_ = c.Close()
	}
	return addrs
}

// TestClusterStore checks the store's own calls against a three-master
// Redis Cluster: the scripts that span a key and its lock run in one
// slot, and Keys scans every master.
func TestClusterStore(t *testing.T) {
	addrs := startCluster(t)
	newClusterClient := func() redis.UniversalClient {
		c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, IsClusterMode: true, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	ctx := context.Background()

	t.Run("Commit", func(t *testing.T) {
		c := newClusterClient()
		s := newStore(t, c, redisstore.Options{Prefix: "cluster-commit:"})
		for i := range 20 { // keys in many slots
			key := strconv.Itoa(i)
			l := lockWithin(t, s, key)
			require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("v" + key), TTL: time.Hour}))
			l = lockWithin(t, s, key)
			v, found := l.Value()
			assert.True(t, found)
			assert.Equal(t, "v"+key, string(v))
			require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpTouch, TTL: time.Hour}))
			l = lockWithin(t, s, key)
			require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpDelete}))
			_, found, err := s.Read(ctx, key)
			require.NoError(t, err)
			assert.False(t, found)
		}
	})
	t.Run("Conflict", func(t *testing.T) {
		c := newClusterClient()
		s := newStore(t, c, redisstore.Options{Prefix: "cluster-conflict:"})
		l := lockWithin(t, s, "k")
		require.NoError(t, c.Del(ctx, "cluster-conflict:{k}:lock").Err())
		err := l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("a")})
		assert.ErrorIs(t, err, session.ErrConflict)
	})
	t.Run("Keys", func(t *testing.T) {
		testKeys(t, newClusterClient(), "cluster-keys:")
	})
	t.Run("ConcurrentIncrements", func(t *testing.T) {
		testConcurrentIncrements(t, newClusterClient, "cluster-incr:")
	})
}
