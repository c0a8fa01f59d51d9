package boltstore_test

import (
	"testing"
	"time"

	"github.com/tgsession/session"
	"github.com/tgsession/session/boltstore"
	"github.com/tgsession/session/storagetest"
)

// BenchmarkStore: go test -bench . -benchmem ./boltstore/ (with fsync on
// every commit, as a bot would run it; "locking" makes no difference: the
// store has no Locker).
func BenchmarkStore(b *testing.B) {
	storagetest.RunBenchmarks(b, storagetest.Bench{
		NewStore: func(b *testing.B, _ bool) session.StorageAdapter[[]byte] {
			return newStore(b, openDB(b, "", false), boltstore.Options{TTL: time.Hour})
		},
	})
}
