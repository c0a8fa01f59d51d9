package boltstore_test

import (
	"testing"

	"github.com/tgsession/session"
	"github.com/tgsession/session/boltstore"
	"github.com/tgsession/session/storagetest"
)

// BenchmarkStore: go test -bench . -benchmem ./boltstore/ (with fsync on
// every commit, as a bot would run it). The store has no Locker, so the
// "Locked" benchmarks are locked by the middleware's process-wide table
// and there is no Unlocked view; a bbolt file has no round trips to
// count.
func BenchmarkStore(b *testing.B) {
	storagetest.RunBenchmarks(b, storagetest.Bench{
		NewStore: func(b *testing.B) session.Store {
			return newStore(b, openDB(b, "", false), boltstore.Options{})
		},
	})
}
