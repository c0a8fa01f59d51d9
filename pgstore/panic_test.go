package pgstore_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/pgstore"
	"github.com/tgsession/session/storagetest"
)

// TestScenarioPanicReleasesTheLease: a panic in Initial, the codec (read
// or write) or the handler deletes the chat's lock row at once, nothing
// renews it, and both processes get the chat right away.
func TestScenarioPanicReleasesTheLease(t *testing.T) {
	const lease = time.Second
	pool := newPool(t, "")
	var locks string
	storagetest.RunPanics(t, storagetest.Panics{
		Lease: lease,
		NewPair: func(t *testing.T) (session.Store, session.Store) {
			table := uniqueTable(t)
			locks = pgx.Identifier{table + "_locks"}.Sanitize()
			opts := pgstore.Options{Table: table, LockLease: lease}
			return newStore(t, pool, opts), newStore(t, newPool(t, ""), opts)
		},
		LeaseLeft: func(t *testing.T, key string) (time.Duration, bool) {
			var ms int64
			err := pool.QueryRow(context.Background(), `SELECT (extract(epoch FROM expires_at - now()) * 1000)::bigint FROM `+locks+` WHERE key = $1`, key).Scan(&ms)
			if errors.Is(err, pgx.ErrNoRows) {
				return 0, false
			}
			require.NoError(t, err)
			return time.Duration(ms) * time.Millisecond, true
		},
	})
}
