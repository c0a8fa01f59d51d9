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
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/redisstore"
	"github.com/tgsession/session/storagetest"
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
	c := redis.NewClusterClient(&redis.ClusterOptions{Addrs: addrs})
	defer c.Close()
	require.Eventually(t, func() bool {
		info, err := c.ClusterInfo(context.Background()).Result()
		return err == nil && strings.Contains(info, "cluster_state:ok")
	}, 20*time.Second, 50*time.Millisecond, "the cluster did not come up")
	return addrs
}

// TestCluster runs the conformance, expiry and two-client lock suites
// against a three-master Redis Cluster: keys, locks and the Lua scripts
// that span both must land in one slot (the hash tag), and iteration must
// scan every master.
func TestCluster(t *testing.T) {
	addrs := startCluster(t)
	newClusterClient := func(t *testing.T) redis.UniversalClient {
		c := redis.NewUniversalClient(&redis.UniversalOptions{Addrs: addrs, IsClusterMode: true, ContextTimeoutEnabled: true})
		t.Cleanup(func() { _ = c.Close() })
		return c
	}
	n := 0
	prefix := func() string { n++; return "cluster-" + strconv.Itoa(n) + ":" }

	t.Run("Conformance", func(t *testing.T) {
		storagetest.Run(t, func(t *testing.T) session.StorageAdapter[storagetest.Value] {
			return session.Encoded[storagetest.Value](newStore(t, newClusterClient(t),
				redisstore.Options{Prefix: prefix(), TTL: time.Hour}), nil)
		})
	})
	t.Run("Expiry", func(t *testing.T) {
		storagetest.RunExpiry(t, func(t *testing.T) session.StorageAdapter[[]byte] {
			return newStore(t, newClusterClient(t), redisstore.Options{Prefix: prefix(), TTL: expiryTTL})
		}, expiryTTL)
	})
	t.Run("Locker", func(t *testing.T) {
		const lease = lockLease
		storagetest.RunLocker(t, func(t *testing.T) (a, b session.StorageAdapter[[]byte]) {
			opts := redisstore.Options{Prefix: prefix(), LockLease: lease}
			return newStore(t, newClusterClient(t), opts), newStore(t, newClusterClient(t), opts)
		}, lease)
	})
}
