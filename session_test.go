package session

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type counter struct{ Count int }

type cart struct {
	Items map[string]int
	Notes []string
}

func increment(c *Context[counter]) error {
	s, err := c.Session()
	if err != nil {
		return err
	}
	s.Count++
	return nil
}

func TestStrictSequenceExactStorageCalls(t *testing.T) {
	rec := newRecorder[cart]()
	h := Strict(Options[cart]{
		Storage: rec,
		Initial: func() cart { return cart{Items: map[string]int{}} },
	})

	steps := []struct {
		name    string
		handler Handler[cart]
		calls   []call[cart]
	}{
		{"initial value is read, untouched, not written", func(c *Context[cart]) error {
			s, err := c.Session()
			require.NoError(t, err)
			assert.Equal(t, cart{Items: map[string]int{}}, *s)
			return nil
		}, []call[cart]{rd[cart]("7")}},
		{"mutate writes", func(c *Context[cart]) error {
			s, _ := c.Session()
			s.Items["pizza"] = 1
			return nil
		}, []call[cart]{rd[cart]("7"), wr("7", cart{Items: map[string]int{"pizza": 1}})}},
		{"add data writes", func(c *Context[cart]) error {
			s, _ := c.Session()
			assert.Equal(t, 1, s.Items["pizza"])
			s.Items["cola"] = 2
			s.Notes = append(s.Notes, "no onions")
			return nil
		}, []call[cart]{rd[cart]("7"), wr("7", cart{Items: map[string]int{"pizza": 1, "cola": 2}, Notes: []string{"no onions"}})}},
		{"clear deletes once", func(c *Context[cart]) error {
			return c.ClearSession()
		}, []call[cart]{rd[cart]("7"), del[cart]("7")}},
		{"re-initialise after clear", func(c *Context[cart]) error {
			s, _ := c.Session()
			assert.Empty(t, s.Items, "a cleared session starts from the initial value")
			s.Items["tea"] = 1
			return nil
		}, []call[cart]{rd[cart]("7"), wr("7", cart{Items: map[string]int{"tea": 1}})}},
	}
	for _, step := range steps {
		require.NoError(t, run(Strict(Options[cart]{Storage: rec, Initial: func() cart { return cart{Items: map[string]int{}} }})(step.handler), msg(7, 1)), step.name)
		assert.Equal(t, step.calls, rec.take(), step.name)
	}
	_ = h
}

func TestUnchangedValueIsNotWritten(t *testing.T) {
	rec := newRecorder[cart]()
	require.NoError(t, rec.inner.Write(context.Background(), "1", cart{Items: map[string]int{"a": 1}}))
	h := Strict(Options[cart]{Storage: rec})(func(c *Context[cart]) error {
		s, err := c.Session()
		require.NoError(t, err)
		s.Items["a"] = 1 // same value written again: no change
		s.Notes = nil
		return nil
	})
	require.NoError(t, run(h, msg(1, 1)))
	assert.Equal(t, []call[cart]{rd[cart]("1")}, rec.take())

	// Untouched initial data of a new session: no write either.
	require.NoError(t, run(Strict(Options[cart]{Storage: rec})(func(c *Context[cart]) error {
		_, err := c.Session()
		return err
	}), msg(2, 1)))
	assert.Equal(t, []call[cart]{rd[cart]("2")}, rec.take())
}

func TestHandlerErrorOrPanicWritesNothing(t *testing.T) {
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		end  func() error
	}{
		{"error", func() error { return boom }},
		{"panic", func() error { panic(boom) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rec := newRecorder[cart]()
			ctx := context.Background()
			require.NoError(t, rec.inner.Write(ctx, "5", cart{Items: map[string]int{"pizza": 1}, Notes: []string{"a"}}))
			before, ok := rec.inner.get("5")
			require.True(t, ok)

			h := Strict(Options[cart]{Storage: rec})(func(c *Context[cart]) error {
				s, err := c.Session()
				require.NoError(t, err)
				s.Items["pizza"] = 99 // in place, in a map
				s.Notes[0] = "changed"
				delete(s.Items, "pizza")
				return tc.end()
			})
			var got error
			func() {
				defer func() {
					if r := recover(); r != nil {
						got = r.(error)
					}
				}()
				got = run(h, msg(5, 1))
			}()
			assert.ErrorIs(t, got, boom)
			assert.Equal(t, []call[cart]{rd[cart]("5")}, rec.take(), "no write, no delete")
			after, ok := rec.inner.get("5")
			require.True(t, ok)
			assert.Equal(t, string(before), string(after), "stored value byte-identical")

			// The lock was released: the next update of the same key runs.
			done := make(chan error, 1)
			go func() {
				done <- run(Strict(Options[cart]{Storage: rec})(func(*Context[cart]) error { return nil }), msg(5, 1))
			}()
			select {
			case err := <-done:
				assert.NoError(t, err)
			case <-time.After(5 * time.Second):
				t.Fatal("next update for the key did not run: lock not released")
			}
		})
	}
}

