package redisstore_test

import (
	"context"
	"sync/atomic"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tgsession/session"
	"github.com/tgsession/session/redisstore"
	"github.com/tgsession/session/storagetest"
)

// BenchmarkStore: go test -bench . -benchmem ./redisstore/
func BenchmarkStore(b *testing.B) {
	var n atomic.Int64
	newBenchStore := func(b *testing.B) *redisstore.Store {
		c := redis.NewClient(&redis.Options{Addr: redisAddr(), ContextTimeoutEnabled: true, PoolSize: 128})
		b.Cleanup(func() { _ = c.Close() })
		if err := c.Ping(context.Background()).Err(); err != nil {
			b.Fatalf("Redis at %s does not answer: %v", redisAddr(), err)
		}
		c.AddHook(countHook{&n})
		return newStore(b, c, redisstore.Options{Prefix: uniquePrefix(b)})
	}
	storagetest.RunBenchmarks(b, storagetest.Bench{
		NewStore:   func(b *testing.B) session.Store { return newBenchStore(b) },
		Unlocked:   func(b *testing.B) session.Store { return newBenchStore(b).Unlocked() },
		RoundTrips: n.Load,
	})
}
