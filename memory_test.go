package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// memProfile holds references (slice, map, pointer), so Memory copies it
// through JSON.
type memProfile struct {
	Name  string         `json:"name"`
	Tags  []string       `json:"tags"`
	Attrs map[string]int `json:"attrs"`
	Best  *memFlat       `json:"best"`
}

// memFlat holds no references, so Memory copies it by assignment.
type memFlat struct {
	ID    int64
	Name  string
	Score float64
	Pos   [2]int32
}

// memUnencodable cannot be encoded as JSON because of its channel.
type memUnencodable struct {
	Name string
	Ch   chan int
}

func newMemProfile(name string) memProfile {
	return memProfile{
		Name:  name,
		Tags:  []string{"a", "b"},
		Attrs: map[string]int{"x": 1, "y": 2},
		Best:  &memFlat{ID: 7, Name: "best"},
	}
}

// memItemKeys returns the keys held in m's map, expired or not, sorted.
func memItemKeys[T any](m *Memory[T]) []string {
	m.mu.RLock()
	defer m.mu.RUnlock()
	keys := make([]string, 0, len(m.items))
	for k := range m.items {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// memCollect drains an iterator sequence, failing on any error.
func memCollect[V any](t *testing.T, seq func(yield func(V, error) bool)) []V {
	t.Helper()
	var out []V
	for v, err := range seq {
		require.NoError(t, err)
		out = append(out, v)
	}
	return out
}

func memCancelled() context.Context {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	return ctx
}

// memWithin fails the test if f does not return within d (a deadlock).
func memWithin(t *testing.T, d time.Duration, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(d):
		t.Fatalf("did not finish within %v: deadlock?", d)
	}
}

func TestMemoryImplementsInterfaces(t *testing.T) {
	var m any = NewMemory[memProfile]()
	assert.Implements(t, (*StorageAdapter[memProfile])(nil), m)
	assert.Implements(t, (*Iterator[memProfile])(nil), m)
}

func TestMemoryReadWriteDelete(t *testing.T) {
	ctx := context.Background()
	m := NewMemory[memProfile]()

	v, found, err := m.Read(ctx, "k")
	require.NoError(t, err)
	assert.False(t, found, "empty store")
	assert.Zero(t, v)
	has, err := m.Has(ctx, "k")
	require.NoError(t, err)
	assert.False(t, has)

	want := newMemProfile("first")
	require.NoError(t, m.Write(ctx, "k", want))
	v, found, err = m.Read(ctx, "k")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, want, v)
	has, err = m.Has(ctx, "k")
	require.NoError(t, err)
	assert.True(t, has)

	// Overwrite replaces the whole value: nothing of the old one merges in.
	second := memProfile{Name: "second", Tags: []string{"z"}, Attrs: map[string]int{"only": 9}}
	require.NoError(t, m.Write(ctx, "k", second))
	v, found, err = m.Read(ctx, "k")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, second, v)

	// Other keys are independent.
	require.NoError(t, m.Write(ctx, "other", want))
	_, found, err = m.Read(ctx, "K")
	require.NoError(t, err)
	assert.False(t, found, "keys are case-sensitive")

	require.NoError(t, m.Delete(ctx, "k"))
	v, found, err = m.Read(ctx, "k")
	require.NoError(t, err)
	assert.False(t, found, "deleted")
	assert.Zero(t, v)
	has, err = m.Has(ctx, "k")
	require.NoError(t, err)
	assert.False(t, has)

	v, found, err = m.Read(ctx, "other")
	require.NoError(t, err)
	assert.True(t, found, "delete touches only its key")
	assert.Equal(t, want, v)

	assert.NoError(t, m.Delete(ctx, "k"), "deleting a deleted key")
	assert.NoError(t, m.Delete(ctx, "never-written"), "deleting a missing key")
	assert.Equal(t, []string{"other"}, memItemKeys(m))
}