func TestPanicReleasesLockOfSameMiddleware(t *testing.T) {
	var calls int
	h := Strict(Options[counter]{})(func(c *Context[counter]) error {
		calls++
		if calls == 1 {
			panic("first")
		}
		return increment(c)
	})
	assert.Panics(t, func() { _ = run(h, msg(1, 1)) })
	assert.NoError(t, run(h, msg(1, 1)))
	assert.Equal(t, 2, calls)
}

func TestReadErrorStopsHandler(t *testing.T) {
	rec := newRecorder[counter]()
	broken := errors.New("disk on fire")
	rec.fail = func(op, key string) error {
		if op == "read" {
			return broken
		}
		return nil
	}
	called := false
	err := run(Strict(Options[counter]{Storage: rec})(func(*Context[counter]) error {
		called = true
		return nil
	}), msg(42, 1))
	assert.False(t, called, "handler must not run after a read error")
	assert.ErrorIs(t, err, broken)
	assert.Contains(t, err.Error(), `"42"`, "the error names the key")
}

func TestWriteAndDeleteErrorsReachCaller(t *testing.T) {
	broken := errors.New("quota")
	for _, op := range []string{"write", "delete"} {
		t.Run(op, func(t *testing.T) {
			rec := newRecorder[counter]()
			require.NoError(t, rec.inner.Write(context.Background(), "3", counter{1}))
			rec.fail = func(o, key string) error {
				if o == op {
					return broken
				}
				return nil
			}
			err := run(Strict(Options[counter]{Storage: rec})(func(c *Context[counter]) error {
				if op == "delete" {
					return c.ClearSession()
				}
				return increment(c)
			}), msg(3, 1))
			assert.ErrorIs(t, err, broken)
			assert.Contains(t, err.Error(), `"3"`)
		})
	}
}

func TestNoKeyMeansNoStorageCalls(t *testing.T) {
	inline := tgbotapi.Update{InlineQuery: &tgbotapi.InlineQuery{ID: "q", From: &tgbotapi.User{ID: 9}}}
	for _, tc := range []struct {
		name string
		key  KeyFunc
		want string
	}{
		{"default", nil, "default key function ByChat"},
		{"custom", func(*tgbotapi.Update) (string, bool) { return "", false }, "custom key function"},
	} {
		for _, lazy := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s lazy=%v", tc.name, lazy), func(t *testing.T) {
				rec := newRecorder[counter]()
				mw := Strict[counter]
				if lazy {
					mw = Lazy[counter]
				}
				ran := false
				err := run(mw(Options[counter]{Storage: rec, Key: tc.key})(func(c *Context[counter]) error {
					ran = true
					_, ok := c.SessionKey()
					assert.False(t, ok)
					for _, err := range []error{
						func() error { _, err := c.Session(); return err }(),
						c.SetSession(counter{1}),
						c.ClearSession(),
					} {
						assert.ErrorIs(t, err, ErrNoSessionKey)
						assert.ErrorContains(t, err, tc.want)
					}
					return nil
				}), inline)
				require.NoError(t, err)
				assert.True(t, ran, "an update without a session still reaches the handler")
				assert.Empty(t, rec.take(), "no storage calls")
			})
		}
	}
}

func TestPrefixOnEveryStorageCall(t *testing.T) {
	rec := newRecorder[counter]()
	opts := Options[counter]{Storage: rec, Prefix: "user-", Key: ByUser}
	require.NoError(t, run(Strict(opts)(increment), msg(1, 424242)))
	require.NoError(t, run(Strict(opts)(func(c *Context[counter]) error {
		key, ok := c.SessionKey()
		assert.True(t, ok)
		assert.Equal(t, "424242", key, "the handler sees the key before the prefix")
		return c.ClearSession()
	}), msg(1, 424242)))
	assert.Equal(t, []call[counter]{
		rd[counter]("user-424242"), wr("user-424242", counter{1}),
		rd[counter]("user-424242"), del[counter]("user-424242"),
	}, rec.take())
}

func TestSessionWithoutMiddleware(t *testing.T) {
	c := NewContext[counter](context.Background(), nil, msg(1, 1))
	_, err := c.Session()
	assert.ErrorIs(t, err, ErrNoMiddleware)
	assert.ErrorIs(t, c.ClearSession(), ErrNoMiddleware)
}

func TestContextIsSingleUse(t *testing.T) {
	h := Strict(Options[counter]{})(increment)
	// A Context built by hand: no session state yet, no context.Context.
	c := &Context[counter]{Update: msg(1, 1)}
	require.NoError(t, h(c), "a nil context.Context means Background")
	assert.ErrorIs(t, h(c), errReused)
}

func TestZeroValueWithoutInitialAndFreshValuePerSession(t *testing.T) {
	store := NewMemory[cart]()
	var seen []*cart
	h := Strict(Options[cart]{Storage: store})(func(c *Context[cart]) error {
		s, err := c.Session()
		require.NoError(t, err)
		assert.Nil(t, s.Items, "zero value without Initial")
		seen = append(seen, s)
		return nil
	})
	require.NoError(t, run(h, msg(1, 1)))
	require.NoError(t, run(h, msg(2, 1)))
	assert.NotSame(t, seen[0], seen[1])
}

