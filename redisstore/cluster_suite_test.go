package redisstore_test

import (
	"strconv"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tgsession/session"
	"github.com/tgsession/session/redisstore"
	"github.com/tgsession/session/storagetest"
)

// TestCluster runs the conformance, expiry and two-client lock suites
// against a three-master Redis Cluster: keys, locks and the Lua scripts
// that span both must land in one slot (the hash tag), and listing must
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
		storagetest.Run(t, func(t *testing.T) session.Store {
			return newStore(t, newClusterClient(t), redisstore.Options{Prefix: prefix()})
		})
	})
	t.Run("Expiry", func(t *testing.T) {
		storagetest.RunExpiry(t, func(t *testing.T) session.Store {
			return newStore(t, newClusterClient(t), redisstore.Options{Prefix: prefix()})
		})
	})
	t.Run("Locker", func(t *testing.T) {
		const lease = lockLease
		storagetest.RunLocker(t, func(t *testing.T) (a, b session.Store) {
			opts := redisstore.Options{Prefix: prefix(), LockLease: lease}
			return newStore(t, newClusterClient(t), opts), newStore(t, newClusterClient(t), opts)
		}, lease)
	})
}