func TestMemoryEmptyAndZeroValues(t *testing.T) {
	ctx := context.Background()

	t.Run("zero value is found", func(t *testing.T) {
		m := NewMemory[memProfile]()
		require.NoError(t, m.Write(ctx, "k", memProfile{}))
		v, found, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.True(t, found, "a stored zero value is not a missing one")
		assert.Equal(t, memProfile{}, v)
	})
	t.Run("empty key", func(t *testing.T) {
		m := NewMemory[int]()
		require.NoError(t, m.Write(ctx, "", 1))
		v, found, err := m.Read(ctx, "")
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, 1, v)
	})
	t.Run("nil and empty slices and maps keep their shape", func(t *testing.T) {
		m := NewMemory[memProfile]()
		empty := memProfile{Tags: []string{}, Attrs: map[string]int{}}
		require.NoError(t, m.Write(ctx, "empty", empty))
		require.NoError(t, m.Write(ctx, "nil", memProfile{}))
		v, _, err := m.Read(ctx, "empty")
		require.NoError(t, err)
		assert.NotNil(t, v.Tags)
		assert.NotNil(t, v.Attrs)
		assert.Equal(t, empty, v)
		v, _, err = m.Read(ctx, "nil")
		require.NoError(t, err)
		assert.Nil(t, v.Tags)
		assert.Nil(t, v.Attrs)
	})
	t.Run("nil byte slice", func(t *testing.T) {
		m := NewMemory[[]byte]()
		require.NoError(t, m.Write(ctx, "nil", nil))
		require.NoError(t, m.Write(ctx, "empty", []byte{}))
		v, found, err := m.Read(ctx, "nil")
		require.NoError(t, err)
		assert.True(t, found)
		assert.Nil(t, v)
		v, found, err = m.Read(ctx, "empty")
		require.NoError(t, err)
		assert.True(t, found)
		assert.NotNil(t, v)
		assert.Empty(t, v)
	})
}

func TestMemoryDoesNotAlias(t *testing.T) {
	ctx := context.Background()

	t.Run("map, slice and pointer in a struct", func(t *testing.T) {
		m := NewMemory[memProfile]()
		v := newMemProfile("p")
		require.NoError(t, m.Write(ctx, "k", v))

		// Mutate everything the caller still holds after Write.
		v.Tags[0] = "changed"
		v.Tags = append(v.Tags, "appended")
		v.Attrs["x"] = 100
		v.Attrs["new"] = 1
		v.Best.Name = "changed"
		got, found, err := m.Read(ctx, "k")
		require.NoError(t, err)
		require.True(t, found)
		assert.Equal(t, newMemProfile("p"), got, "mutating after Write")

		// Mutate what Read returned.
		got.Tags[1] = "changed"
		got.Attrs["y"] = 200
		delete(got.Attrs, "x")
		got.Best.ID = 99
		again, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, newMemProfile("p"), again, "mutating after Read")
	})
	t.Run("map value", func(t *testing.T) {
		m := NewMemory[map[string][]int]()
		v := map[string][]int{"a": {1, 2}}
		require.NoError(t, m.Write(ctx, "k", v))
		v["a"][0] = 100
		v["b"] = []int{3}
		got, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, map[string][]int{"a": {1, 2}}, got, "mutating after Write")
		got["a"][1] = 200
		got["c"] = nil
		again, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, map[string][]int{"a": {1, 2}}, again, "mutating after Read")
	})
	t.Run("pointer value", func(t *testing.T) {
		m := NewMemory[*memProfile]()
		p := &memProfile{Name: "ptr", Tags: []string{"t"}}
		require.NoError(t, m.Write(ctx, "k", p))
		p.Name = "changed"
		p.Tags[0] = "changed"
		got, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		require.NotNil(t, got)
		assert.NotSame(t, p, got)
		assert.Equal(t, &memProfile{Name: "ptr", Tags: []string{"t"}}, got)
		got.Name = "changed again"
		again, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, "ptr", again.Name)
	})
	t.Run("byte slice", func(t *testing.T) {
		m := NewMemory[[]byte]()
		b := []byte("hello")
		require.NoError(t, m.Write(ctx, "k", b))
		b[0] = 'J'
		got, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, []byte("hello"), got, "mutating after Write")
		got[1] = 'A'
		_ = append(got[:2], 'X') // writes into got's backing array
		again, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, []byte("hello"), again, "mutating after Read")
	})
	t.Run("flat struct", func(t *testing.T) {
		m := NewMemory[memFlat]()
		v := memFlat{ID: 1, Name: "flat", Score: 1.5, Pos: [2]int32{3, 4}}
		want := v
		require.NoError(t, m.Write(ctx, "k", v))
		v.ID, v.Name, v.Pos[0] = 2, "changed", 30
		got, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, want, got, "mutating after Write")
		got.Pos[1] = 40
		again, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, want, again, "mutating after Read")
	})
	t.Run("iteration yields copies", func(t *testing.T) {
		m := NewMemory[memProfile]()
		require.NoError(t, m.Write(ctx, "k", newMemProfile("k")))
		for v, err := range m.Values(ctx) {
			require.NoError(t, err)
			v.Tags[0] = "changed"
			v.Attrs["x"] = -1
		}
		for e, err := range m.Entries(ctx) {
			require.NoError(t, err)
			e.Value.Tags[1] = "changed"
			e.Value.Best.Name = "changed"
		}
		got, _, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.Equal(t, newMemProfile("k"), got)
	})
}

