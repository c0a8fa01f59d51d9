package session

import (
	"context"
	"encoding/json"
	"fmt"
	"runtime"
	"slices"
	"strconv"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session/internal/jsonfast"
)

// BenchmarkPipeline runs the whole pipeline of one update: build the
// Context, pass it through the middleware, run a handler that increments a
// counter, over 1000 chats. "bare" is the same job with no session, so the
// difference to it is what a session costs. All variants run in one
// benchmark, interleaved by -count, so they are compared under the same
// machine conditions (see BENCHMARKS.md):
//
//	go test -run '^$' -bench Pipeline -benchmem -count 8 . | tee bench.txt
//	benchstat -col /variant bench.txt
func BenchmarkPipeline(b *testing.B) {
	for _, v := range benchVariants(b) {
		b.Run("variant="+v.name, v.body.run)
	}
}

type benchVariant struct {
	name string
	body benchBody
}

const benchChats = 1000

type chatAndUser struct{ Chat, User counter }

// rawBytes is a byte store in memory with no capabilities: what a store
// of a user's own (or Redis, PostgreSQL without the network) costs the
// middleware, with the lock table and, given a TTL, the envelope.
type rawBytes struct{ m *Memory }

func (r rawBytes) Read(ctx context.Context, k string) ([]byte, bool, error) { return r.m.Read(ctx, k) }
func (r rawBytes) Write(ctx context.Context, k string, v []byte) error      { return r.m.Write(ctx, k, v) }
func (r rawBytes) Delete(ctx context.Context, k string) error               { return r.m.Delete(ctx, k) }

func benchVariants(b *testing.B) []benchVariant {
	counted := func(counts []int) Handler[counter] {
		return func(c *Context[counter]) error {
			counts[c.Update.UpdateID]++
			return nil
		}
	}
	session := func(opts Options[counter], h Handler[counter]) Handler[counter] {
		s, err := New(opts)
		if err != nil {
			b.Fatal(err)
		}
		return s.Middleware(h)
	}
	multi := func() Handler[chatAndUser] {
		chat := NewFragment("chat", func(s *chatAndUser) *counter { return &s.Chat }, Options[counter]{})
		user := NewFragment("user", func(s *chatAndUser) *counter { return &s.User }, Options[counter]{Key: ByUser})
		s, err := NewMulti(Options[chatAndUser]{}, chat, user)
		if err != nil {
			b.Fatal(err)
		}
		return s.Middleware(func(c *Context[chatAndUser]) error {
			s, err := c.Session()
			if err != nil {
				return err
			}
			s.Chat.Count++
			s.User.Count++
			return nil
		})
	}
	return []benchVariant{
		{"bare", benchOf(counted(make([]int, benchChats)))},
		{"strict", benchOf(session(Options[counter]{}, increment))},
		{"lazy-untouched", benchOf(session(Options[counter]{Lazy: true}, counted(make([]int, benchChats))))},
		{"lazy-touched", benchOf(session(Options[counter]{Lazy: true}, increment))},
		// Memory with a native TTL: every write is a WriteTTL.
		{"memory-ttl", benchOf(session(Options[counter]{TTL: time.Hour}, increment))},
		// A byte store without capabilities: the encoding, as over Redis
		// or SQL without the network.
		{"strict-json", benchOf(session(Options[counter]{Storage: rawBytes{NewMemory()}}, increment))},
		// The same with a TTL, kept in grammY's envelope.
		{"enhance-ttl", benchOf(session(Options[counter]{Storage: rawBytes{NewMemory()}, TTL: time.Hour}, increment))},
		{"multi", benchOf(multi())},
	}
}

// benchOf returns a benchmark body for h over updates from benchChats
// supergroups (UpdateID is the chat's index, for the bare handler), with
// a fresh Context per update, as a bot makes one.
func benchOf[S any](h Handler[S]) benchBody {
	us := make([]tgbotapi.Update, benchChats)
	for i := range us {
		us[i] = msg(int64(-1001000000000-i), int64(i+1))
		us[i].UpdateID = i
	}
	ctx := context.Background()
	return func(n int) error {
		for i := range n {
			if err := h(NewContext[S](ctx, nil, us[i%benchChats])); err != nil {
				return err
			}
		}
		return nil
	}
}

// benchBody runs n updates.
type benchBody func(n int) error

