package storagetest

import (
	"context"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// Bench configures [RunBenchmarks].
type Bench struct {
	// NewStore returns an empty store, with its capabilities: the
	// "Locked" benchmarks run over it (locked by its Locker, or by the
	// middleware's process-wide table for a store without one).
	NewStore func(b *testing.B) session.Store

	// Unlocked, if set, returns an empty store without a Locker (an
	// adapter's Unlocked view) for the "Unlocked" benchmarks, which are
	// skipped otherwise.
	Unlocked func(b *testing.B) session.Store

	// RoundTrips, if set, returns how many requests the stores' clients
	// have made so far, counted by the client itself (a go-redis hook, a
	// pgx tracer) rather than by a wrapper of the store, which would hide
	// the store's capabilities from the middleware. Each benchmark then
	// reports rt/op, the requests per operation.
	RoundTrips func() int64

	// InFlight and Chats shape the "Parallel" benchmarks: InFlight
	// updates at a time spread over Chats chats. Defaults 64 and 1000.
	InFlight, Chats int
}

// RunBenchmarks measures a store alone and under the middleware:
//
//   - Store/Read, Store/Write: one call each; Store/WriteTTL and
//     Store/Touch if the store is an Expirer; Store/LockRelease and
//     Store/LockCommit (Lock, then Commit of a write) if it is a Locker.
//   - Update/{Locked,Unlocked}/Changed: an update that increments a
//     counter session (read, write back); Unchanged: one that only reads
//     it; ChangedTTL and UnchangedTTL: the same with a session TTL (a
//     write with expiry, and a touch).
//   - Lazy/Untouched: a lazy session whose handler never touches it (no
//     storage call at all).
//   - Parallel/{Locked,Unlocked}: changing updates, InFlight at a time
//     over Chats chats; reports updates/s.
//
// Stores are found capable as the middleware finds them, through Unwrap
// chains. With cfg.RoundTrips each benchmark reports rt/op, the requests
// its operations made divided by b.N.
func RunBenchmarks(b *testing.B, cfg Bench) {
	if cfg.NewStore == nil {
		b.Fatal("Bench.NewStore is nil")
	}
	if cfg.InFlight <= 0 {
		cfg.InFlight = 64
	}
	if cfg.Chats <= 0 {
		cfg.Chats = 1000
	}
	ctx := context.Background()
	// rt starts counting round trips; the function it returns reports
	// them per operation.
	rt := func(b *testing.B) func() {
		if cfg.RoundTrips == nil {
			return func() {}
		}
		start := cfg.RoundTrips()
		return func() {
			b.ReportMetric(float64(cfg.RoundTrips()-start)/float64(b.N), "rt/op")
		}
	}
	// loop runs op b.N times with the timer and the round trips counted.
	loop := func(b *testing.B, op func(i int) error) {
		b.ResetTimer()
		done := rt(b)
		for i := range b.N {
			if err := op(i); err != nil {
				b.Fatal(err)
			}
		}
		b.StopTimer()
		done()
	}
	newStore := func(b *testing.B, unlocked bool) session.Store {
		var s session.Store
		if unlocked {
			if cfg.Unlocked == nil {
				b.Skip("Bench.Unlocked is nil")
			}
			s = cfg.Unlocked(b)
			if _, ok := session.Unwrap[session.Locker](s); ok {
				b.Fatal("Bench.Unlocked's store has a session.Locker")
			}
		} else {
			s = cfg.NewStore(b)
		}
		if isNil(s) {
			b.Fatal("the store function returned a nil store")
		}
		return s
	}
	value := []byte(`{"n":42}`)

	b.Run("Store/Read", func(b *testing.B) {
		s := newStore(b, false)
		if err := s.Write(ctx, "k", value); err != nil {
			b.Fatal(err)
		}
		loop(b, func(int) error { _, _, err := s.Read(ctx, "k"); return err })
	})
	b.Run("Store/Write", func(b *testing.B) {
		s := newStore(b, false)
		loop(b, func(i int) error { return s.Write(ctx, "k", []byte(`{"n":`+strconv.Itoa(i)+`}`)) })
	})
	b.Run("Store/WriteTTL", func(b *testing.B) {
		ex, ok := session.Unwrap[session.Expirer](newStore(b, false))
		if !ok {
			b.Skip("store has no Expirer")
		}
		loop(b, func(i int) error { return ex.WriteTTL(ctx, "k", []byte(`{"n":`+strconv.Itoa(i)+`}`), time.Hour) })
	})
	b.Run("Store/Touch", func(b *testing.B) {
		ex, ok := session.Unwrap[session.Expirer](newStore(b, false))
		if !ok {
			b.Skip("store has no Expirer")
		}
		if err := ex.WriteTTL(ctx, "k", value, time.Hour); err != nil {
			b.Fatal(err)
		}
		loop(b, func(int) error { return ex.Touch(ctx, "k", time.Hour) })
	})
	b.Run("Store/LockRelease", func(b *testing.B) {
		lk, ok := session.Unwrap[session.Locker](newStore(b, false))
		if !ok {
			b.Skip("store has no Locker")
		}
		loop(b, func(int) error {
			l, err := lk.Lock(ctx, "k", "")
			if err != nil {
				return err
			}
			l.Release()
			return nil
		})
	})
	b.Run("Store/LockCommit", func(b *testing.B) {
		s := newStore(b, false)
		lk, ok := session.Unwrap[session.Locker](s)
		if !ok {
			b.Skip("store has no Locker")
		}
		ttl := changeTTL(s)
		loop(b, func(i int) error {
			l, err := lk.Lock(ctx, "k", "")
			if err != nil {
				return err
			}
			return l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte(`{"n":` + strconv.Itoa(i) + `}`), TTL: ttl})
		})
	})

	for _, unlocked := range []bool{false, true} {
		mode := "Locked"
		if unlocked {
			mode = "Unlocked"
		}
		for _, c := range []struct {
			name   string
			change bool
			ttl    time.Duration
		}{
			{"Changed", true, 0},
			{"Unchanged", false, 0},
			{"ChangedTTL", true, time.Hour},
			{"UnchangedTTL", false, time.Hour},
		} {
			b.Run("Update/"+mode+"/"+c.name, func(b *testing.B) {
				s := newStore(b, unlocked)
				// A first, changing update stores the session, so that
				// an unchanged one finds it.
				if err := benchHandler(b, s, false, true, c.ttl)(benchContext(ctx, 1)); err != nil {
					b.Fatal(err)
				}
				h := benchHandler(b, s, false, c.change, c.ttl)
				loop(b, func(int) error { return h(benchContext(ctx, 1)) })
			})
		}
		b.Run("Parallel/"+mode, func(b *testing.B) {
			h := benchHandler(b, newStore(b, unlocked), false, true, 0)
			b.ResetTimer()
			done := rt(b)
			RunParallel(b, cfg.InFlight, func(i int) error {
				// Spread over the chats like a busy bot: consecutive
				// updates hit different chats.
				chat := int64(1 + (i*7919)%cfg.Chats)
				return h(benchContext(ctx, chat))
			})
			b.StopTimer()
			done()
		})
	}
	b.Run("Lazy/Untouched", func(b *testing.B) {
		h := benchHandler(b, newStore(b, false), true, false, 0)
		loop(b, func(int) error { return h(benchContext(ctx, 1)) })
	})
}

