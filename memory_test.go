package session_test

import (
	"context"
	"fmt"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/storagetest"
)

// What every store must do is checked by storagetest (its own tests run
// it on Memory); this file keeps what is Memory's own: exact native
// expiry, listing, sweeping and shrinking.

func TestMemoryRoundTrip(t *testing.T) {
	ctx := context.Background()
	m := session.NewMemory()
	require.NoError(t, m.Write(ctx, "k", []byte(`{"Tags":["a"]}`)))
	out, ok, err := m.Read(ctx, "k")
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, `{"Tags":["a"]}`, string(out))

	require.NoError(t, m.Write(ctx, "empty", nil))
	out, ok, err = m.Read(ctx, "empty")
	require.NoError(t, err)
	assert.True(t, ok, "an empty value is a value")
	assert.Empty(t, out)
}

func TestMemoryCancelledContext(t *testing.T) {
	m := session.NewMemory()
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, _, err := m.Read(ctx, "k")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, m.Write(ctx, "k", []byte("v")), context.Canceled)
	assert.ErrorIs(t, m.WriteTTL(ctx, "k", []byte("v"), time.Hour), context.Canceled)
	assert.ErrorIs(t, m.Touch(ctx, "k", time.Hour), context.Canceled)
	assert.ErrorIs(t, m.Delete(ctx, "k"), context.Canceled)
	for _, err := range m.Keys(ctx) {
		assert.ErrorIs(t, err, context.Canceled)
	}
	assert.Zero(t, session.MemoryMapLen(m), "nothing written")
}

func TestMemoryTTLIsIdleTime(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Hour
	clock := session.NewTestClock()
	m := session.NewMemory(session.MemoryOptions{Clock: clock.Now})
	has := func(k string) bool {
		_, ok, err := m.Read(ctx, k)
		require.NoError(t, err)
		return ok
	}
	require.NoError(t, m.WriteTTL(ctx, "k", []byte("1"), ttl))

	clock.Advance(ttl - time.Nanosecond)
	assert.True(t, has("k"), "alive just before TTL")
	require.NoError(t, m.Touch(ctx, "k", ttl))

	clock.Advance(ttl - time.Nanosecond)
	assert.True(t, has("k"), "a touch restarted the clock")

	clock.Advance(time.Nanosecond)
	assert.False(t, has("k"), "expired at exactly TTL after the last touch")
	require.NoError(t, m.Touch(ctx, "k", ttl))
	assert.False(t, has("k"), "touch does not revive an expired session")
	require.NoError(t, m.Touch(ctx, "missing", ttl), "touching a missing key is not an error")
	assert.False(t, has("missing"), "and creates nothing")

	require.NoError(t, m.WriteTTL(ctx, "k", []byte("2"), ttl))
	require.NoError(t, m.Write(ctx, "k", []byte("3")))
	clock.Advance(100 * ttl)
	assert.True(t, has("k"), "a plain Write stores without expiry")
	require.NoError(t, m.Touch(ctx, "k", ttl))
	clock.Advance(ttl)
	assert.False(t, has("k"), "a touch gives a key without expiry the TTL")
}

func TestMemoryKeysSkipsExpired(t *testing.T) {
	ctx := context.Background()
	clock := session.NewTestClock()
	m := session.NewMemory(session.MemoryOptions{Clock: clock.Now})
	require.NoError(t, m.WriteTTL(ctx, "short", []byte("1"), time.Minute))
	require.NoError(t, m.WriteTTL(ctx, "long", []byte("1"), time.Hour))
	require.NoError(t, m.Write(ctx, "forever", []byte("1")))
	clock.Advance(time.Minute)
	got := map[string]bool{}
	for k, err := range m.Keys(ctx) {
		require.NoError(t, err)
		got[k] = true
		require.NoError(t, m.Write(ctx, "new-"+k, []byte("1")), "the loop body may write the store")
	}
	assert.True(t, got["long"] && got["forever"])
	assert.False(t, got["short"])
}

