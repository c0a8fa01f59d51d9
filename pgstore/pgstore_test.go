package pgstore_test

// The storagetest suites, the fault test and the cross-process storm.

import (
	"context"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/pgstore"
	"github.com/tgsession/session/storagetest"
)

// lockLease is the lease of the lock suite: long enough that a loaded CI
// machine (2 cores, -race, other packages testing at once) does not miss
// a renewal by accident, short enough to keep the suite at a few
// seconds.
const lockLease = 600 * time.Millisecond

func TestConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.Store {
		return newStore(t, newPool(t, ""), pgstore.Options{Table: uniqueTable(t), PageSize: 7})
	})
}

func TestConformanceUnlocked(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.Store {
		return newStore(t, newPool(t, ""), pgstore.Options{Table: uniqueTable(t)}).Unlocked()
	})
}

// TestConformanceOddTableName: the table name needs quoting (and is 48
// bytes, the longest allowed).
func TestConformanceOddTableName(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.Store {
		name := uniqueTable(t) + `"; DROP TABLE x;--Ünï`
		require.Len(t, name, 48)
		t.Cleanup(func() { dropTables(t, name) })
		return newStore(t, newPool(t, ""), pgstore.Options{Table: name})
	})
}

func TestExpiry(t *testing.T) {
	storagetest.RunExpiry(t, func(t *testing.T) session.Store {
		return newStore(t, newPool(t, ""), pgstore.Options{Table: uniqueTable(t)})
	})
}

func TestLocker(t *testing.T) {
	const lease = lockLease
	storagetest.RunLocker(t, func(t *testing.T) (a, b session.Store) {
		opts := pgstore.Options{Table: uniqueTable(t), LockLease: lease}
		// Two pools, two stores: two processes as far as the database
		// can tell.
		return newStore(t, newPool(t, ""), opts), newStore(t, newPool(t, ""), opts)
	}, lease)
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
// the middleware, locked and unlocked.
func TestCrossProcessStorm(t *testing.T) {
	newStormStore := func(t *testing.T, namespace string) *pgstore.Store {
		s, err := pgstore.New(newPool(t, ""), pgstore.Options{Table: "pgstore_test_" + namespace})
		require.NoError(t, err)
		require.NoError(t, s.Migrate(context.Background()))
		return s
	}
	storagetest.RunCrossProcess(t, storagetest.CrossProcess{
		NewStore: func(t *testing.T, namespace string) session.Store { return newStormStore(t, namespace) },
		Unlocked: func(t *testing.T, namespace string) session.Store { return newStormStore(t, namespace).Unlocked() },
		Cleanup:  func(t *testing.T, namespace string) { dropTables(t, "pgstore_test_"+namespace) },
	})
}

// TestRedelivery: an update Telegram sends again, after a crash between
// its commit and its acknowledgement or to a second replica, is applied
// once.
func TestRedelivery(t *testing.T) {
	storagetest.RunRedelivery(t, storagetest.CrossProcess{
		NewStore: func(t *testing.T, namespace string) session.Store {
			s, err := pgstore.New(newPool(t, ""), pgstore.Options{Table: "pgstore_test_" + namespace})
			require.NoError(t, err)
			require.NoError(t, s.Migrate(context.Background()))
			return s
		},
		Cleanup: func(t *testing.T, namespace string) { dropTables(t, "pgstore_test_"+namespace) },
	})
}
