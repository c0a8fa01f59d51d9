package session

// Regression tests for data lost in ordinary bot code, one per scenario
// of issue 8. Each is written the way a bot author would write the bot.

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// slowIncrement reads the count, lets other goroutines run, and writes
// it back: the window in which an unguarded second update loses a write.
func slowIncrement(c *Context[counter]) error {
	s, err := c.Session()
	if err != nil {
		return err
	}
	n := s.Count
	runtime.Gosched()
	time.Sleep(20 * time.Microsecond)
	s.Count = n + 1
	return nil
}

// hammer runs each handler n times at once on chat 1 and returns the
// count stored in store.
func hammer(t *testing.T, n int, read func() int, hs ...Handler[counter]) int {
	t.Helper()
	var wg sync.WaitGroup
	for _, h := range hs {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				assert.NoError(t, run(h, msg(1, 1)))
			}()
		}
	}
	wg.Wait()
	return read()
}

func readCount(t *testing.T, s StorageAdapter[counter], key string) func() int {
	return func() int {
		v, _, err := s.Read(context.Background(), key)
		require.NoError(t, err)
		return v.Count
	}
}

// plainStore is a store of a user's own with no Locker: the middleware
// falls back to the process-wide lock table.
type plainStore[T any] struct{ m *Memory[T] }

func (p plainStore[T]) Read(ctx context.Context, k string) (T, bool, error) { return p.m.Read(ctx, k) }
func (p plainStore[T]) Write(ctx context.Context, k string, v T) error      { return p.m.Write(ctx, k, v) }
func (p plainStore[T]) Delete(ctx context.Context, k string) error          { return p.m.Delete(ctx, k) }

func TestScenarioStrictAndLazyOverOneStoreLoseNothing(t *testing.T) {
	store := NewMemory[counter]()
	opts := Options[counter]{Storage: store}
	got := hammer(t, 200, readCount(t, store, "1"), Strict(opts)(slowIncrement), Lazy(opts)(slowIncrement))
	assert.Equal(t, 400, got)
}

func TestScenarioTwoStrictBuiltInTwoFilesLoseNothing(t *testing.T) {
	store := NewMemory[counter]()
	a := Strict(Options[counter]{Storage: store})(slowIncrement)
	b := Strict(Options[counter]{Storage: store})(slowIncrement)
	assert.Equal(t, 400, hammer(t, 200, readCount(t, store, "1"), a, b))
}

func TestScenarioFragmentBesideStrictOnOneStoreLoseNothing(t *testing.T) {
	store := NewMemory[counter]()
	type data struct{ C counter }
	frag := NewFragment("c", func(d *data) *counter { return &d.C }, Options[counter]{Storage: store})
	multi := Multi(Part[data](frag))(func(c *Context[data]) error {
		v, err := frag.Get(c)
		if err != nil {
			return err
		}
		n := v.Count
		runtime.Gosched()
		time.Sleep(20 * time.Microsecond)
		v.Count = n + 1
		return nil
	})
	strict := Strict(Options[counter]{Storage: store, Prefix: "c:"})(slowIncrement)
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(2)
		go func() { defer wg.Done(); assert.NoError(t, run(multi, msg(1, 1))) }()
		go func() { defer wg.Done(); assert.NoError(t, run(strict, msg(1, 1))) }()
	}
	wg.Wait()
	assert.Equal(t, 400, readCount(t, store, "c:1")())
}

func TestScenarioStoresWithoutLockerShareAProcessWideTable(t *testing.T) {
	t.Run("a user's own store", func(t *testing.T) {
		store := plainStore[counter]{NewMemory[counter]()}
		a := Strict(Options[counter]{Storage: store})(slowIncrement)
		b := Lazy(Options[counter]{Storage: store})(slowIncrement)
		assert.Equal(t, 400, hammer(t, 200, readCount(t, store, "1"), a, b))
	})
	t.Run("two Encoded wrappers of one byte store", func(t *testing.T) {
		raw := plainStore[[]byte]{NewMemory[[]byte]()}
		a := Strict(Options[counter]{Storage: Encoded[counter](raw, nil)})(slowIncrement)
		b := Strict(Options[counter]{Storage: Encoded[counter](raw, nil)})(slowIncrement)
		assert.Equal(t, 400, hammer(t, 200, readCount(t, Encoded[counter](raw, nil), "1"), a, b))
	})
}

