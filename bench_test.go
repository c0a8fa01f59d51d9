package session

import (
	"context"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// BenchmarkPipeline runs the whole pipeline of one update: build the
// Context, pass it through the middleware, run a handler that increments a
// counter, over 1000 chats. "bare" is the same job with no session, so the
// difference to it is what a session costs. All variants run in one go so
// they are compared under the same machine conditions:
//
//	go test -run '^$' -bench . -benchmem -count 10 . | tee bench.txt
//	benchstat -col /variant bench.txt
//
// BenchmarkSteady does the same with one Context reused in place, which
// takes allocation and garbage collection out of the picture.
func BenchmarkPipeline(b *testing.B) {
	for _, v := range benchVariants(b) {
		b.Run("variant="+v.name, func(b *testing.B) { v.run(b, false) })
	}
}

// BenchmarkSteady: see BenchmarkPipeline.
func BenchmarkSteady(b *testing.B) {
	for _, v := range benchVariants(b) {
		b.Run("variant="+v.name, func(b *testing.B) { v.run(b, true) })
	}
}

type benchVariant struct {
	name string
	run  func(b *testing.B, reuse bool)
}

const benchChats = 1000

type chatAndUser struct{ Chat, User counter }

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
	same := Migrate(func(old counter) (counter, error) { return old, nil })
	chat := NewFragment("chat", func(s *chatAndUser) *counter { return &s.Chat }, Options[counter]{})
	user := NewFragment("user", func(s *chatAndUser) *counter { return &s.User }, Options[counter]{Key: ByUser})
	return []benchVariant{
		{"bare", benchOf(counted(make([]int, benchChats)))},
		{"strict", benchOf(Strict(Options[counter]{})(increment))},
		{"lazy-untouched", benchOf(Lazy(Options[counter]{})(counted(make([]int, benchChats))))},
		{"lazy-touched", benchOf(Lazy(Options[counter]{})(increment))},
		{"multi-2", benchOf(Multi(chat, user)(func(c *Context[chatAndUser]) error {
			s, err := c.Session()
			if err != nil {
				return err
			}
			s.Chat.Count++
			s.User.Count++
			return nil
		}))},
		// Enhanced storage keeps JSON bytes in memory; "strict-json" is
		// that encoding alone, to compare the enhancement's cost against.
		{"strict-json", benchOf(Strict(Options[counter]{Storage: Encoded[counter](NewMemory[[]byte](), nil)})(increment))},
		{"strict-enhanced-ttl", benchOf(Strict(Options[counter]{Storage: enhanced(EnhanceOptions{TTL: time.Hour})})(increment))},
		// Three migrations on data already at the newest version, as for
		// a bot in steady state.
		{"strict-enhanced-ttl-3-migrations", benchOf(Strict(Options[counter]{Storage: enhanced(EnhanceOptions{
			TTL: time.Hour, Migrations: map[float64]Migration{1: same, 2: same, 3: same},
		})})(increment))},
	}
}

// benchOf returns a benchmark body for h over updates from benchChats
// supergroups (UpdateID is the chat's index, for the bare handler).
func benchOf[S any](h Handler[S]) func(b *testing.B, reuse bool) {
	return func(b *testing.B, reuse bool) {
		us := make([]tgbotapi.Update, benchChats)
		for i := range us {
			us[i] = msg(int64(-1001000000000-i), int64(i+1))
			us[i].UpdateID = i
		}
		ctx := context.Background()
		reused := NewContext[S](ctx, nil, tgbotapi.Update{})
		b.ReportAllocs()
		b.ResetTimer()
		for i := range b.N {
			c := reused
			if reuse {
				*c = Context[S]{Context: ctx, Update: us[i%benchChats]}
			} else {
				c = NewContext[S](ctx, nil, us[i%benchChats])
			}
			if err := h(c); err != nil {
				b.Fatal(err)
			}
		}
	}
}