// RunParallel calls op(i) for i from 0 to b.N-1, inFlight calls at a
// time, and reports the rate as updates/s. The first error fails b.
func RunParallel(b *testing.B, inFlight int, op func(i int) error) {
	var next, failed atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	for range inFlight {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1)) - 1
				if i >= b.N {
					return
				}
				if err := op(i); err != nil && failed.Add(1) == 1 {
					b.Error(err)
				}
			}
		}()
	}
	wg.Wait()
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "updates/s")
	if n := failed.Load(); n > 0 {
		b.Errorf("%d of %d operations failed", n, b.N)
	}
}

// benchHandler is the benchmarks' bot: a Counter session over s, strict
// or lazy, with a TTL or not; change increments the counter, otherwise a
// strict handler only reads it and a lazy one does not touch it.
func benchHandler(b *testing.B, s session.Store, lazy, change bool, ttl time.Duration) session.Handler[Counter] {
	sess, err := session.New(session.Options[Counter]{Storage: s, Lazy: lazy, TTL: ttl})
	if err != nil {
		b.Fatal(err)
	}
	return sess.Middleware(func(c *session.Context[Counter]) error {
		if lazy {
			return nil
		}
		v, err := c.Session()
		if err != nil {
			return err
		}
		if change {
			v.N++
		}
		return nil
	})
}

// benchBot is the bot of the benchmarks' updates: as under runner.Run,
// each session records the updates applied to it.
var benchBot = &tgbotapi.BotAPI{Self: tgbotapi.User{ID: 1, IsBot: true}}

// benchIDs numbers the benchmarks' updates from a base that grows with
// the clock, so that no update id repeats one a persistent store recorded
// in an earlier run (it would be skipped as a redelivery).
var benchIDs atomic.Int64

func init() { benchIDs.Store(time.Now().UnixMicro()) }

// benchContext is the Context of a new update of chat.
func benchContext(ctx context.Context, chat int64) *session.Context[Counter] {
	return session.NewContext[Counter](ctx, benchBot, chatUpdate(int(benchIDs.Add(1)), chat))
}