func TestScenarioMultiFragmentsOnTwoStoresInOppositeOrderDoNotDeadlock(t *testing.T) {
	s1, s2 := NewMemory[counter](), plainStore[counter]{NewMemory[counter]()}
	type data struct{ A, B counter }
	// Same stored keys on both stores; the two middlewares list their
	// fragments in opposite orders.
	fa := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{Storage: s1, Prefix: "k"})
	fb := NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{Storage: s2, Prefix: "k"})
	ga := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{Storage: s1, Prefix: "k"})
	gb := NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{Storage: s2, Prefix: "k"})
	inc := func(c *Context[data]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.A.Count++
		runtime.Gosched()
		s.B.Count++
		return nil
	}
	h1 := Multi(Part[data](fa), Part[data](fb))(inc)
	h2 := Multi(Part[data](gb), Part[data](ga))(inc)
	done := make(chan struct{})
	go func() {
		defer close(done)
		var wg sync.WaitGroup
		for i := range 200 {
			h := h1
			if i%2 == 1 {
				h = h2
			}
			wg.Add(1)
			go func() { defer wg.Done(); assert.NoError(t, run(h, msg(1, 1))) }()
		}
		wg.Wait()
	}()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("deadlock")
	}
	assert.Equal(t, 200, readCount(t, s1, "k1")())
	assert.Equal(t, 200, readCount(t, s2, "k1")())
}

func TestScenarioCopiedContextWithDeadlineSavesItsChange(t *testing.T) {
	for name, mw := range map[string]func(Options[counter]) Middleware[counter]{"strict": Strict[counter], "lazy": Lazy[counter]} {
		t.Run(name, func(t *testing.T) {
			store := NewMemory[counter]()
			h := mw(Options[counter]{Storage: store})(func(c *Context[counter]) error {
				ctx, cancel := context.WithTimeout(c, time.Minute)
				defer cancel()
				c2 := *c
				c2.Context = ctx
				s, err := c2.Session()
				if err != nil {
					return err
				}
				s.Count++
				return nil
			})
			for range 3 {
				require.NoError(t, run(h, msg(1, 1)))
			}
			assert.Equal(t, 3, readCount(t, store, "1")())
		})
	}
}

func TestScenarioLazyCopyReleasesTheChatLock(t *testing.T) {
	store := NewMemory[counter]()
	h := Lazy(Options[counter]{Storage: store})(func(c *Context[counter]) error {
		c2 := *c
		s, err := c2.Session()
		if err != nil {
			return err
		}
		s.Count++
		return nil
	})
	done := make(chan error, 1)
	go func() {
		var err error
		for range 3 {
			if err = run(h, msg(1, 1)); err != nil {
				break
			}
		}
		done <- err
	}()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("the chat is stuck: a copy kept its lock")
	}
	assert.Equal(t, 3, readCount(t, store, "1")())
}

func TestScenarioSessionFromTwoGoroutinesOfOneHandler(t *testing.T) {
	rec := newRecorder[counter]()
	var mu sync.Mutex
	h := Lazy(Options[counter]{Storage: rec})(func(c *Context[counter]) error {
		var wg sync.WaitGroup
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				s, err := c.Session()
				if !assert.NoError(t, err) {
					return
				}
				mu.Lock()
				s.Count++
				mu.Unlock()
			}()
		}
		wg.Wait()
		return nil
	})
	require.NoError(t, run(h, msg(1, 1)))
	assert.Equal(t, []call[counter]{rd[counter]("1"), wr("1", counter{2})}, rec.take(), "one read, both changes saved")
}

func TestScenarioSessionUsedAfterTheHandlerReturned(t *testing.T) {
	type data struct{ C counter }
	frag := NewFragment("c", func(d *data) *counter { return &d.C }, Options[counter]{})
	for name, mw := range map[string]Middleware[counter]{
		"strict": Strict(Options[counter]{}), "lazy": Lazy(Options[counter]{}),
	} {
		t.Run(name, func(t *testing.T) {
			var kept *Context[counter]
			require.NoError(t, run(mw(func(c *Context[counter]) error { kept = c; return nil }), msg(1, 1)))
			_, err := kept.Session()
			assert.ErrorIs(t, err, ErrSessionClosed)
			assert.ErrorIs(t, kept.SetSession(counter{1}), ErrSessionClosed)
			assert.ErrorIs(t, kept.ClearSession(), ErrSessionClosed)
		})
	}
	t.Run("fragment", func(t *testing.T) {
		var kept *Context[data]
		require.NoError(t, run(Multi(Part[data](frag))(func(c *Context[data]) error { kept = c; return nil }), msg(1, 1)))
		_, err := frag.Get(kept)
		assert.ErrorIs(t, err, ErrSessionClosed)
		assert.ErrorIs(t, frag.Set(kept, counter{1}), ErrSessionClosed)
	})
}