func TestMemoryTTL(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Minute

	// live reports what every read path says about key.
	live := func(t *testing.T, m *Memory[memProfile], key string) (read, has, keys, values, entries bool) {
		t.Helper()
		_, read, err := m.Read(ctx, key)
		require.NoError(t, err)
		has, err = m.Has(ctx, key)
		require.NoError(t, err)
		for k, err := range m.Keys(ctx) {
			require.NoError(t, err)
			keys = keys || k == key
		}
		for v, err := range m.Values(ctx) {
			require.NoError(t, err)
			values = values || v.Name == key
		}
		for e, err := range m.Entries(ctx) {
			require.NoError(t, err)
			entries = entries || e.Key == key
		}
		return read, has, keys, values, entries
	}
	assertLive := func(t *testing.T, m *Memory[memProfile], key string, want bool, msg string) {
		t.Helper()
		read, has, keys, values, entries := live(t, m, key)
		assert.Equal(t, want, read, "Read: %s", msg)
		assert.Equal(t, want, has, "Has: %s", msg)
		assert.Equal(t, want, keys, "Keys: %s", msg)
		assert.Equal(t, want, values, "Values: %s", msg)
		assert.Equal(t, want, entries, "Entries: %s", msg)
	}

	t.Run("expires at ttl", func(t *testing.T) {
		clock := newTestClock()
		m := NewMemory[memProfile](WithTTL(ttl), WithClock(clock.Now))
		require.NoError(t, m.Write(ctx, "a", newMemProfile("a")))
		assertLive(t, m, "a", true, "just written")
		clock.Advance(ttl - time.Nanosecond)
		assertLive(t, m, "a", true, "1ns before expiry")
		clock.Advance(time.Nanosecond)
		assertLive(t, m, "a", false, "at expiry")
		clock.Advance(time.Hour)
		assertLive(t, m, "a", false, "after expiry")
	})
	t.Run("rewrite extends expiry", func(t *testing.T) {
		clock := newTestClock()
		m := NewMemory[memProfile](WithTTL(ttl), WithClock(clock.Now))
		require.NoError(t, m.Write(ctx, "a", newMemProfile("a")))
		clock.Advance(40 * time.Second)
		require.NoError(t, m.Write(ctx, "a", newMemProfile("a")))
		clock.Advance(40 * time.Second) // 80s after the first write
		assertLive(t, m, "a", true, "40s after rewrite")
		clock.Advance(20 * time.Second) // exactly ttl after the rewrite
		assertLive(t, m, "a", false, "ttl after rewrite")
	})
	t.Run("reads do not extend expiry", func(t *testing.T) {
		clock := newTestClock()
		m := NewMemory[memProfile](WithTTL(ttl), WithClock(clock.Now))
		require.NoError(t, m.Write(ctx, "a", newMemProfile("a")))
		for range 5 {
			clock.Advance(10 * time.Second)
			_, found, err := m.Read(ctx, "a")
			require.NoError(t, err)
			require.True(t, found)
		}
		clock.Advance(10 * time.Second)
		assertLive(t, m, "a", false, "ttl after the only write")
	})
	t.Run("expired then rewritten is live", func(t *testing.T) {
		clock := newTestClock()
		m := NewMemory[memProfile](WithTTL(ttl), WithClock(clock.Now))
		require.NoError(t, m.Write(ctx, "a", newMemProfile("old")))
		clock.Advance(2 * ttl)
		require.NoError(t, m.Write(ctx, "a", newMemProfile("a")))
		v, found, err := m.Read(ctx, "a")
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, newMemProfile("a"), v)
	})
	for _, d := range []time.Duration{0, -time.Second} {
		t.Run(fmt.Sprintf("ttl %v never expires", d), func(t *testing.T) {
			clock := newTestClock()
			m := NewMemory[memProfile](WithTTL(d), WithClock(clock.Now))
			require.NoError(t, m.Write(ctx, "a", newMemProfile("a")))
			clock.Advance(100 * 365 * 24 * time.Hour)
			assertLive(t, m, "a", true, "a century later")
		})
	}
}