func (f benchBody) run(b *testing.B) {
	b.ReportAllocs()
	b.ResetTimer()
	if err := f(b.N); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkMemoryPerSession fills a Memory store with 1,000,000 sessions
// through the middleware, keyed by supergroup IDs as ByChat makes them,
// and reports the live heap per session: in all (B/session) and beyond
// the data itself, the key's bytes and the value's encoding
// (overhead-B/session).
// It runs once whatever b.N is; run it with -benchtime 1x.
func BenchmarkMemoryPerSession(b *testing.B) {
	const sessions = 1_000_000
	for _, ttl := range []time.Duration{0, time.Hour} {
		b.Run(fmt.Sprintf("ttl=%v", ttl), func(b *testing.B) {
			var perSession, overhead float64
			for range b.N {
				perSession, overhead = memoryPerSession(b, sessions, ttl)
			}
			b.ReportMetric(perSession, "B/session")
			b.ReportMetric(overhead, "overhead-B/session")
			b.ReportMetric(0, "ns/op")
		})
	}
}

func memoryPerSession(b *testing.B, sessions int, ttl time.Duration) (perSession, overhead float64) {
	b.Helper()
	ctx := context.Background()
	before := liveHeap()
	store := NewMemory()
	sess, err := New(Options[counter]{Storage: store, TTL: ttl})
	if err != nil {
		b.Fatal(err)
	}
	h := sess.Middleware(increment)
	keyBytes := 0
	for i := range sessions {
		id := int64(-1001000000000 - i)
		keyBytes += len(strconv.FormatInt(id, 10))
		if err := h(NewContext[counter](ctx, nil, msg(id, 1))); err != nil {
			b.Fatal(err)
		}
	}
	after := liveHeap()
	runtime.KeepAlive(store)
	runtime.KeepAlive(h)
	perSession = float64(after-before) / float64(sessions)
	data := float64(keyBytes)/float64(sessions) + float64(len(`{"Count":1}`))
	return perSession, perSession - data
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// BenchmarkOverhead measures what each variant adds to bare, robustly on
// a shared, noisy machine: it alternates blocks of 20,000 updates of bare
// and of the variant (same process, same heap, seconds apart at most) and
// reports the median and the minimum over blocks of the difference in
// ns/update. Noise from other processes only ever adds time, so the
// minimum is the cost closest to an idle machine; the median is what a
// typical block saw. It runs once whatever b.N is: use -benchtime 1x.
func BenchmarkOverhead(b *testing.B) {
	const block, rounds = 20000, 15
	vs := benchVariants(b)
	bare := vs[0]
	for _, v := range vs[1:] {
		b.Run("variant="+v.name, func(b *testing.B) {
			var base, with []float64
			for range rounds {
				base = append(base, blockTime(b, bare.body, block))
				with = append(with, blockTime(b, v.body, block))
			}
			diffs := make([]float64, rounds)
			for i := range diffs {
				diffs[i] = with[i] - base[i]
			}
			b.ReportMetric(median(with)-median(base), "median-ns-over-bare")
			b.ReportMetric(slices.Min(with)-slices.Min(base), "min-ns-over-bare")
			b.ReportMetric(median(diffs), "paired-ns-over-bare")
			b.ReportMetric(0, "ns/op")
		})
	}
}

// blockTime runs body for n updates and returns ns/update.
func blockTime(b *testing.B, body benchBody, n int) float64 {
	t0 := time.Now()
	if err := body(n); err != nil {
		b.Fatal(err)
	}
	return float64(time.Since(t0).Nanoseconds()) / float64(n)
}

func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkCodec compares the default codec's fast path with encoding/json
// on the benchmark's session type, and times the clock the envelope reads.
func BenchmarkCodec(b *testing.B) {
	fast := jsonfast.For[counter]()
	v := counter{Count: 123}
	data := []byte(`{"Count":123}`)
	b.Run("op=fast-marshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := fast.Marshal(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=fast-unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var c counter
			if err := fast.Unmarshal(data, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=json-marshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, err := json.Marshal(&v); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=json-unmarshal", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			var c counter
			if err := json.Unmarshal(data, &c); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("op=time-now", func(b *testing.B) {
		for range b.N {
			_ = time.Now().UnixMilli()
		}
	})
}
