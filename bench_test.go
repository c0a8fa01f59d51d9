package session

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"
	"unsafe"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
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
//
// The "-strconv" variants key sessions with a key function that formats
// the chat ID with strconv on every update, bypassing the ID intern table
// of the built-in key functions: the pair measures what the table buys.
func BenchmarkPipeline(b *testing.B) {
	for _, v := range benchVariants(b) {
		b.Run("variant="+v.name, v.run)
	}
}

type benchVariant struct {
	name string
	run  func(b *testing.B)
}

const benchChats = 1000

type chatAndUser struct{ Chat, User counter }

// byChatStrconv is ByChat without the intern table.
func byChatStrconv(u *tgbotapi.Update) (string, bool) {
	id, ok := chatID(u)
	return strconv.FormatInt(id, 10), ok
}

func byUserStrconv(u *tgbotapi.Update) (string, bool) {
	id, ok := userID(u)
	return strconv.FormatInt(id, 10), ok
}

func benchVariants(b *testing.B) []benchVariant {
	counted := func(counts []int) Handler[counter] {
		return func(c *Context[counter]) error {
			counts[c.Update.UpdateID]++
			return nil
		}
	}
	enhanced := func(opts EnhanceOptions) StorageAdapter[counter] {
		s, err := Enhance[counter](NewMemory[[]byte](), opts)
		if err != nil {
			b.Fatal(err)
		}
		return s
	}
	multi := func(chatKey, userKey KeyFunc) Handler[chatAndUser] {
		chat := NewFragment("chat", func(s *chatAndUser) *counter { return &s.Chat }, Options[counter]{Key: chatKey})
		user := NewFragment("user", func(s *chatAndUser) *counter { return &s.User }, Options[counter]{Key: userKey})
		return Multi(chat, user)(func(c *Context[chatAndUser]) error {
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
		{"strict", benchOf(Strict(Options[counter]{})(increment))},
		{"strict-strconv", benchOf(Strict(Options[counter]{Key: byChatStrconv})(increment))},
		{"lazy-untouched", benchOf(Lazy(Options[counter]{})(counted(make([]int, benchChats))))},
		{"lazy-untouched-strconv", benchOf(Lazy(Options[counter]{Key: byChatStrconv})(counted(make([]int, benchChats))))},
		{"lazy-touched", benchOf(Lazy(Options[counter]{})(increment))},
		// A byte store in memory through the default JSON codec: the cost
		// of encoding, as over Redis or SQL without the network.
		{"strict-json", benchOf(Strict(Options[counter]{Storage: Encoded[counter](NewMemory[[]byte](), nil)})(increment))},
		{"enhance-ttl", benchOf(Strict(Options[counter]{Storage: enhanced(EnhanceOptions{TTL: time.Hour})})(increment))},
		{"multi", benchOf(multi(nil, ByUser))},
		{"multi-strconv", benchOf(multi(byChatStrconv, byUserStrconv))},
	}
}

// benchOf returns a benchmark body for h over updates from benchChats
// supergroups (UpdateID is the chat's index, for the bare handler), with
// a fresh Context per update, as a bot makes one.
func benchOf[S any](h Handler[S]) func(b *testing.B) {
	return func(b *testing.B) {
		us := make([]tgbotapi.Update, benchChats)
		for i := range us {
			us[i] = msg(int64(-1001000000000-i), int64(i+1))
			us[i].UpdateID = i
		}
		ctx := context.Background()
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			if err := h(NewContext[S](ctx, nil, us[i%benchChats])); err != nil {
				b.Fatal(err)
			}
		}
	}
}

// BenchmarkMemoryPerSession fills a Memory store with 1,000,000 sessions
// through the middleware, keyed by supergroup IDs as ByChat makes them,
// and reports the live heap per session: in all (B/session) and beyond
// the data itself, the key's bytes and the value's size (overhead-B/session).
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
	store := NewMemory[counter](MemoryOptions{TTL: ttl})
	h := Strict(Options[counter]{Storage: store})(increment)
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
	data := float64(keyBytes)/float64(sessions) + float64(unsafe.Sizeof(counter{}))
	return perSession, perSession - data
}

func liveHeap() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}