func TestMemorySweepsExpiredOnWrite(t *testing.T) {
	ctx := context.Background()
	const ttl = time.Minute

	t.Run("expired entry reclaimed without being read", func(t *testing.T) {
		clock := newTestClock()
		m := NewMemory[memProfile](WithTTL(ttl), WithClock(clock.Now))
		require.NoError(t, m.Write(ctx, "A", newMemProfile("A")))
		require.Equal(t, []string{"A"}, memItemKeys(m))
		clock.Advance(ttl + ttl/2 + time.Second) // past the TTL and the sweep interval
		require.NoError(t, m.Write(ctx, "B", newMemProfile("B")))
		assert.Equal(t, []string{"B"}, memItemKeys(m), "A swept by the write of B")
	})
	t.Run("live entries survive a sweep", func(t *testing.T) {
		clock := newTestClock()
		m := NewMemory[memProfile](WithTTL(ttl), WithClock(clock.Now))
		require.NoError(t, m.Write(ctx, "old", newMemProfile("old")))
		clock.Advance(40 * time.Second)
		require.NoError(t, m.Write(ctx, "young", newMemProfile("young")))
		clock.Advance(30 * time.Second) // old expired; young has 30s left
		require.NoError(t, m.Write(ctx, "new", newMemProfile("new")))
		assert.Equal(t, []string{"new", "young"}, memItemKeys(m))
		v, found, err := m.Read(ctx, "young")
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, newMemProfile("young"), v)
	})
	t.Run("many expired entries all go", func(t *testing.T) {
		clock := newTestClock()
		m := NewMemory[int](WithTTL(ttl), WithClock(clock.Now))
		for i := range 100 {
			require.NoError(t, m.Write(ctx, strconv.Itoa(i), i))
		}
		require.Len(t, memItemKeys(m), 100)
		clock.Advance(2 * ttl)
		require.NoError(t, m.Write(ctx, "x", 1))
		assert.Equal(t, []string{"x"}, memItemKeys(m))
	})
	t.Run("without ttl nothing is swept", func(t *testing.T) {
		clock := newTestClock()
		m := NewMemory[memProfile](WithClock(clock.Now))
		require.NoError(t, m.Write(ctx, "A", newMemProfile("A")))
		clock.Advance(100 * 365 * 24 * time.Hour)
		require.NoError(t, m.Write(ctx, "B", newMemProfile("B")))
		assert.Equal(t, []string{"A", "B"}, memItemKeys(m))
		v, found, err := m.Read(ctx, "A")
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, newMemProfile("A"), v)
	})
}

