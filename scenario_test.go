package session

// Regression tests for data lost in ordinary bot code, one per scenario.
// Each is written the way a bot author would write the bot.

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
// count read.
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

func TestScenarioStrictAndLazyOverOneStoreLoseNothing(t *testing.T) {
	store := NewMemory()
	opts := Options[counter]{Storage: store}
	got := hammer(t, 200, readCount(t, store, "1"), with(t, opts, slowIncrement), with(t, lazy(opts), slowIncrement))
	assert.Equal(t, 400, got)
}

func TestScenarioTwoSessionsBuiltInTwoFilesLoseNothing(t *testing.T) {
	store := NewMemory()
	a := with(t, Options[counter]{Storage: store}, slowIncrement)
	b := with(t, Options[counter]{Storage: store}, slowIncrement)
	assert.Equal(t, 400, hammer(t, 200, readCount(t, store, "1"), a, b))
}

func TestScenarioFragmentBesideStrictOnOneStoreLoseNothing(t *testing.T) {
	store := NewMemory()
	type data struct{ C counter }
	frag := NewFragment("c", func(d *data) *counter { return &d.C }, Options[counter]{Storage: store})
	multi := mustMulti(t, Options[data]{}, func(c *Context[data]) error {
		v, err := frag.Get(c)
		if err != nil {
			return err
		}
		n := v.Count
		runtime.Gosched()
		time.Sleep(20 * time.Microsecond)
		v.Count = n + 1
		return nil
	}, frag)
	strict := with(t, Options[counter]{Storage: store, Prefix: "c:"}, slowIncrement)
	var wg sync.WaitGroup
	for range 200 {
		wg.Add(2)
		go func() { defer wg.Done(); assert.NoError(t, run(multi, msg(1, 1))) }()
		go func() { defer wg.Done(); assert.NoError(t, run(strict, msg(1, 1))) }()
	}
	wg.Wait()
	assert.Equal(t, 400, countIn(t, store, "c:1"))
}

// TestScenarioStoresWithoutLockerShareAProcessWideTable: every session
// over one store without a Locker excludes the others, however it reaches
// the store: directly, or through wrappers that follow the Unwrap
// convention (each wrapper a value of its own, as two packages of a bot
// would build them).
func TestScenarioStoresWithoutLockerShareAProcessWideTable(t *testing.T) {
	t.Run("a user's own store", func(t *testing.T) {
		store := newPlainStore()
		a := with(t, Options[counter]{Storage: store}, slowIncrement)
		b := with(t, Options[counter]{Storage: store, Lazy: true}, slowIncrement)
		assert.Equal(t, 400, hammer(t, 200, readCount(t, store, "1"), a, b))
	})
	t.Run("two logging wrappers of one store", func(t *testing.T) {
		base := newPlainStore()
		a := with(t, Options[counter]{Storage: &logStore{base: base}}, slowIncrement)
		b := with(t, Options[counter]{Storage: &logStore{base: base}}, slowIncrement)
		assert.Equal(t, 400, hammer(t, 200, readCount(t, base, "1"), a, b))
	})
	t.Run("a wrapper and its base", func(t *testing.T) {
		base := NewMemory()
		a := with(t, Options[counter]{Storage: &logStore{base: base}}, slowIncrement)
		b := with(t, Options[counter]{Storage: base}, slowIncrement)
		assert.Equal(t, 400, hammer(t, 200, readCount(t, base, "1"), a, b))
	})
}

func TestScenarioMultiFragmentsOnTwoStoresInOppositeOrderDoNotDeadlock(t *testing.T) {
	s1, s2 := NewMemory(), newPlainStore()
	type data struct{ A, B counter }
	// Same stored keys on both stores; the two sessions list their
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
	h1 := mustMulti(t, Options[data]{}, inc, fa, fb)
	h2 := mustMulti(t, Options[data]{}, inc, gb, ga)
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
	assert.Equal(t, 200, countIn(t, s1, "k1"))
	assert.Equal(t, 200, countIn(t, s2, "k1"))
}

