package redisstore_test

import (
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/redisstore"
	"github.com/tgsession/session/storagetest"
)

// TestScenarioPanicReleasesTheLease: a panic in Initial, the codec (read
// or write) or the handler gives the chat's lease back in Redis at once
// (its PTTL is -2), nothing renews it, and both processes get the chat
// right away.
func TestScenarioPanicReleasesTheLease(t *testing.T) {
	const lease = time.Second
	var prefix string
	client := newClient(t)
	storagetest.RunPanics(t, storagetest.Panics{
		Lease: lease,
		NewPair: func(t *testing.T) (session.Store, session.Store) {
			prefix = uniquePrefix(t)
			opts := redisstore.Options{Prefix: prefix, LockLease: lease}
			return newStore(t, client, opts), newStore(t, newClient(t), opts)
		},
		LeaseLeft: func(t *testing.T, key string) (time.Duration, bool) {
			pttl, err := client.PTTL(context.Background(), prefix+"{"+key+"}:lock").Result()
			require.NoError(t, err)
			return pttl, pttl != -2
		},
	})
}