// slowStore is a storage that copies values (Memory) and sleeps on each
// call, widening every read-modify-write window.
func slowStore() *recorder[counter] {
	r := newRecorder[counter]()
	r.delay = 50 * time.Microsecond
	return r
}

func TestNoLostUpdates(t *testing.T) {
	const goroutines, keys, total = 100, 10, 10_000
	store := slowStore()
	h := Strict(Options[counter]{Storage: store})(increment)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total / goroutines {
				assert.NoError(t, run(h, msg(int64((g+i)%keys+1), 1)))
			}
		}()
	}
	wg.Wait()
	sum := 0
	for e, err := range store.inner.Entries(context.Background()) {
		require.NoError(t, err)
		assert.Equal(t, total/keys, e.Value.Count, "key %s", e.Key)
		sum += e.Value.Count
	}
	assert.Equal(t, total, sum)
}

func TestFaultStormLosesNothing(t *testing.T) {
	const goroutines, keys, total = 50, 20, 10_000
	before := runtime.NumGoroutine()
	injected := errors.New("injected fault")
	store := newRecorder[counter]()
	var failures atomic.Int64
	store.fail = func(op, key string) error {
		if rand.IntN(10) == 0 {
			failures.Add(1)
			return injected
		}
		return nil
	}
	eng := newEngine(false, single(Options[counter]{Storage: store}))
	h := eng.middleware(increment)

	var ok [keys]atomic.Int64
	var failed atomic.Int64
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range total / goroutines {
				k := (g*7 + i) % keys
				switch err := run(h, msg(int64(k+1), 1)); {
				case err == nil:
					ok[k].Add(1)
				case errors.Is(err, injected):
					failed.Add(1)
				default:
					t.Errorf("unexpected error: %v", err)
				}
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(total), failed.Load()+sumOf(ok[:]))
	assert.Positive(t, failed.Load())
	assert.LessOrEqual(t, failed.Load(), failures.Load(), "every failed update saw an injected fault")
	for k := range keys {
		v, _, err := store.inner.Read(context.Background(), fmt.Sprint(k+1))
		require.NoError(t, err)
		assert.Equal(t, ok[k].Load(), int64(v.Count), "key %d: count equals successful updates", k)
	}
	entries, held := processLocks.size()
	assert.Zero(t, held, "every lock released")
	assert.LessOrEqual(t, entries, len(processLocks.shards)*(maxIdle+1), "idle entries are bounded")
	assert.True(t, settles(func() bool { return runtime.NumGoroutine() <= before }), "no goroutine left behind")
}

// settles polls cond for up to five seconds on this goroutine (testify's
// Eventually would add goroutines of its own).
func settles(cond func() bool) bool {
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func sumOf(xs []atomic.Int64) int64 {
	var s int64
	for i := range xs {
		s += xs[i].Load()
	}
	return s
}

func TestSameKeyNeverOverlapsDifferentKeysDo(t *testing.T) {
	var inside, maxInside atomic.Int32
	release := make(chan struct{})
	entered := make(chan int64, 4)
	h := Strict(Options[counter]{})(func(c *Context[counter]) error {
		n := inside.Add(1)
		defer inside.Add(-1)
		for {
			m := maxInside.Load()
			if n <= m || maxInside.CompareAndSwap(m, n) {
				break
			}
		}
		entered <- c.Update.Message.Chat.ID
		<-release
		return increment(c)
	})
	var wg sync.WaitGroup
	for _, chat := range []int64{1, 1, 2} {
		wg.Add(1)
		go func() { defer wg.Done(); assert.NoError(t, run(h, msg(chat, 1))) }()
	}
	// Chats 1 and 2 both get in while the second update of chat 1 waits.
	got := map[int64]bool{}
	for range 2 {
		select {
		case id := <-entered:
			got[id] = true
		case <-time.After(5 * time.Second):
			t.Fatal("different keys did not run in parallel")
		}
	}
	assert.Equal(t, map[int64]bool{1: true, 2: true}, got)
	select {
	case <-entered:
		t.Fatal("two updates of chat 1 ran at the same time")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	wg.Wait()
	assert.Equal(t, int32(2), maxInside.Load())
}

func TestCancelledContextStopsSlowStorage(t *testing.T) {
	rec := newRecorder[counter]()
	rec.delay = time.Hour
	h := Strict(Options[counter]{Storage: rec})(increment)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	start := time.Now()
	err := h(NewContext[counter](ctx, nil, msg(1, 1)))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Less(t, time.Since(start), 10*time.Second)
}

func TestCancelledContextStopsWaitingForLock(t *testing.T) {
	hold := make(chan struct{})
	entered := make(chan struct{})
	h := Strict(Options[counter]{})(func(c *Context[counter]) error {
		if c.Update.Message.Text == "hold" {
			close(entered)
			<-hold
		}
		return nil
	})
	first := msg(1, 1)
	first.Message.Text = "hold"
	go func() { _ = run(h, first) }()
	<-entered
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	err := h(NewContext[counter](ctx, nil, msg(1, 1)))
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, `"1"`)
	close(hold)
}