// gobCodec is a Codec a bot might pick for speed.
type gobCodec struct{}

func (gobCodec) Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(v)
	return b.Bytes(), err
}
func (gobCodec) Unmarshal(data []byte, v any) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

type gobProfile struct {
	Name   string
	Tags   []string
	Secret string `json:"-"`
}

// lossy drops Note from its JSON.
type lossy struct {
	Count int
	Note  string
	Tags  []string
}

func (l lossy) MarshalJSON() ([]byte, error) { return json.Marshal(map[string]int{"count": l.Count}) }

// pointerJSON has its JSON methods on the pointer receiver only, so
// encoding/json uses them only where the value is addressable.
type pointerJSON struct{ N int }

func (p *pointerJSON) MarshalJSON() ([]byte, error) {
	return []byte(fmt.Sprintf(`{"value":%d}`, p.N)), nil
}
func (p *pointerJSON) UnmarshalJSON(b []byte) error {
	var v struct {
		V int `json:"value"`
	}
	err := json.Unmarshal(b, &v)
	p.N = v.V
	return err
}

type withPointerJSON struct {
	P    pointerJSON
	Tags []string
}

type unexportedBesideSlice struct {
	Items []string
	count int
}

// changeAndReadBack runs an update that applies change, then an update
// that returns the session it reads.
func changeAndReadBack[S any](t *testing.T, store StorageAdapter[S], change func(*S)) S {
	t.Helper()
	mw := Strict(Options[S]{Storage: store})
	require.NoError(t, run(mw(func(c *Context[S]) error {
		s, err := c.Session()
		if err == nil {
			change(s)
		}
		return err
	}), msg(1, 1)))
	var got S
	require.NoError(t, run(mw(func(c *Context[S]) error {
		s, err := c.Session()
		if err == nil {
			got = *s
		}
		return err
	}), msg(1, 1)))
	return got
}

func TestScenarioChangeDetectionByWhatTheStoreKeeps(t *testing.T) {
	t.Run("json:\"-\" field under a gob codec", func(t *testing.T) {
		store := Encoded[gobProfile](NewMemory[[]byte](), gobCodec{})
		got := changeAndReadBack(t, store, func(p *gobProfile) { p.Secret = "s3cret" })
		assert.Equal(t, "s3cret", got.Secret)
	})
	t.Run("pointer-receiver MarshalJSON in Memory", func(t *testing.T) {
		got := changeAndReadBack(t, NewMemory[withPointerJSON](), func(w *withPointerJSON) { w.P.N = 7 })
		assert.Equal(t, 7, got.P.N)
	})
	t.Run("pointer-receiver MarshalJSON in a JSON byte store", func(t *testing.T) {
		got := changeAndReadBack(t, Encoded[withPointerJSON](NewMemory[[]byte](), nil), func(w *withPointerJSON) { w.P.N = 7 })
		assert.Equal(t, 7, got.P.N)
	})
}

// TestScenarioMemoryGivesWhatProductionGives: Memory used to keep Go
// values by deep copy, so a bot tested on it saw an int where Redis gives
// back a float64, and kept unexported fields Redis drops: the test passed
// and production panicked on a type assertion. Memory now keeps the
// encoding, so each value below comes back from Memory exactly as from a
// byte store.
func TestScenarioMemoryGivesWhatProductionGives(t *testing.T) {
	type anyMap struct{ M map[string]any }
	check := func(t *testing.T, name string, onMemory, onBytes any) {
		t.Helper()
		assert.Equal(t, onBytes, onMemory, "%s: Memory gives what a byte store gives", name)
	}
	{
		change := func(m *anyMap) { m.M = map[string]any{"step": 2} }
		mem := changeAndReadBack(t, NewMemory[anyMap](), change)
		byt := changeAndReadBack(t, Encoded[anyMap](NewMemory[[]byte](), nil), change)
		check(t, "an int in a map[string]any", mem, byt)
		_, isInt := mem.M["step"].(int)
		assert.False(t, isInt, "the int comes back a float64, on Memory too")
		assert.Equal(t, 2.0, mem.M["step"])
	}
	{
		change := func(u *unexportedBesideSlice) { u.count = 3; u.Items = []string{"a"} }
		mem := changeAndReadBack(t, NewMemory[unexportedBesideSlice](), change)
		byt := changeAndReadBack(t, Encoded[unexportedBesideSlice](NewMemory[[]byte](), nil), change)
		check(t, "an unexported field", mem, byt)
		assert.Zero(t, mem.count, "not kept, on Memory too")
	}
	{
		change := func(l *lossy) { l.Count, l.Note = 4, "dropped by MarshalJSON" }
		mem := changeAndReadBack(t, NewMemory[lossy](), change)
		byt := changeAndReadBack(t, Encoded[lossy](NewMemory[[]byte](), nil), change)
		check(t, "a lossy MarshalJSON", mem, byt)
		assert.Empty(t, mem.Note)
	}
}

