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
	// NewStore returns an empty byte store. locking false asks for one
	// that does not lock across processes (where the store can).
	NewStore func(b *testing.B, locking bool) session.StorageAdapter[[]byte]

	// RoundTrips, if set, returns how many requests the stores made so
	// far (a client hook's counter); each benchmark then reports rt/op.
	RoundTrips func() int64

	// InFlight and Chats shape the "Parallel" benchmark: InFlight
	// updates at a time spread over Chats chats. Defaults 64 and 1000.
	InFlight, Chats int
}

// RunBenchmarks measures a byte store alone and under the middleware:
//
//   - Read, Write: one call each; LockUnlock: Lock then unlock, if the
//     store is a session.Locker.
//   - Strict/{Locked,Unlocked}/Changed: an update that increments a
//     counter session (read, write back); Unchanged: one that only reads
//     it; Lazy/Untouched: an update whose handler never touches the
//     session.
//   - Parallel/{Locked,Unlocked}: changing updates, InFlight at a time
//     over Chats chats; reports updates/s.
//
// With cfg.RoundTrips each reports rt/op, the requests per operation.
func RunBenchmarks(b *testing.B, cfg Bench) {
	if cfg.InFlight <= 0 {
		cfg.InFlight = 64
	}
	if cfg.Chats <= 0 {
		cfg.Chats = 1000
	}
	ctx := context.Background()
	rt := func(b *testing.B) func() {
		if cfg.RoundTrips == nil {
			return func() {}
		}
		start := cfg.RoundTrips()
		return func() {
			b.ReportMetric(float64(cfg.RoundTrips()-start)/float64(b.N), "rt/op")
		}
	}

	b.Run("Read", func(b *testing.B) {
		s := cfg.NewStore(b, true)
		if err := s.Write(ctx, "k", []byte(`{"n":42}`)); err != nil {
			b.Fatal(err)
		}
		b.ResetTimer()
		done := rt(b)
		for range b.N {
			if _, _, err := s.Read(ctx, "k"); err != nil {
				b.Fatal(err)
			}
		}
		done()
	})
	b.Run("Write", func(b *testing.B) {
		s := cfg.NewStore(b, true)
		b.ResetTimer()
		done := rt(b)
		for i := range b.N {
			if err := s.Write(ctx, "k", []byte(`{"n":`+strconv.Itoa(i)+`}`)); err != nil {
				b.Fatal(err)
			}
		}
		done()
	})
	b.Run("LockUnlock", func(b *testing.B) {
		lk, ok := cfg.NewStore(b, true).(session.Locker)
		if !ok {
			b.Skip("not a session.Locker")
		}
		b.ResetTimer()
		done := rt(b)
		for range b.N {
			unlock, err := lk.Lock(ctx, "k")
			if err != nil {
				b.Fatal(err)
			}
			unlock()
		}
		done()
	})

	for _, locking := range []bool{true, false} {
		mode := "Locked"
		if !locking {
			mode = "Unlocked"
		}
		b.Run("Strict/"+mode+"/Changed", func(b *testing.B) {
			h := counterHandler(cfg.NewStore(b, locking), false, true)
			b.ResetTimer()
			done := rt(b)
			for i := range b.N {
				if err := h(session.NewContext[Counter](ctx, nil, chatUpdate(i, 1))); err != nil {
					b.Fatal(err)
				}
			}
			done()
		})
		b.Run("Strict/"+mode+"/Unchanged", func(b *testing.B) {
			s := cfg.NewStore(b, locking)
			if err := s.Write(ctx, "1", []byte(`{"n":1}`)); err != nil {
				b.Fatal(err)
			}
			h := counterHandler(s, false, false)
			b.ResetTimer()
			done := rt(b)
			for i := range b.N {
				if err := h(session.NewContext[Counter](ctx, nil, chatUpdate(i, 1))); err != nil {
					b.Fatal(err)
				}
			}
			done()
		})
		b.Run("Parallel/"+mode, func(b *testing.B) {
			h := counterHandler(cfg.NewStore(b, locking), false, true)
			b.ResetTimer()
			done := rt(b)
			RunParallel(b, cfg.InFlight, func(i int) error {
				// Spread over the chats like a busy bot: consecutive
				// updates hit different chats. Chat 0 has no key.
				chat := 1 + (i*7919)%cfg.Chats
				return h(session.NewContext[Counter](ctx, nil, chatUpdate(i, chat)))
			})
			done()
		})
	}
	b.Run("Lazy/Untouched", func(b *testing.B) {
		h := counterHandler(cfg.NewStore(b, true), true, false)
		b.ResetTimer()
		done := rt(b)
		for i := range b.N {
			if err := h(session.NewContext[Counter](ctx, nil, chatUpdate(i, 1))); err != nil {
				b.Fatal(err)
			}
		}
		done()
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

// counterHandler is the benchmarks' bot: strict or lazy sessions over
// Encoded[Counter]; change increments the counter, otherwise a strict
// handler only reads it and a lazy one does not touch it.
func counterHandler(s session.StorageAdapter[[]byte], lazy, change bool) session.Handler[Counter] {
	opts := session.Options[Counter]{Storage: session.Encoded[Counter](s, nil)}
	mw := session.Strict(opts)
	if lazy {
		mw = session.Lazy(opts)
	}
	return mw(func(c *session.Context[Counter]) error {
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

func chatUpdate(id, chat int) tgbotapi.Update {
	return tgbotapi.Update{UpdateID: id, Message: &tgbotapi.Message{MessageID: id, Chat: &tgbotapi.Chat{ID: int64(chat)}}}
}
