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

// What every store must do is checked by storagetest; this file keeps
// what is Memory's own: its value model, expiry, sweeping and shrinking.

func TestMemoryConformance(t *testing.T) {
	t.Run("plain", func(t *testing.T) {
		storagetest.Run(t, func(*testing.T) session.StorageAdapter[storagetest.Value] {
			return session.NewMemory[storagetest.Value]()
		})
	})
	t.Run("TTL", func(t *testing.T) {
		storagetest.Run(t, func(*testing.T) session.StorageAdapter[storagetest.Value] {
			return session.NewMemory[storagetest.Value](session.MemoryOptions{TTL: time.Hour})
		})
	})
}

type secretive struct {
	Tags  []string
	count int // unexported, beside a slice
	note  *string
}

func TestMemoryKeepsWhatTheHandlerLeft(t *testing.T) {
	ctx := context.Background()

	// Memory keeps what any byte store keeps: the JSON encoding. So what
	// a handler sees next time is what it would see on Redis.
	t.Run("numbers in interfaces come back as JSON numbers", func(t *testing.T) {
		m := session.NewMemory[map[string]any]()
		in := map[string]any{"int": 3, "list": []any{1, "two"}, "nil": nil}
		require.NoError(t, m.Write(ctx, "k", in))
		out, ok, err := m.Read(ctx, "k")
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, map[string]any{"int": 3.0, "list": []any{1.0, "two"}, "nil": nil}, out)
		assert.IsType(t, float64(0), out["int"], "an int comes back a float64, as from Redis")
	})

	t.Run("unexported fields are not kept", func(t *testing.T) {
		m := session.NewMemory[secretive]()
		note := "n"
		require.NoError(t, m.Write(ctx, "k", secretive{Tags: []string{"a"}, count: 7, note: &note}))
		out, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, secretive{Tags: []string{"a"}}, out, "as any JSON store: only exported fields")
	})

	t.Run("no memory shared with the writer", func(t *testing.T) {
		m := session.NewMemory[secretive]()
		in := secretive{Tags: []string{"a"}}
		require.NoError(t, m.Write(ctx, "k", in))
		in.Tags[0] = "changed"
		out, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, []string{"a"}, out.Tags)
	})

	t.Run("nil and empty stay apart", func(t *testing.T) {
		type v struct {
			A, B []int
			M, N map[string]int
		}
		m := session.NewMemory[v]()
		require.NoError(t, m.Write(ctx, "k", v{A: nil, B: []int{}, M: nil, N: map[string]int{}}))
		out, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Nil(t, out.A)
		assert.NotNil(t, out.B)
		assert.Nil(t, out.M)
		assert.NotNil(t, out.N)
	})
}

func TestMemoryUncopyableTypesFailClearly(t *testing.T) {
	ctx := context.Background()
	type withFunc struct {
		Name string
		F    func()
	}
	m := session.NewMemory[withFunc]()
	var err error
	require.NotPanics(t, func() { err = m.Write(ctx, "chat:1", withFunc{Name: "x"}) })
	require.Error(t, err)
	assert.ErrorContains(t, err, `"chat:1"`, "names the key")
	assert.ErrorContains(t, err, "func", "names what cannot be copied")

	anyStore := session.NewMemory[any]()
	err = anyStore.Write(ctx, "k", make(chan int))
	assert.ErrorContains(t, err, "chan")
	has, herr := anyStore.Has(ctx, "k")
	require.NoError(t, herr)
	assert.False(t, has, "a failed write stores nothing")

	// A middleware over it is a configuration error when it is built,
	// naming the field, rather than an error on every update.
	defer func() {
		err, _ := recover().(error)
		require.ErrorIs(t, err, session.ErrConfig)
		assert.ErrorContains(t, err, "withFunc.F is a func()")
	}()
	session.Strict(session.Options[withFunc]{Storage: m})
	t.Fatal("Strict accepted a session type Memory cannot copy")
}

func TestMemoryCyclicValueIsAnErrorNotAStackOverflow(t *testing.T) {
	type node struct {
		Name string
		Next *node
	}
	n := &node{Name: "a"}
	n.Next = n
	m := session.NewMemory[*node]()
	err := m.Write(context.Background(), "k", n)
	assert.ErrorContains(t, err, "cycle")
}

func TestMemoryTTLIsIdleTime(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Hour
	clock := session.NewTestClock()
	m := session.NewMemory[int](session.MemoryOptions{TTL: ttl, Clock: clock.Now})
	require.NoError(t, m.Write(ctx, "k", 1))

	clock.Advance(ttl - time.Nanosecond)
	has, err := m.Has(ctx, "k")
	require.NoError(t, err)
	assert.True(t, has, "alive just before TTL")
	require.NoError(t, m.Touch(ctx, "k"))

	clock.Advance(ttl - time.Nanosecond)
	has, _ = m.Has(ctx, "k")
	assert.True(t, has, "a touch restarted the clock")

	clock.Advance(time.Nanosecond)
	has, _ = m.Has(ctx, "k")
	assert.False(t, has, "expired at exactly TTL after the last touch")
	require.NoError(t, m.Touch(ctx, "k"))
	has, _ = m.Has(ctx, "k")
	assert.False(t, has, "touch does not revive an expired session")
	require.NoError(t, m.Touch(ctx, "missing"), "touching a missing key is not an error")
}

func TestMemorySweepsExpiredOnWrite(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Minute
	clock := session.NewTestClock()
	m := session.NewMemory[int](session.MemoryOptions{TTL: ttl, Clock: clock.Now})
	for i := range 100 {
		require.NoError(t, m.Write(ctx, strconv.Itoa(i), i))
	}
	clock.Advance(40 * time.Second)
	require.NoError(t, m.Write(ctx, "young", 1))
	clock.Advance(30 * time.Second) // the hundred expired; young has 30s left
	for range 256 {                 // each write sweeps one shard in turn
		require.NoError(t, m.Write(ctx, "new", 1))
	}
	assert.Equal(t, 2, session.MemoryMapLen(m), "expired items swept without being read")

	noTTL := session.NewMemory[int](session.MemoryOptions{Clock: clock.Now})
	require.NoError(t, noTTL.Write(ctx, "a", 1))
	clock.Advance(100 * 365 * 24 * time.Hour)
	require.NoError(t, noTTL.Write(ctx, "b", 1))
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
	type data struct{ Count int }
	empty := session.NewMemory[data]()
	base := heapAfterGC()
	runtime.KeepAlive(empty)

	m := session.NewMemory[data]()
	const n = 250_000
	keys := make([]string, n)
	for i := range keys {
		keys[i] = fmt.Sprint("chat:", 1_000_000+i)
		require.NoError(t, m.Write(ctx, keys[i], data{i}))
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
	m := session.NewMemory[int](session.WithTTL(time.Minute), session.WithClock(clock.Now))
	require.NoError(t, m.Write(ctx, "k", 1))
	clock.Advance(time.Minute)
	has, err := m.Has(ctx, "k")
	require.NoError(t, err)
	assert.False(t, has, "both the TTL and the clock of the first release's options apply")
}