// readOnly is a handler that uses the session without changing it.
func readOnly(c *Context[counter]) error {
	_, err := c.Session()
	return err
}

func TestScenarioChatTalkingEvery20MinutesKeepsItsSessionUnder1hTTL(t *testing.T) {
	for name, newStore := range map[string]func(clock func() time.Time) StorageAdapter[counter]{
		"memory": func(clock func() time.Time) StorageAdapter[counter] {
			return newTTLMemory[counter](time.Hour, clock)
		},
		"enhance": func(clock func() time.Time) StorageAdapter[counter] {
			return mustEnhance[counter](t, NewMemory[[]byte](), EnhanceOptions{TTL: time.Hour, Clock: clock})
		},
	} {
		t.Run(name, func(t *testing.T) {
			clock := newTestClock()
			store := newStore(clock.Now)
			require.NoError(t, store.Write(context.Background(), "1", counter{5}))
			h := Strict(Options[counter]{Storage: store})(readOnly)
			for range 9 { // three hours of a chat that keeps talking
				clock.Advance(20 * time.Minute)
				require.NoError(t, run(h, msg(1, 1)))
			}
			assert.Equal(t, 5, readCount(t, store, "1")(), "the session is alive")
		})
	}
}

func TestScenarioDataWithoutExpiryGainsOneOnFirstUse(t *testing.T) {
	clock := newTestClock()
	raw := NewMemory[[]byte]()
	require.NoError(t, raw.Write(context.Background(), "1", []byte(`{"__d":{"Count":4}}`))) // grammY, no TTL
	store := mustEnhance[counter](t, raw, EnhanceOptions{TTL: time.Hour, Clock: clock.Now})
	require.NoError(t, run(Strict(Options[counter]{Storage: store})(readOnly), msg(1, 1)))
	b, _, err := raw.Read(context.Background(), "1")
	require.NoError(t, err)
	assert.JSONEq(t, fmt.Sprintf(`{"__d":{"Count":4},"e":%d}`, clock.Now().Add(time.Hour).UnixMilli()), string(b))

	clock.Advance(time.Hour)
	_, found, err := store.Read(context.Background(), "1")
	require.NoError(t, err)
	assert.False(t, found, "and expires like any other")
}

func TestScenarioTTLBoundaryIsTheSameInMemoryAndEnhance(t *testing.T) {
	const ttl = time.Hour
	clock := newTestClock()
	stores := map[string]StorageAdapter[counter]{
		"memory":  newTTLMemory[counter](ttl, clock.Now),
		"enhance": mustEnhance[counter](t, NewMemory[[]byte](), EnhanceOptions{TTL: ttl, Clock: clock.Now}),
	}
	for _, s := range stores {
		require.NoError(t, s.Write(context.Background(), "k", counter{1}))
	}
	clock.Advance(ttl - time.Millisecond)
	for name, s := range stores {
		_, found, err := s.Read(context.Background(), "k")
		require.NoError(t, err)
		assert.True(t, found, "%s: alive a millisecond before TTL", name)
	}
	clock.Advance(time.Millisecond)
	for name, s := range stores {
		_, found, err := s.Read(context.Background(), "k")
		require.NoError(t, err)
		assert.False(t, found, "%s: expired at exactly TTL", name)
	}
}

func TestScenarioRefreshCostsAtMostOneWritePerHalfTTL(t *testing.T) {
	clock := newTestClock()
	raw := newRecorder[[]byte]()
	store := mustEnhance[counter](t, raw, EnhanceOptions{TTL: time.Hour, Clock: clock.Now})
	require.NoError(t, store.Write(context.Background(), "1", counter{1}))
	raw.take()
	h := Strict(Options[counter]{Storage: store})(readOnly)
	for range 120 { // an update a minute for two hours
		clock.Advance(time.Minute)
		require.NoError(t, run(h, msg(1, 1)))
	}
	writes := 0
	for _, c := range raw.take() {
		if c.Op == "write" {
			writes++
		}
	}
	assert.Positive(t, writes, "the session was refreshed")
	assert.LessOrEqual(t, writes, 4, "at most one write per TTL/2 over two hours")
	assert.Equal(t, 1, readCount(t, store, "1")())
}