func TestMemoryIteration(t *testing.T) {
	ctx := context.Background()

	// fill writes n keys, deletes every third and overwrites every fifth;
	// it returns the live entries.
	fill := func(t *testing.T, m *Memory[memProfile], n int) map[string]memProfile {
		t.Helper()
		want := map[string]memProfile{}
		for i := range n {
			k := fmt.Sprintf("key-%d", i)
			require.NoError(t, m.Write(ctx, k, memProfile{Name: "stale"}))
			want[k] = newMemProfile(k)
			require.NoError(t, m.Write(ctx, k, want[k]))
		}
		for i := 0; i < n; i += 3 {
			k := fmt.Sprintf("key-%d", i)
			require.NoError(t, m.Delete(ctx, k))
			delete(want, k)
		}
		return want
	}
	check := func(t *testing.T, m *Memory[memProfile], want map[string]memProfile) {
		t.Helper()
		var wantKeys []string
		var wantValues []memProfile
		var wantEntries []Entry[memProfile]
		for k, v := range want {
			wantKeys = append(wantKeys, k)
			wantValues = append(wantValues, v)
			wantEntries = append(wantEntries, Entry[memProfile]{Key: k, Value: v})
		}
		// ElementsMatch also counts duplicates: each entry exactly once.
		assert.ElementsMatch(t, wantKeys, memCollect(t, m.Keys(ctx)), "Keys")
		assert.ElementsMatch(t, wantValues, memCollect(t, m.Values(ctx)), "Values")
		assert.ElementsMatch(t, wantEntries, memCollect(t, m.Entries(ctx)), "Entries")
	}

	t.Run("empty store", func(t *testing.T) {
		check(t, NewMemory[memProfile](), nil)
	})
	t.Run("every live entry once", func(t *testing.T) {
		m := NewMemory[memProfile]()
		want := fill(t, m, 50)
		require.Len(t, want, 33)
		check(t, m, want)
	})
	t.Run("expired entries skipped", func(t *testing.T) {
		clock := newTestClock()
		m := NewMemory[memProfile](WithTTL(time.Minute), WithClock(clock.Now))
		for i := range 5 {
			require.NoError(t, m.Write(ctx, fmt.Sprintf("old-%d", i), newMemProfile("old")))
		}
		clock.Advance(30 * time.Second)
		want := fill(t, m, 10)
		clock.Advance(30 * time.Second)
		// The old entries expired but have not been swept yet, so the
		// iterators themselves must skip them.
		require.Len(t, memItemKeys(m), 5+len(want))
		check(t, m, want)
	})
	t.Run("early break", func(t *testing.T) {
		m := NewMemory[memProfile]()
		fill(t, m, 20)
		n := 0
		for _, err := range m.Keys(ctx) {
			require.NoError(t, err)
			n++
			break
		}
		for _, err := range m.Values(ctx) {
			require.NoError(t, err)
			n++
			break
		}
		for _, err := range m.Entries(ctx) {
			require.NoError(t, err)
			n++
			break
		}
		assert.Equal(t, 3, n, "one element per sequence, and no yield after break (that would panic)")
	})
	t.Run("loop body writes and deletes", func(t *testing.T) {
		m := NewMemory[memProfile]()
		want := fill(t, m, 20)
		memWithin(t, 2*time.Second, func() {
			for k, err := range m.Keys(ctx) {
				assert.NoError(t, err)
				assert.NoError(t, m.Delete(ctx, k))
				assert.NoError(t, m.Write(ctx, "moved-"+k, newMemProfile(k)))
			}
			for e, err := range m.Entries(ctx) {
				assert.NoError(t, err)
				e.Value.Name += "!"
				assert.NoError(t, m.Write(ctx, e.Key, e.Value))
				_, err := m.Has(ctx, e.Key)
				assert.NoError(t, err)
			}
			for v, err := range m.Values(ctx) {
				assert.NoError(t, err)
				assert.NoError(t, m.Write(ctx, "copy-"+v.Name, v))
			}
		})
		var keys []string
		for k := range want {
			keys = append(keys, "moved-"+k, "copy-"+k+"!")
		}
		assert.ElementsMatch(t, keys, memItemKeys(m))
	})
	t.Run("entry deleted by the loop body is not yielded", func(t *testing.T) {
		m := NewMemory[memProfile]()
		fill(t, m, 20)
		var seen []string
		for k, err := range m.Keys(ctx) {
			require.NoError(t, err)
			seen = append(seen, k)
			for other := range m.Keys(ctx) { // nested iteration, too
				if other != k {
					require.NoError(t, m.Delete(ctx, other))
				}
			}
		}
		assert.Len(t, seen, 1)
		assert.Equal(t, seen, memItemKeys(m))
	})
	t.Run("cancelled context", func(t *testing.T) {
		for _, n := range []int{0, 5} {
			m := NewMemory[memProfile]()
			fill(t, m, n)
			ctx := memCancelled()
			type result struct {
				calls int
				err   error
			}
			var keys, values, entries result
			for k, err := range m.Keys(ctx) {
				keys.calls++
				keys.err = err
				assert.Zero(t, k)
			}
			for v, err := range m.Values(ctx) {
				values.calls++
				values.err = err
				assert.Zero(t, v)
			}
			for e, err := range m.Entries(ctx) {
				entries.calls++
				entries.err = err
				assert.Zero(t, e)
			}
			for name, r := range map[string]result{"Keys": keys, "Values": values, "Entries": entries} {
				assert.Equal(t, 1, r.calls, "%s with %d entries: one yield, the error", name, n)
				assert.ErrorIs(t, r.err, context.Canceled, "%s with %d entries", name, n)
			}
		}
	})
	t.Run("cancelled midway", func(t *testing.T) {
		m := NewMemory[memProfile]()
		fill(t, m, 10)
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		var errs []error
		for _, err := range m.Entries(ctx) {
			errs = append(errs, err)
			cancel()
		}
		require.Len(t, errs, 2, "one entry, then the error, then nothing")
		assert.NoError(t, errs[0])
		assert.ErrorIs(t, errs[1], context.Canceled)
	})
}

