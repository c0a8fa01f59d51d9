package main

import (
	"context"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/tgsession/session"
)

// BenchmarkMemoryPauseAt1M fills Memory with a million sessions of a one-
// minute TTL, lets them all expire, and then times writes while the
// housekeeping removes them: max-pause-ns is the longest single write
// (its own shard's work plus at most one shard's sweep). Run it with
// -benchtime=1x; BENCHMARKS.md has the figures.
func BenchmarkMemoryPauseAt1M(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	clock := &fakeClock{now: time.Unix(1_700_000_000, 0)}
	m := session.NewMemory(session.MemoryOptions{Clock: clock.Now})
	value := []byte(`{"Count":1}`)
	for i := range n {
		if err := m.WriteTTL(ctx, strconv.Itoa(i), value, time.Minute); err != nil {
			b.Fatal(err)
		}
	}
	clock.Advance(2 * time.Minute) // every session expired: the sweeps delete them all
	b.ResetTimer()
	var longest time.Duration
	for range b.N {
		for i := range 10_000 {
			t0 := time.Now()
			if err := m.WriteTTL(ctx, "new"+strconv.Itoa(i), value, time.Minute); err != nil {
				b.Fatal(err)
			}
			longest = max(longest, time.Since(t0))
		}
	}
	b.ReportMetric(float64(longest.Nanoseconds()), "max-pause-ns")
}

// BenchmarkMemoryBytesPerSession reports what Memory keeps per session
// beyond the encoded data, at a million sessions of {"Count":N}.
func BenchmarkMemoryBytesPerSession(b *testing.B) {
	const n = 1_000_000
	ctx := context.Background()
	for range b.N {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		m := session.NewMemory()
		keyBytes, dataBytes := 0, 0
		for i := range n {
			key := strconv.Itoa(1_000_000_000 + i)
			data := []byte(`{"Count":` + strconv.Itoa(i%1000) + `}`)
			keyBytes += len(key)
			dataBytes += len(data)
			if err := m.Write(ctx, key, data); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		runtime.KeepAlive(m)
		heap := float64(after.HeapAlloc - before.HeapAlloc)
		b.ReportMetric(heap/n, "heap-B/session")
		b.ReportMetric((heap-float64(keyBytes+dataBytes))/n, "overhead-B/session")
	}
}

// fakeClock moves only when told to.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
