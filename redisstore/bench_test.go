package redisstore_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tgsession/session"
	"github.com/tgsession/session/redisstore"
	"github.com/tgsession/session/storagetest"
)

// countHook counts the requests a client sends: a pipeline or a script is
// one round trip.
type countHook struct{ n *atomic.Int64 }

func (h countHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h countHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmd)
	}
}

func (h countHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.n.Add(1)
		return next(ctx, cmds)
	}
}

// BenchmarkStore: go test -bench . -benchmem ./redisstore/
func BenchmarkStore(b *testing.B) {
	var n atomic.Int64
	storagetest.RunBenchmarks(b, storagetest.Bench{
		NewStore: func(b *testing.B, locking bool) session.StorageAdapter[[]byte] {
			c := redis.NewClient(&redis.Options{Addr: redisAddr(), ContextTimeoutEnabled: true, PoolSize: 128})
			b.Cleanup(func() { _ = c.Close() })
			if err := c.Ping(context.Background()).Err(); err != nil {
				b.Fatalf("Redis at %s does not answer: %v", redisAddr(), err)
			}
			c.AddHook(countHook{&n})
			return newStore(b, c, redisstore.Options{Prefix: uniquePrefix(b), TTL: time.Hour, DisableLocking: !locking})
		},
		RoundTrips: n.Load,
	})
}