func TestMemoryCancelledContext(t *testing.T) {
	bg := context.Background()
	deadline, cancel := context.WithDeadline(bg, time.Unix(0, 0))
	defer cancel()
	for _, tc := range []struct {
		name string
		ctx  context.Context
		want error
	}{
		{"cancelled", memCancelled(), context.Canceled},
		{"deadline exceeded", deadline, context.DeadlineExceeded},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := NewMemory[memProfile]()
			require.NoError(t, m.Write(bg, "k", newMemProfile("before")))

			v, found, err := m.Read(tc.ctx, "k")
			assert.ErrorIs(t, err, tc.want, "Read")
			assert.False(t, found, "Read")
			assert.Zero(t, v, "Read")

			has, err := m.Has(tc.ctx, "k")
			assert.ErrorIs(t, err, tc.want, "Has")
			assert.False(t, has, "Has")

			assert.ErrorIs(t, m.Write(tc.ctx, "k", newMemProfile("after")), tc.want, "Write existing")
			assert.ErrorIs(t, m.Write(tc.ctx, "new", newMemProfile("new")), tc.want, "Write new")
			assert.ErrorIs(t, m.Delete(tc.ctx, "k"), tc.want, "Delete")

			// Nothing happened.
			assert.Equal(t, []string{"k"}, memItemKeys(m))
			v, found, err = m.Read(bg, "k")
			require.NoError(t, err)
			assert.True(t, found)
			assert.Equal(t, newMemProfile("before"), v)
		})
	}
}

