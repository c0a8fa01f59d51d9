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
	rec := newRecorder()
	opts := Options[cart]{
		Storage: rec,
		Initial: func() cart { return cart{Items: map[string]int{}} },
	}
	steps := []struct {
		name    string
		handler Handler[cart]
		calls   []call
	}{
		{"initial value is read, untouched, not written", func(c *Context[cart]) error {
			s, err := c.Session()
			require.NoError(t, err)
			assert.Equal(t, cart{Items: map[string]int{}}, *s)
			return nil
		}, []call{rd("7")}},
		{"mutate writes", func(c *Context[cart]) error {
			s, _ := c.Session()
			s.Items["pizza"] = 1
			return nil
		}, []call{rd("7"), wr("7", `{"Items":{"pizza":1},"Notes":null}`)}},
		{"add data writes", func(c *Context[cart]) error {
			s, _ := c.Session()
			assert.Equal(t, 1, s.Items["pizza"])
			s.Items["cola"] = 2
			s.Notes = append(s.Notes, "no onions")
			return nil
		}, []call{rd("7"), wr("7", `{"Items":{"cola":2,"pizza":1},"Notes":["no onions"]}`)}},
		{"unchanged is not written", func(c *Context[cart]) error {
			_, err := c.Session()
			return err
		}, []call{rd("7")}},
		{"clear deletes once", func(c *Context[cart]) error {
			return c.ClearSession()
		}, []call{rd("7"), del("7")}},
		{"re-initialise after clear", func(c *Context[cart]) error {
			s, _ := c.Session()
			assert.Empty(t, s.Items, "a cleared session starts from the initial value")
			s.Items["tea"] = 1
			return nil
		}, []call{rd("7"), wr("7", `{"Items":{"tea":1},"Notes":null}`)}},
	}
	for _, step := range steps {
		require.NoError(t, run(with(t, opts, step.handler), msg(7, 1)), step.name)
		assert.Equal(t, step.calls, rec.take(), step.name)
	}
}

func TestUnchangedValueIsNotWritten(t *testing.T) {
	rec := newRecorder()
	opts := Options[cart]{Storage: rec}
	require.NoError(t, run(with(t, opts, func(c *Context[cart]) error {
		s, err := c.Session()
		s.Items = map[string]int{"a": 1}
		return err
	}), msg(1, 1)))
	rec.take()
	h := with(t, opts, func(c *Context[cart]) error {
		s, err := c.Session()
		require.NoError(t, err)
		s.Items["a"] = 1 // same value written again: no change
		s.Notes = nil
		return nil
	})
	require.NoError(t, run(h, msg(1, 1)))
	assert.Equal(t, []call{rd("1")}, rec.take())

	// Untouched initial data of a new session: no write either.
	require.NoError(t, run(with(t, opts, func(c *Context[cart]) error {
		_, err := c.Session()
		return err
	}), msg(2, 1)))
	assert.Equal(t, []call{rd("2")}, rec.take())
}