func TestScenarioCopiedContextWithDeadlineSavesItsChange(t *testing.T) {
	for name, isLazy := range strictAndLazy {
		t.Run(name, func(t *testing.T) {
			store := NewMemory()
			h := with(t, Options[counter]{Storage: store, Lazy: isLazy}, func(c *Context[counter]) error {
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
			assert.Equal(t, 3, countIn(t, store, "1"))
		})
	}
}

func TestScenarioLazyCopyReleasesTheChatLock(t *testing.T) {
	store := NewMemory()
	h := with(t, Options[counter]{Storage: store, Lazy: true}, func(c *Context[counter]) error {
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
	assert.Equal(t, 3, countIn(t, store, "1"))
}

func TestScenarioSessionFromTwoGoroutinesOfOneHandler(t *testing.T) {
	rec := newRecorder()
	var mu sync.Mutex
	h := with(t, Options[counter]{Storage: rec, Lazy: true}, func(c *Context[counter]) error {
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
	assert.Equal(t, []call{rd("1"), wr("1", `{"Count":2}`)}, rec.take(), "one read, both changes saved")
}

func TestScenarioSessionUsedAfterTheHandlerReturned(t *testing.T) {
	type data struct{ C counter }
	frag := NewFragment("c", func(d *data) *counter { return &d.C }, Options[counter]{})
	for name, isLazy := range strictAndLazy {
		t.Run(name, func(t *testing.T) {
			var kept *Context[counter]
			require.NoError(t, run(with(t, Options[counter]{Lazy: isLazy}, func(c *Context[counter]) error { kept = c; return nil }), msg(1, 1)))
			_, err := kept.Session()
			assert.ErrorIs(t, err, ErrSessionClosed)
			assert.ErrorIs(t, kept.SetSession(counter{1}), ErrSessionClosed)
			assert.ErrorIs(t, kept.ClearSession(), ErrSessionClosed)
			copied := *kept
			_, err = copied.Session()
			assert.ErrorIs(t, err, ErrSessionClosed, "a copy shares the closed state")
		})
	}
	t.Run("after an error", func(t *testing.T) {
		var kept *Context[counter]
		_ = run(with(t, Options[counter]{}, func(c *Context[counter]) error { kept = c; return fmt.Errorf("failed") }), msg(1, 1))
		_, err := kept.Session()
		assert.ErrorIs(t, err, ErrSessionClosed)
	})
	t.Run("fragment", func(t *testing.T) {
		var kept *Context[data]
		require.NoError(t, run(mustMulti(t, Options[data]{}, func(c *Context[data]) error { kept = c; return nil }, frag), msg(1, 1)))
		_, err := frag.Get(kept)
		assert.ErrorIs(t, err, ErrSessionClosed)
		assert.ErrorIs(t, frag.Set(kept, counter{1}), ErrSessionClosed)
		assert.ErrorIs(t, frag.Clear(kept), ErrSessionClosed)
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
func changeAndReadBack[S any](t *testing.T, opts Options[S], change func(*S)) S {
	t.Helper()
	sess := mustNew(t, opts)
	require.NoError(t, run(sess.Middleware(func(c *Context[S]) error {
		s, err := c.Session()
		if err == nil {
			change(s)
		}
		return err
	}), msg(1, 1)))
	var got S
	require.NoError(t, run(sess.Middleware(func(c *Context[S]) error {
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
		got := changeAndReadBack(t, Options[gobProfile]{Codec: gobCodec{}}, func(p *gobProfile) { p.Secret = "s3cret" })
		assert.Equal(t, "s3cret", got.Secret)
	})
	t.Run("pointer-receiver MarshalJSON in Memory", func(t *testing.T) {
		got := changeAndReadBack(t, Options[withPointerJSON]{}, func(w *withPointerJSON) { w.P.N = 7 })
		assert.Equal(t, 7, got.P.N)
	})
	t.Run("pointer-receiver MarshalJSON in a byte store", func(t *testing.T) {
		store := newPlainStore()
		got := changeAndReadBack(t, Options[withPointerJSON]{Storage: store}, func(w *withPointerJSON) { w.P.N = 7 })
		assert.Equal(t, 7, got.P.N)
		raw, _ := rawOf(t, store, "1")
		assert.Equal(t, `{"P":{"value":7},"Tags":null}`, raw, "stored through the pointer method")
	})
	t.Run("the JSON codec named explicitly is the default", func(t *testing.T) {
		store := newPlainStore()
		got := changeAndReadBack(t, Options[counter]{Storage: store, Codec: JSON{}}, func(c *counter) { c.Count = 3 })
		assert.Equal(t, 3, got.Count)
		raw, _ := rawOf(t, store, "1")
		assert.Equal(t, `{"Count":3}`, raw)
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
		change := func(m *anyMap) { m.M = map[string]any{"step": 2, "list": []any{1, "two"}, "nil": nil} }
		mem := changeAndReadBack(t, Options[anyMap]{}, change)
		byt := changeAndReadBack(t, Options[anyMap]{Storage: newPlainStore()}, change)
		check(t, "an int in a map[string]any", mem, byt)
		_, isInt := mem.M["step"].(int)
		assert.False(t, isInt, "the int comes back a float64, on Memory too")
		assert.Equal(t, map[string]any{"step": 2.0, "list": []any{1.0, "two"}, "nil": nil}, mem.M)
	}
	{
		change := func(u *unexportedBesideSlice) { u.count = 3; u.Items = []string{"a"} }
		mem := changeAndReadBack(t, Options[unexportedBesideSlice]{}, change)
		byt := changeAndReadBack(t, Options[unexportedBesideSlice]{Storage: newPlainStore()}, change)
		check(t, "an unexported field", mem, byt)
		assert.Zero(t, mem.count, "not kept, on Memory too")
		assert.Equal(t, []string{"a"}, mem.Items)
	}
	{
		change := func(l *lossy) { l.Count, l.Note = 4, "dropped by MarshalJSON" }
		mem := changeAndReadBack(t, Options[lossy]{}, change)
		byt := changeAndReadBack(t, Options[lossy]{Storage: newPlainStore()}, change)
		check(t, "a lossy MarshalJSON", mem, byt)
		assert.Empty(t, mem.Note)
	}
	{
		type apart struct {
			A, B []int
			M, N map[string]int
		}
		change := func(v *apart) { v.B, v.N = []int{}, map[string]int{} }
		mem := changeAndReadBack(t, Options[apart]{}, change)
		byt := changeAndReadBack(t, Options[apart]{Storage: newPlainStore()}, change)
		check(t, "nil and empty", mem, byt)
		assert.Nil(t, mem.A)
		assert.NotNil(t, mem.B)
		assert.Nil(t, mem.M)
		assert.NotNil(t, mem.N)
	}
	{
		at := time.Date(2026, 1, 2, 3, 4, 5, 6, time.FixedZone("X", 3600))
		type when struct{ At time.Time }
		change := func(w *when) { w.At = at }
		mem := changeAndReadBack(t, Options[when]{}, change)
		byt := changeAndReadBack(t, Options[when]{Storage: newPlainStore()}, change)
		assert.True(t, mem.At.Equal(byt.At), "a time.Time keeps its instant on both")
		assert.True(t, mem.At.Equal(at))
	}
}

// readOnly is a handler that uses the session without changing it.
func readOnly(c *Context[counter]) error {
	_, err := c.Session()
	return err
}

// ttlStores are the two ways a session TTL is kept: natively by a store
// that is an Expirer (Memory here; Redis, PostgreSQL, bbolt alike), and in
// grammY's envelope by any other store. Both can list, so Entries shows
// what is alive without using it.
func ttlStores(clock *testClock) map[string]Store {
	return map[string]Store{
		"native":   NewMemory(MemoryOptions{Clock: clock.Now}),
		"envelope": listStore{newPlainStore(MemoryOptions{Clock: clock.Now})},
	}
}

// alive reports whether sess has a live session under key, without using
// it (Entries makes no commit).
func alive[S any](t *testing.T, sess *Session[S], key string) bool {
	t.Helper()
	for e, err := range sess.Entries(context.Background()) {
		require.NoError(t, err)
		if e.Key == key {
			return true
		}
	}
	return false
}

func TestScenarioChatTalkingEvery20MinutesKeepsItsSessionUnder1hTTL(t *testing.T) {
	for name := range ttlStores(newTestClock()) {
		t.Run(name, func(t *testing.T) {
			clock := newTestClock()
			store := ttlStores(clock)[name]
			sess := mustNew(t, Options[counter]{Storage: store, TTL: time.Hour, Clock: clock.Now})
			require.NoError(t, run(sess.Middleware(func(c *Context[counter]) error { return c.SetSession(counter{5}) }), msg(1, 1)))
			h := sess.Middleware(readOnly)
			for range 9 { // three hours of a chat that keeps talking, never changing its session
				clock.Advance(20 * time.Minute)
				require.NoError(t, run(h, msg(1, 1)))
			}
			assert.True(t, alive(t, sess, "1"), "the session is alive")
			assert.Equal(t, 5, countIn(t, store, "1"))
		})
	}
}

// TestScenarioTTLIsIdleTimeNatively: with a store that expires keys
// itself, a session lives exactly TTL after the last update that used
// it, read or changed: every unchanged use restarts its expiry (a touch,
// folded into the commit), and nothing is kept in the data.
func TestScenarioTTLIsIdleTimeNatively(t *testing.T) {
	const ttl = 100 * time.Second
	clock := newTestClock()
	store := newExpRecorder(clock.Now)
	mem := store.inner
	sess := mustNew(t, Options[counter]{Storage: store, TTL: ttl, Clock: clock.Now})
	require.NoError(t, run(sess.Middleware(increment), msg(1, 1))) // changed at 0
	clock.Advance(49 * time.Second)
	require.NoError(t, run(sess.Middleware(readOnly), msg(1, 1))) // used, unchanged, at 49s
	assert.Equal(t, []call{rd("1"), wrTTL("1", `{"Count":1}`, ttl), rd("1"), touch("1", ttl)}, store.take())
	raw, _ := rawOf(t, mem, "1")
	assert.Equal(t, `{"Count":1}`, raw, "no envelope: the store keeps the expiry")

	clock.Advance(ttl - time.Millisecond)
	_, found := rawOf(t, mem, "1")
	assert.True(t, found, "alive just before TTL after the last use")
	clock.Advance(time.Millisecond)
	_, found = rawOf(t, mem, "1")
	assert.False(t, found, "gone exactly TTL after the last use")

	// An update after that starts from the initial value, and a session
	// that was never stored is not touched.
	require.NoError(t, run(sess.Middleware(readOnly), msg(1, 1)))
	assert.Equal(t, []call{rd("1")}, store.take())
}

// TestScenarioTTLIsIdleTimeInTheEnvelope: a store without native expiry
// keeps the expiry in grammY's envelope ("e"), written as 1.5×TTL from
// the write and pushed out only once less than TTL is left, so a chat
// that only reads costs at most one extra write per TTL/2. A session
// lives at least TTL after its last use and is gone 1.5×TTL after it at
// the latest.
func TestScenarioTTLIsIdleTimeInTheEnvelope(t *testing.T) {
	const ttl = 100 * time.Second
	start := newTestClock().Now()
	for _, tc := range []struct {
		name      string
		lastUse   time.Duration // an unchanged use after the write at 0
		rewritten bool          // the use pushed the expiry out
		gone      time.Duration // when it is gone
	}{
		// At 49s, 101s are left of the 150s: no write, and the
		// session is still there at 49+99s, gone by 49+150s.
		{"used at 49s", 49 * time.Second, false, 150 * time.Second},
		// At 51s only 99s are left: rewritten to expire at 51+150s.
		{"used at 51s", 51 * time.Second, true, 201 * time.Second},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newTestClock()
			rec := newRecorder(MemoryOptions{Clock: clock.Now})
			store := listStore{plainStore{rec.inner}}
			sess := mustNew(t, Options[counter]{Storage: rec, TTL: ttl, Clock: clock.Now})
			view := mustNew(t, Options[counter]{Storage: store, TTL: ttl, Clock: clock.Now})
			require.NoError(t, run(sess.Middleware(increment), msg(1, 1)))
			clock.Advance(tc.lastUse)
			require.NoError(t, run(sess.Middleware(readOnly), msg(1, 1)))
			calls := rec.take()
			want := []call{
				rd("1"), wr("1", fmt.Sprintf(`{"__d":{"Count":1},"e":%d}`, start.Add(150*time.Second).UnixMilli())),
				rd("1"),
			}
			if tc.rewritten {
				want = append(want, wr("1", fmt.Sprintf(`{"__d":{"Count":1},"e":%d}`, start.Add(tc.lastUse+150*time.Second).UnixMilli())))
			}
			assert.Equal(t, want, calls)

			clock.Advance(ttl - time.Second) // lastUse + 99s
			assert.True(t, alive(t, view, "1"), "alive TTL after the last use")
			clock.Set(start.Add(tc.gone - time.Millisecond))
			assert.True(t, alive(t, view, "1"))
			clock.Set(start.Add(tc.gone))
			assert.False(t, alive(t, view, "1"), "gone when the envelope says")
			assert.LessOrEqual(t, tc.gone, tc.lastUse+ttl+ttl/2, "gone by 1.5×TTL after the last use")

			// The expired data is deleted by the next update that leaves
			// the session as it found it.
			require.NoError(t, run(sess.Middleware(readOnly), msg(1, 1)))
			assert.Equal(t, []call{rd("1"), del("1")}, rec.take())
		})
	}
}

// TestScenarioTTLBoundsHoldForAnyUsePattern drives both kinds of store
// through the same uses (changes and plain reads at uneven times) and
// checks after each use the one TTL meaning: alive TTL after it, gone
// exactly TTL after it natively and by 1.5×TTL after it in the envelope.
func TestScenarioTTLBoundsHoldForAnyUsePattern(t *testing.T) {
	const ttl = time.Minute
	gaps := []time.Duration{0, 1 * time.Second, 29 * time.Second, 31 * time.Second, 59 * time.Second, 10 * time.Second, 45 * time.Second}
	for name := range ttlStores(newTestClock()) {
		t.Run(name, func(t *testing.T) {
			for i, gap := range gaps {
				clock := newTestClock()
				sess := mustNew(t, Options[counter]{Storage: ttlStores(clock)[name], TTL: ttl, Clock: clock.Now})
				require.NoError(t, run(sess.Middleware(increment), msg(1, 1)))
				for j := range i + 1 { // uses at the gaps so far, reads and changes alternating
					clock.Advance(gaps[j])
					h := sess.Middleware(readOnly)
					if j%3 == 2 {
						h = sess.Middleware(increment)
					}
					require.NoError(t, run(h, msg(1, 1)))
				}
				lastUse := clock.Now()
				clock.Set(lastUse.Add(ttl - time.Millisecond))
				assert.True(t, alive(t, sess, "1"), "after gap %v: alive up to TTL after the last use", gap)
				if name == "native" {
					clock.Set(lastUse.Add(ttl))
					assert.False(t, alive(t, sess, "1"), "after gap %v: gone exactly TTL after the last use", gap)
				} else {
					clock.Set(lastUse.Add(ttl + ttl/2))
					assert.False(t, alive(t, sess, "1"), "after gap %v: gone by 1.5×TTL after the last use", gap)
				}
			}
		})
	}
}

func TestScenarioDataWithoutExpiryGainsOneOnFirstUse(t *testing.T) {
	t.Run("envelope", func(t *testing.T) {
		clock := newTestClock()
		raw := listStore{newPlainStore(MemoryOptions{Clock: clock.Now})}
		require.NoError(t, raw.Write(context.Background(), "1", []byte(`{"__d":{"Count":4}}`))) // grammY, no TTL
		sess := mustNew(t, Options[counter]{Storage: raw, TTL: time.Hour, Clock: clock.Now})
		require.NoError(t, run(sess.Middleware(readOnly), msg(1, 1)))
		b, _ := rawOf(t, raw, "1")
		assert.JSONEq(t, fmt.Sprintf(`{"__d":{"Count":4},"e":%d}`, clock.Now().Add(90*time.Minute).UnixMilli()), b)

		clock.Advance(90*time.Minute - time.Millisecond)
		assert.True(t, alive(t, sess, "1"))
		clock.Advance(time.Millisecond)
		assert.False(t, alive(t, sess, "1"), "and expires like any other")
	})
	t.Run("bare data in the envelope's place", func(t *testing.T) {
		clock := newTestClock()
		raw := listStore{newPlainStore(MemoryOptions{Clock: clock.Now})}
		require.NoError(t, raw.Write(context.Background(), "1", []byte(`{"Count":4}`))) // before the TTL was set
		sess := mustNew(t, Options[counter]{Storage: raw, TTL: time.Hour, Clock: clock.Now})
		require.NoError(t, run(sess.Middleware(readOnly), msg(1, 1)))
		b, _ := rawOf(t, raw, "1")
		assert.JSONEq(t, fmt.Sprintf(`{"__d":{"Count":4},"e":%d}`, clock.Now().Add(90*time.Minute).UnixMilli()), b)
	})
	t.Run("native", func(t *testing.T) {
		clock := newTestClock()
		mem := NewMemory(MemoryOptions{Clock: clock.Now})
		require.NoError(t, mem.Write(context.Background(), "1", []byte(`{"Count":4}`))) // written without expiry
		sess := mustNew(t, Options[counter]{Storage: mem, TTL: time.Hour, Clock: clock.Now})
		require.NoError(t, run(sess.Middleware(readOnly), msg(1, 1)))
		clock.Advance(time.Hour - time.Millisecond)
		assert.True(t, alive(t, sess, "1"))
		clock.Advance(time.Millisecond)
		assert.False(t, alive(t, sess, "1"), "the first use's touch gave it the TTL")
	})
	t.Run("an envelope expiry when the store now expires natively", func(t *testing.T) {
		clock := newTestClock()
		mem := NewMemory(MemoryOptions{Clock: clock.Now})
		e := clock.Now().Add(time.Minute).UnixMilli()
		require.NoError(t, mem.Write(context.Background(), "1", []byte(fmt.Sprintf(`{"__d":{"Count":4},"e":%d}`, e))))
		sess := mustNew(t, Options[counter]{Storage: mem, TTL: time.Hour, Clock: clock.Now})
		require.NoError(t, run(sess.Middleware(readOnly), msg(1, 1)))
		b, _ := rawOf(t, mem, "1")
		assert.Equal(t, `{"Count":4}`, b, "rewritten bare: the store keeps the expiry now")
		clock.Advance(time.Hour - time.Millisecond)
		assert.True(t, alive(t, sess, "1"))
	})
}

func TestScenarioRefreshCostsAtMostOneWritePerHalfTTL(t *testing.T) {
	clock := newTestClock()
	raw := newRecorder(MemoryOptions{Clock: clock.Now})
	sess := mustNew(t, Options[counter]{Storage: raw, TTL: time.Hour, Clock: clock.Now})
	require.NoError(t, run(sess.Middleware(increment), msg(1, 1)))
	raw.take()
	h := sess.Middleware(readOnly)
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
	assert.Equal(t, 1, countIn(t, raw, "1"))
}