func TestMemoryConcurrent(t *testing.T) {
	const (
		workers = 8
		rounds  = 60
		shared  = 4
	)
	for _, withTTL := range []bool{false, true} {
		t.Run(fmt.Sprintf("ttl=%v", withTTL), func(t *testing.T) {
			ctx := context.Background()
			clock := newTestClock()
			var m *Memory[memProfile]
			if withTTL {
				m = NewMemory[memProfile](WithTTL(time.Hour), WithClock(clock.Now))
			} else {
				m = NewMemory[memProfile]()
			}
			// consistent checks a shared value was not torn between writers.
			consistent := func(v memProfile) bool {
				return len(v.Tags) == 1 && v.Tags[0] == v.Name && v.Attrs[v.Name] == len(v.Name)
			}
			var wg sync.WaitGroup
			for w := range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					own := fmt.Sprintf("own-%d", w)
					for i := range rounds {
						if withTTL {
							clock.Advance(time.Second) // also drives sweeps
						}
						v := newMemProfile(own)
						v.Attrs["i"] = i
						if !assert.NoError(t, m.Write(ctx, own, v)) {
							return
						}
						v.Tags[0] = "mutated after write" // must not race with the store
						v.Attrs["i"] = -1

						name := fmt.Sprintf("w%d", w)
						sk := fmt.Sprintf("shared-%d", i%shared)
						sv := memProfile{Name: name, Tags: []string{name}, Attrs: map[string]int{name: len(name)}}
						switch i % 4 {
						case 0, 1:
							assert.NoError(t, m.Write(ctx, sk, sv))
						case 2:
							got, found, err := m.Read(ctx, sk)
							assert.NoError(t, err)
							if found {
								assert.True(t, consistent(got), "torn value %+v", got)
								got.Tags[0] = "mutated after read"
							}
						case 3:
							assert.NoError(t, m.Delete(ctx, sk))
						}
						if _, err := m.Has(ctx, sk); !assert.NoError(t, err) {
							return
						}

						got, found, err := m.Read(ctx, own)
						assert.NoError(t, err)
						assert.True(t, found, "own key %s", own)
						assert.Equal(t, i, got.Attrs["i"], "own key %s", own)

						if i%25 == 0 {
							for e, err := range m.Entries(ctx) {
								assert.NoError(t, err)
								e.Value.Tags = append(e.Value.Tags, "x")
							}
							for range m.Keys(ctx) {
								break
							}
						}
					}
				}()
			}
			wg.Wait()

			for w := range workers {
				own := fmt.Sprintf("own-%d", w)
				v, found, err := m.Read(ctx, own)
				require.NoError(t, err)
				require.True(t, found, own)
				want := newMemProfile(own)
				want.Attrs["i"] = rounds - 1
				assert.Equal(t, want, v)
			}
			for e, err := range m.Entries(ctx) {
				require.NoError(t, err)
				if strings.HasPrefix(e.Key, "shared-") {
					assert.True(t, consistent(e.Value), "torn value %+v", e.Value)
				}
			}
		})
	}
}

func TestMemoryUnencodableValues(t *testing.T) {
	ctx := context.Background()
	for _, tc := range []struct {
		name  string
		write func(key string) (has func() (bool, error), err error)
	}{
		{"struct with chan", func(key string) (func() (bool, error), error) {
			m := NewMemory[memUnencodable]()
			return func() (bool, error) { return m.Has(ctx, key) }, m.Write(ctx, key, memUnencodable{Name: "x", Ch: make(chan int)})
		}},
		{"struct with nil chan", func(key string) (func() (bool, error), error) {
			m := NewMemory[memUnencodable]()
			return func() (bool, error) { return m.Has(ctx, key) }, m.Write(ctx, key, memUnencodable{Name: "x"})
		}},
		{"func in any", func(key string) (func() (bool, error), error) {
			m := NewMemory[any]()
			return func() (bool, error) { return m.Has(ctx, key) }, m.Write(ctx, key, func() {})
		}},
		{"NaN in map", func(key string) (func() (bool, error), error) {
			m := NewMemory[map[string]float64]()
			return func() (bool, error) { return m.Has(ctx, key) }, m.Write(ctx, key, map[string]float64{"x": math.NaN()})
		}},
		{"infinity in slice", func(key string) (func() (bool, error), error) {
			m := NewMemory[[]float64]()
			return func() (bool, error) { return m.Has(ctx, key) }, m.Write(ctx, key, []float64{math.Inf(1)})
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const key = "chat:42"
			var err error
			var has func() (bool, error)
			require.NotPanics(t, func() { has, err = tc.write(key) })
			require.Error(t, err)
			assert.ErrorContains(t, err, strconv.Quote(key), "error names the key")
			stored, herr := has()
			require.NoError(t, herr)
			assert.False(t, stored, "a failed write stores nothing")
		})
	}

	t.Run("failed write keeps the old value", func(t *testing.T) {
		m := NewMemory[map[string]float64]()
		require.NoError(t, m.Write(ctx, "k", map[string]float64{"old": 1}))
		require.Error(t, m.Write(ctx, "k", map[string]float64{"new": math.NaN()}))
		v, found, err := m.Read(ctx, "k")
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, map[string]float64{"old": 1}, v)
	})
}