// TestChangeIsDetectedByTheEncoding: a session is unchanged when its
// encoding equals the stored bytes, so a value stored in another form (by
// another program, or an older release) is rewritten once in the codec's
// form, and then left alone.
func TestChangeIsDetectedByTheEncoding(t *testing.T) {
	rec := newRecorder()
	rec.put("1", `{ "Count" : 3 }`)
	h := with(t, Options[counter]{Storage: rec}, func(c *Context[counter]) error {
		s, err := c.Session()
		assert.Equal(t, 3, s.Count)
		return err
	})
	require.NoError(t, run(h, msg(1, 1)))
	assert.Equal(t, []call{rd("1"), wr("1", `{"Count":3}`)}, rec.take(), "rewritten in the codec's form")
	require.NoError(t, run(h, msg(1, 1)))
	assert.Equal(t, []call{rd("1")}, rec.take(), "then unchanged")

	// A change and its undoing in one update: the encoding is as stored.
	require.NoError(t, run(with(t, Options[counter]{Storage: rec}, func(c *Context[counter]) error {
		s, err := c.Session()
		s.Count++
		s.Count--
		return err
	}), msg(1, 1)))
	assert.Equal(t, []call{rd("1")}, rec.take())
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
			rec := newRecorder()
			const before = `{"Items":{"pizza":1},"Notes":["a"]}`
			rec.put("5", before)

			h := with(t, Options[cart]{Storage: rec}, func(c *Context[cart]) error {
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
			assert.Equal(t, []call{rd("5")}, rec.take(), "no write, no delete")
			after, ok := rec.get("5")
			require.True(t, ok)
			assert.Equal(t, before, after, "stored value byte-identical")

			// The lock was released: the next update of the same key runs.
			done := make(chan error, 1)
			go func() {
				done <- run(with(t, Options[cart]{Storage: rec}, func(*Context[cart]) error { return nil }), msg(5, 1))
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
	h := with(t, Options[counter]{}, func(c *Context[counter]) error {
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
	rec := newRecorder()
	broken := errors.New("disk on fire")
	rec.fail = func(op, key string) error {
		if op == "read" {
			return broken
		}
		return nil
	}
	called := false
	err := run(with(t, Options[counter]{Storage: rec}, func(*Context[counter]) error {
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
			rec := newRecorder()
			rec.put("3", `{"Count":1}`)
			rec.fail = func(o, key string) error {
				if o == op {
					return broken
				}
				return nil
			}
			err := run(with(t, Options[counter]{Storage: rec}, func(c *Context[counter]) error {
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
		{"custom", func(Update) (string, bool) { return "", false }, "custom key function"},
	} {
		for mode, isLazy := range strictAndLazy {
			t.Run(fmt.Sprintf("%s %s", tc.name, mode), func(t *testing.T) {
				rec := newRecorder()
				ran := false
				err := run(with(t, Options[counter]{Storage: rec, Key: tc.key, Lazy: isLazy}, func(c *Context[counter]) error {
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
	clock := newTestClock()
	rec := newRecorder()
	exp := newExpRecorder(clock.Now)
	for name, tc := range map[string]struct {
		store Store
		ttl   time.Duration
		calls []call
	}{
		"plain": {rec, 0, []call{
			rd("user-424242"), wr("user-424242", `{"Count":1}`),
			rd("user-424242"),
			rd("user-424242"), del("user-424242"),
		}},
		"expirer": {exp, time.Hour, []call{
			rd("user-424242"), wrTTL("user-424242", `{"Count":1}`, time.Hour),
			rd("user-424242"), touch("user-424242", time.Hour),
			rd("user-424242"), del("user-424242"),
		}},
	} {
		t.Run(name, func(t *testing.T) {
			opts := Options[counter]{Storage: tc.store, Prefix: "user-", Key: ByUser, TTL: tc.ttl, Clock: clock.Now}
			sess := mustNew(t, opts)
			u := msg(1, 424242)
			k, ok := sess.Key(Update{Update: &u})
			assert.True(t, ok)
			assert.Equal(t, "424242", k, "Session.Key is before the prefix")
			require.NoError(t, run(sess.Middleware(increment), msg(1, 424242)))
			require.NoError(t, run(sess.Middleware(func(c *Context[counter]) error { _, err := c.Session(); return err }), msg(1, 424242)))
			require.NoError(t, run(sess.Middleware(func(c *Context[counter]) error {
				key, ok := c.SessionKey()
				assert.True(t, ok)
				assert.Equal(t, "424242", key, "the handler sees the key before the prefix")
				return c.ClearSession()
			}), msg(1, 424242)))
			var got []call
			switch s := tc.store.(type) {
			case *recorder:
				got = s.take()
			case expRecorder:
				got = s.take()
			}
			assert.Equal(t, tc.calls, got)
		})
	}
}

func TestSessionWithoutMiddleware(t *testing.T) {
	c := NewContext[counter](context.Background(), nil, msg(1, 1))
	_, err := c.Session()
	assert.ErrorIs(t, err, ErrNoMiddleware)
	assert.ErrorIs(t, c.SetSession(counter{}), ErrNoMiddleware)
	assert.ErrorIs(t, c.ClearSession(), ErrNoMiddleware)
	_, ok := c.SessionKey()
	assert.False(t, ok)
	var bare Context[counter]
	_, err = bare.Session()
	assert.ErrorIs(t, err, ErrNoMiddleware, "a zero Context too")
}

func TestContextIsSingleUse(t *testing.T) {
	h := with(t, Options[counter]{}, increment)
	// A Context built by hand: no session state yet, no context.Context.
	c := &Context[counter]{Update: msg(1, 1)}
	require.NoError(t, h(c), "a nil context.Context means Background")
	assert.ErrorIs(t, h(c), errReused)
}

func TestZeroValueWithoutInitialAndFreshValuePerSession(t *testing.T) {
	var seen []*cart
	h := with(t, Options[cart]{}, func(c *Context[cart]) error {
		s, err := c.Session()
		require.NoError(t, err)
		assert.Nil(t, s.Items, "zero value without Initial")
		seen = append(seen, s)
		return nil
	})
	require.NoError(t, run(h, msg(1, 1)))
	require.NoError(t, run(h, msg(2, 1)))
	assert.NotSame(t, seen[0], seen[1])

	// Initial is called once per new session: no two share its maps.
	calls := 0
	h = with(t, Options[cart]{Initial: func() cart { calls++; return cart{Items: map[string]int{}} }}, func(c *Context[cart]) error {
		s, err := c.Session()
		if err == nil {
			s.Items[fmt.Sprint(c.Update.Message.Chat.ID)]++
			assert.Len(t, s.Items, 1, "nothing of another chat's session")
		}
		return err
	})
	require.NoError(t, run(h, msg(1, 1)))
	require.NoError(t, run(h, msg(2, 1)))
	assert.Equal(t, 2, calls)
}

// slowStore is a store that sleeps on each call, widening every
// read-modify-write window.
func slowStore() *recorder {
	r := newRecorder()
	r.delay = 50 * time.Microsecond
	return r
}

func TestNoLostUpdates(t *testing.T) {
	const goroutines, keys, total = 100, 10, 10_000
	store := slowStore()
	h := with(t, Options[counter]{Storage: store}, increment)
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
	for k := 1; k <= keys; k++ {
		n := countIn(t, store.inner, fmt.Sprint(k))
		assert.Equal(t, total/keys, n, "key %d", k)
		sum += n
	}
	assert.Equal(t, total, sum)
}

func TestFaultStormLosesNothing(t *testing.T) {
	const goroutines, keys, total = 50, 20, 10_000
	before := runtime.NumGoroutine()
	injected := errors.New("injected fault")
	store := newRecorder()
	var failures atomic.Int64
	store.fail = func(op, key string) error {
		if rand.IntN(10) == 0 {
			failures.Add(1)
			return injected
		}
		return nil
	}
	h := with(t, Options[counter]{Storage: store}, increment)

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
		assert.Equal(t, ok[k].Load(), int64(countIn(t, store.inner, fmt.Sprint(k+1))), "key %d: count equals successful updates", k)
	}
	entries, held := tableOf(store).size()
	assert.Zero(t, held, "every lock released")
	assert.LessOrEqual(t, entries, len(tableOf(store).shards)*(maxIdle+1), "idle entries are bounded")
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
	store := NewMemory()
	h := with(t, Options[counter]{Storage: store}, func(c *Context[counter]) error {
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
	// The second update of chat 1 is queued on the key's lock, not inside.
	require.True(t, settles(func() bool { return waitingIn(store) == 1 }), "the second update of chat 1 waits for the lock")
	select {
	case <-entered:
		t.Fatal("two updates of chat 1 ran at the same time")
	default:
	}
	close(release)
	wg.Wait()
	assert.Equal(t, int32(2), maxInside.Load())
}

func TestCancelledContextStopsSlowStorage(t *testing.T) {
	rec := newRecorder()
	rec.delay = time.Hour
	h := with(t, Options[counter]{Storage: rec}, increment)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- h(NewContext[counter](ctx, nil, msg(1, 1))) }()
	require.True(t, settles(func() bool { return len(rec.ops()) == 1 }), "the read started")
	cancel()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(10 * time.Second):
		t.Fatal("a cancelled update still waits for its storage call")
	}
}

func TestCancelledContextStopsWaitingForLock(t *testing.T) {
	hold := make(chan struct{})
	entered := make(chan struct{})
	h := with(t, Options[counter]{}, func(c *Context[counter]) error {
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