func TestMemorySweepsExpiredOnWrite(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Minute
	clock := session.NewTestClock()
	m := session.NewMemory(session.MemoryOptions{Clock: clock.Now})
	for i := range 100 {
		require.NoError(t, m.WriteTTL(ctx, strconv.Itoa(i), []byte("1"), ttl))
	}
	clock.Advance(40 * time.Second)
	require.NoError(t, m.WriteTTL(ctx, "young", []byte("1"), ttl))
	clock.Advance(30 * time.Second) // the hundred expired; young has 30s left
	for range 256 {                 // each expiring write sweeps one shard in turn
		require.NoError(t, m.WriteTTL(ctx, "new", []byte("1"), ttl))
	}
	assert.Equal(t, 2, session.MemoryMapLen(m), "expired items swept without being read")

	noTTL := session.NewMemory(session.MemoryOptions{Clock: clock.Now})
	require.NoError(t, noTTL.Write(ctx, "a", []byte("1")))
	clock.Advance(100 * 365 * 24 * time.Hour)
	require.NoError(t, noTTL.Write(ctx, "b", []byte("1")))
	assert.Equal(t, 2, session.MemoryMapLen(noTTL), "without TTL nothing expires")
}

func heapAfterGC() uint64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// TestMemoryGivesMemoryBack: Go maps never shrink, so a store that once
// held many sessions would keep their buckets forever.
func TestMemoryGivesMemoryBack(t *testing.T) {
	ctx := context.Background()
	empty := session.NewMemory()
	base := heapAfterGC()
	runtime.KeepAlive(empty)

	m := session.NewMemory()
	const n = 250_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("chat:", 1_000_000+i)
		require.NoError(t, m.Write(ctx, keys[i], []byte(fmt.Sprintf(`{"Count":%d}`, i))))
	}
	full := heapAfterGC()
	for _, k := range keys {
		require.NoError(t, m.Delete(ctx, k))
	}
	keys = nil
	after := heapAfterGC()
	runtime.KeepAlive(m)
	t.Logf("heap: empty %d KiB, %d sessions %d KiB, all deleted %d KiB", base>>10, n, full>>10, after>>10)
	assert.Less(t, after, 2*base+64<<10, "deleting everything gives the map's memory back")
	assert.Zero(t, session.MemoryMapLen(m))
}

func TestMemoryOptionsMerge(t *testing.T) {
	ctx := context.Background()
	clock := session.NewTestClock()
	m := session.NewMemory(session.MemoryOptions{Clock: clock.Now}, session.MemoryOptions{})
	require.NoError(t, m.WriteTTL(ctx, "k", []byte("1"), time.Minute))
	clock.Advance(time.Minute)
	_, has, err := m.Read(ctx, "k")
	require.NoError(t, err)
	assert.False(t, has, "an option without a Clock keeps the clock of an earlier one")
}

func TestMemoryIsTheDefaultStorePrivateToItsSession(t *testing.T) {
	type pizza struct{ Count int }
	inc := func(c *session.Context[pizza]) error {
		s, err := c.Session()
		if err == nil {
			s.Count++
		}
		return err
	}
	a, err := session.New(session.Options[pizza]{})
	require.NoError(t, err)
	b, err := session.New(session.Options[pizza]{})
	require.NoError(t, err)
	for range 2 {
		require.NoError(t, a.Middleware(inc)(session.NewContext[pizza](context.Background(), nil, message(1, 1, "x"))))
	}
	require.NoError(t, b.Middleware(inc)(session.NewContext[pizza](context.Background(), nil, message(1, 1, "x"))))
	for sess, want := range map[*session.Session[pizza]]int{a: 2, b: 1} {
		n := 0
		for e, err := range sess.Entries(context.Background()) {
			require.NoError(t, err)
			assert.Equal(t, want, e.Value.Count, "each session has a Memory of its own, as in grammY")
			n++
		}
		assert.Equal(t, 1, n)
	}
}

type node struct {
	Name string
	Next *node
}

func TestCyclicValueIsAnErrorNotAStackOverflow(t *testing.T) {
	store := session.NewMemory()
	sess, err := session.New(session.Options[*node]{Storage: store, Initial: func() *node { return &node{} }})
	require.NoError(t, err)
	err = sess.Middleware(func(c *session.Context[*node]) error {
		s, err := c.Session()
		if err == nil {
			(*s).Name = "a"
			(*s).Next = *s
		}
		return err
	})(session.NewContext[*node](context.Background(), nil, message(1, 1, "x")))
	assert.ErrorContains(t, err, "cycle")
	assert.ErrorContains(t, err, `"1"`, "names the key")
	assert.Zero(t, session.MemoryMapLen(store), "nothing written")
}

// TestMemoryConformance runs the suite every store must pass (storagetest
// runs it on Memory too, with the expiry suite).
func TestMemoryConformance(t *testing.T) {
	storagetest.Run(t, func(*testing.T) session.Store { return session.NewMemory() })
}