func TestEncodedMemory(t *testing.T) {
	ctx := context.Background()
	newStores := func() (*Memory[[]byte], StorageAdapter[memProfile]) {
		raw := NewMemory[[]byte]()
		return raw, Encoded[memProfile](raw, nil)
	}

	t.Run("round trip", func(t *testing.T) {
		_, s := newStores()
		_, found, err := s.Read(ctx, "k")
		require.NoError(t, err)
		assert.False(t, found, "missing")

		for _, want := range []memProfile{
			newMemProfile("ünïcødé ✓"),
			{},
			{Tags: []string{}, Attrs: map[string]int{}},
		} {
			require.NoError(t, s.Write(ctx, "k", want))
			got, found, err := s.Read(ctx, "k")
			require.NoError(t, err)
			assert.True(t, found)
			assert.Equal(t, want, got)
		}

		require.NoError(t, s.Delete(ctx, "k"))
		_, found, err = s.Read(ctx, "k")
		require.NoError(t, err)
		assert.False(t, found, "deleted")
		assert.NoError(t, s.Delete(ctx, "k"), "deleting a missing key")
	})
	t.Run("stored bytes are JSON", func(t *testing.T) {
		raw, s := newStores()
		require.NoError(t, s.Write(ctx, "k", newMemProfile("p")))
		data, found, err := raw.Read(ctx, "k")
		require.NoError(t, err)
		require.True(t, found)
		require.True(t, json.Valid(data), "%q", data)
		assert.JSONEq(t, `{"name":"p","tags":["a","b"],"attrs":{"x":1,"y":2},
			"best":{"ID":7,"Name":"best","Score":0,"Pos":[0,0]}}`, string(data))
	})
	t.Run("reads JSON written by others", func(t *testing.T) {
		raw, s := newStores()
		require.NoError(t, raw.Write(ctx, "k", []byte(`{"name":"ext","tags":["t"],"unknown":true}`)))
		got, found, err := s.Read(ctx, "k")
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, memProfile{Name: "ext", Tags: []string{"t"}}, got)
	})
	for _, tc := range []struct{ name, data string }{
		{"not JSON", "not json"},
		{"truncated", `{"name":"p","tags":[`},
		{"wrong type", `{"name":5}`},
		{"wrong shape", `[1,2,3]`},
		{"empty", ``},
	} {
		t.Run("corrupt "+tc.name, func(t *testing.T) {
			raw, s := newStores()
			const key = "chat:-100123"
			require.NoError(t, raw.Write(ctx, key, []byte(tc.data)))
			_, found, err := s.Read(ctx, key)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrCorrupt)
			assert.ErrorContains(t, err, strconv.Quote(key), "error names the key")
			assert.False(t, found)
		})
	}
	t.Run("unencodable value", func(t *testing.T) {
		raw := NewMemory[[]byte]()
		s := Encoded[memUnencodable](raw, nil)
		var err error
		require.NotPanics(t, func() { err = s.Write(ctx, "bad key", memUnencodable{Ch: make(chan int)}) })
		require.Error(t, err)
		assert.ErrorContains(t, err, `"bad key"`)
		assert.False(t, errors.Is(err, ErrCorrupt), "an encode failure is not corrupt data")
		assert.Empty(t, memItemKeys(raw), "nothing stored")
	})
	t.Run("cancelled context", func(t *testing.T) {
		raw, s := newStores()
		require.NoError(t, s.Write(ctx, "k", newMemProfile("before")))
		cctx := memCancelled()
		_, found, err := s.Read(cctx, "k")
		assert.ErrorIs(t, err, context.Canceled)
		assert.False(t, found)
		assert.ErrorIs(t, s.Write(cctx, "k", newMemProfile("after")), context.Canceled)
		assert.ErrorIs(t, s.Delete(cctx, "k"), context.Canceled)
		got, found, err := s.Read(ctx, "k")
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, newMemProfile("before"), got)
		assert.Equal(t, []string{"k"}, memItemKeys(raw))
	})
}
