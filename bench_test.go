package session

import (
	"context"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// The benchmarks run the whole pipeline of one update: build the Context,
// pass it through the middleware, run a handler that increments a counter,
// over 1000 chats. "Bare" is the same handler with no session, so the
// difference to it is what the session costs.
//
//	go test -run '^$' -bench . -benchmem -count 6 .

const benchChats = 1000

func benchUpdates() []tgbotapi.Update {
	us := make([]tgbotapi.Update, benchChats)
	for i := range us {
		us[i] = msg(int64(-1001000000000-i), int64(i+1))
	}
	return us
}

func benchRun[S any](b *testing.B, h Handler[S]) {
	us := benchUpdates()
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		if err := h(NewContext[S](ctx, nil, us[i%benchChats])); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkBare(b *testing.B) {
	counts := make(map[int64]int, benchChats)
	benchRun(b, func(c *Context[counter]) error {
		counts[c.Update.Message.Chat.ID]++
		return nil
	})
}

func BenchmarkStrict(b *testing.B) {
	benchRun(b, Strict(Options[counter]{})(increment))
}

func BenchmarkLazyUntouched(b *testing.B) {
	counts := make(map[int64]int, benchChats)
	benchRun(b, Lazy(Options[counter]{})(func(c *Context[counter]) error {
		counts[c.Update.Message.Chat.ID]++
		return nil
	}))
}

func BenchmarkLazyTouched(b *testing.B) {
	benchRun(b, Lazy(Options[counter]{})(increment))
}

type chatAndUser struct {
	Chat counter
	User counter
}

func BenchmarkMulti(b *testing.B) {
	chat := NewFragment("chat", func(s *chatAndUser) *counter { return &s.Chat }, Options[counter]{})
	user := NewFragment("user", func(s *chatAndUser) *counter { return &s.User }, Options[counter]{Key: ByUser})
	h := Multi(chat, user)(func(c *Context[chatAndUser]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Chat.Count++
		s.User.Count++
		return nil
	})
	benchRun(b, h)
}

// The enhanced-storage benchmarks store JSON bytes in memory. StrictJSON
// is the encoding alone, to compare the enhancement's cost against.
func BenchmarkStrictJSON(b *testing.B) {
	store := Encoded[counter](NewMemory[[]byte](), nil)
	benchRun(b, Strict(Options[counter]{Storage: store})(increment))
}

func BenchmarkStrictEnhancedTTL(b *testing.B) {
	store, err := Enhance[counter](NewMemory[[]byte](), EnhanceOptions{TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	benchRun(b, Strict(Options[counter]{Storage: store})(increment))
}

// Three migrations, but the data is already at the newest version after
// its first write, as it is for a bot in steady state.
func BenchmarkStrictEnhancedTTLMigrations(b *testing.B) {
	same := func(old counter) (counter, error) { return old, nil }
	store, err := Enhance[counter](NewMemory[[]byte](), EnhanceOptions{
		TTL:        time.Hour,
		Migrations: map[float64]Migration{1: Migrate(same), 2: Migrate(same), 3: Migrate(same)},
	})
	if err != nil {
		b.Fatal(err)
	}
	benchRun(b, Strict(Options[counter]{Storage: store})(increment))
}
