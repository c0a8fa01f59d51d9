// Package storagetest is a conformance suite for [session.StorageAdapter]
// implementations. An adapter author calls [Run] from an ordinary test,
// giving it a function that returns an empty store. A byte store (the
// usual kind: Redis, SQL, files) is checked through [session.Encoded]:
//
//	package mystore_test
//
//	import (
//		"testing"
//
//		"github.com/tgsession/session"
//		"github.com/tgsession/session/storagetest"
//
//		"example.com/mystore"
//	)
//
//	func TestConformance(t *testing.T) {
//		storagetest.Run(t, func(t *testing.T) session.StorageAdapter[storagetest.Value] {
//			return session.Encoded[storagetest.Value](mystore.New(openTestDB(t)), nil)
//		})
//	}
//
// Run checks the optional capabilities a store has ([session.Iterator],
// [session.Toucher], [session.Locker]) as far as one client and no clock
// can. The other entry points check what needs more:
//
//   - [RunExpiry]: a store with a time-to-live expires, and Touch
//     restarts it.
//   - [RunLocker]: two clients of one backing store exclude each other;
//     leases are renewed, expire when their holder dies, are released only
//     by their owner, and fence the writes of a holder that lost its lease.
//   - [RunCrossProcess]: several OS processes update the same chats
//     through the strict middleware and lose nothing with the lock (and
//     lose updates without it, to show the test can tell).
//   - [RunBenchmarks]: single calls, updates through the middleware, and
//     64 updates in flight, with round trips per update.
//   - [StartFaultLoad]: increments under the lock while the test breaks
//     connections or restarts the server; no error is hidden, no value
//     half-written, no acknowledged increment lost.
//
// The adapters in this repository (redisstore, pgstore, boltstore) use all
// of them against real servers. Run the suites with -race: some subtests
// call the store from many goroutines at once.
package storagetest

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// Value is the session type the suite stores: it has a string, an int, a
// slice and a map, so stores must round-trip references.
type Value struct {
	Name  string            `json:"name"`
	Count int               `json:"count"`
	Tags  []string          `json:"tags"`
	Attrs map[string]string `json:"attrs"`
}

// Run checks that the adapter made by newStore behaves as
// session.StorageAdapter requires. newStore returns an empty store each call.
//
// Each check is a subtest of t with its own store: newStore is called with
// the subtest's t, so it may use t.Cleanup to release the store, and stores
// are never shared between subtests. Subtests run one after another.
//
// What the suite requires:
//
//   - Read of a missing key reports found == false, a zero Value and a nil
//     error; a zero Value that was written is found.
//   - Write then Read returns an equal Value; a write replaces the whole
//     value (nothing of the old value is merged in). Only the nil and empty
//     forms of Tags and Attrs may be exchanged for each other, since
//     codecs such as encoding/gob do not keep them apart.
//   - Delete removes only its key; deleting a missing key returns nil.
//   - Keys are opaque strings compared byte for byte: case, spaces, ':',
//     '/', unicode and keys of a few hundred bytes must all work, and no key
//     may collide with another. The empty key is optional: a store may
//     reject it with an error from Write, but if Write accepts it, it must
//     behave like any other key.
//   - The store shares no memory with its callers: mutating a Value after
//     Write or after Read does not change what is stored.
//   - A call whose context is already cancelled returns an error that
//     errors.Is context.Canceled and changes nothing.
//   - Concurrent writers to distinct keys all land; concurrent writers to
//     one key leave one of the written values, never a mix.
//   - If the store implements session.Iterator[Value], Keys, Values and
//     Entries yield every live entry exactly once, stop when the loop breaks,
//     and yield context.Canceled for a cancelled context.
//   - If the store implements session.Toucher, touching a stored key keeps
//     its value, touching a missing key returns nil and creates nothing,
//     and a cancelled context gives context.Canceled.
//   - If the store implements session.Locker, holders of one key never
//     overlap (checked from many goroutines, with read-modify-write through
//     the store), other keys are not blocked, a waiter gives up with an
//     error wrapping its context's error, and an unlock called a second
//     time (a misuse) does not release the lock of the next holder.
//
// A capability the store lacks is reported as a skipped subtest. Expiry
// is checked by [RunExpiry], locking across clients of one backing store
// (leases, fencing) by [RunLocker].
func Run(t *testing.T, newStore func(t *testing.T) session.StorageAdapter[Value]) {
	t.Helper()
	for _, c := range []struct {
		name string
		test func(t *testing.T, s session.StorageAdapter[Value])
	}{
		{"MissingKey", testMissingKey},
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"DeleteThenRead", testDeleteThenRead},
		{"DeleteMissingKey", testDeleteMissingKey},
		{"IndependentKeys", testIndependentKeys},
		{"EmptyKey", testEmptyKey},
		{"NoAliasing", testNoAliasing},
		{"CancelledContext", testCancelledContext},
		{"ConcurrentWritersDistinctKeys", testConcurrentDistinct},
		{"ConcurrentWritersSameKey", testConcurrentSame},
		{"Iterator", testIterator},
		{"Toucher", testToucher},
		{"Locker", testLocker},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			require.NotNil(t, s, "newStore returned nil")
			c.test(t, s)
		})
	}
}

// sample returns a Value with every field set, distinct for each seed.
func sample(seed string) Value {
	return Value{
		Name:  "name " + seed,
		Count: len(seed)*1000 + 7,
		Tags:  []string{"tag-a " + seed, "tag-b", ""},
		Attrs: map[string]string{"lang": "en", "seed": seed, "empty": ""},
	}
}

// normalize maps empty Tags and Attrs to nil, the one difference the suite
// allows between what was written and what is read.
func normalize(v Value) Value {
	if len(v.Tags) == 0 {
		v.Tags = nil
	}
	if len(v.Attrs) == 0 {
		v.Attrs = nil
	}
	return v
}

// assertStored checks that key holds want.
func assertStored(t *testing.T, s session.StorageAdapter[Value], key string, want Value) bool {
	t.Helper()
	got, found, err := s.Read(context.Background(), key)
	if !assert.NoError(t, err, "Read(%q)", key) {
		return false
	}
	if !assert.True(t, found, "Read(%q): not found", key) {
		return false
	}
	return assert.Equal(t, normalize(want), normalize(got), "Read(%q)", key)
}

// assertMissing checks that key holds nothing.
func assertMissing(t *testing.T, s session.StorageAdapter[Value], key string) bool {
	t.Helper()
	got, found, err := s.Read(context.Background(), key)
	if !assert.NoError(t, err, "Read(%q)", key) {
		return false
	}
	return assert.False(t, found, "Read(%q): found %+v, want missing", key, got)
}

func write(t *testing.T, s session.StorageAdapter[Value], key string, v Value) {
	t.Helper()
	require.NoError(t, s.Write(context.Background(), key, v), "Write(%q)", key)
}

func testMissingKey(t *testing.T, s session.StorageAdapter[Value]) {
	v, found, err := s.Read(context.Background(), "missing")
	require.NoError(t, err)
	assert.False(t, found)
	assert.Equal(t, Value{}, normalize(v), "value of a missing key")
}

func testRoundTrip(t *testing.T, s session.StorageAdapter[Value]) {
	for _, c := range []struct {
		name string
		v    Value
	}{
		{"full", sample("x")},
		{"zero", Value{}},
		{"empty slice and map", Value{Tags: []string{}, Attrs: map[string]string{}}},
		{"negative", Value{Count: -123456789, Tags: []string{"x"}}},
		{"unicode and escapes", Value{
			Name:  "Ünïcødé ✓ 日本語 🎉 \"quoted\" \\ back\tslash\nnew line <html>&",
			Tags:  []string{"ключ", "\u2028", "null"},
			Attrs: map[string]string{"é": "ü", "": "empty key", "a b": "c:d/e"},
		}},
		{"many elements", Value{
			Name:  strings.Repeat("long ", 1000),
			Tags:  manyTags(200),
			Attrs: manyAttrs(200),
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := "round-trip " + c.name
			write(t, s, key, c.v)
			got, found, err := s.Read(context.Background(), key)
			require.NoError(t, err)
			require.True(t, found, "a written value is found, even the zero Value")
			assert.Equal(t, normalize(c.v), normalize(got))
			if len(c.v.Tags) > 0 {
				assert.Equal(t, c.v.Tags, got.Tags, "slice order is kept")
			}
		})
	}
}

func manyTags(n int) []string {
	tags := make([]string, n)
	for i := range tags {
		tags[i] = fmt.Sprintf("tag-%03d", n-i) // not sorted: order must survive
	}
	return tags
}

func manyAttrs(n int) map[string]string {
	attrs := make(map[string]string, n)
	for i := range n {
		attrs[fmt.Sprintf("k%d", i)] = fmt.Sprintf("v%d", i)
	}
	return attrs
}

func testOverwrite(t *testing.T, s session.StorageAdapter[Value]) {
	first := Value{
		Name:  "first",
		Count: 1,
		Tags:  []string{"a", "b", "c"},
		Attrs: map[string]string{"old": "1", "kept?": "no"},
	}
	second := Value{
		Name:  "second",
		Count: 2,
		Tags:  []string{"z"},
		Attrs: map[string]string{"new": "2"},
	}
	write(t, s, "k", first)
	write(t, s, "k", second)
	assertStored(t, s, "k", second) // no leftover map keys or slice elements

	// Overwriting with a zero Value clears every field.
	write(t, s, "k", Value{})
	assertStored(t, s, "k", Value{})
}

func testDeleteThenRead(t *testing.T, s session.StorageAdapter[Value]) {
	ctx := context.Background()
	write(t, s, "k", sample("k"))
	write(t, s, "other", sample("other"))
	require.NoError(t, s.Delete(ctx, "k"))
	assertMissing(t, s, "k")
	assertStored(t, s, "other", sample("other"))

	// A deleted key can be written again.
	write(t, s, "k", sample("again"))
	assertStored(t, s, "k", sample("again"))
}

func testDeleteMissingKey(t *testing.T, s session.StorageAdapter[Value]) {
	ctx := context.Background()
	assert.NoError(t, s.Delete(ctx, "never-written"), "delete of a missing key")
	write(t, s, "k", sample("k"))
	require.NoError(t, s.Delete(ctx, "k"))
	assert.NoError(t, s.Delete(ctx, "k"), "second delete of the same key")
	assertMissing(t, s, "k")
}

// suiteKeys are keys that must not collide with one another: shapes the
// session key functions produce and shapes that trip naive stores (prefix
// matching, case folding, trimming, path or separator handling).
func suiteKeys() []string {
	return []string{
		"1", "11", "12", "1:1", "1:12", "11:2",
		"-1001234567890", "-1001234567890:42", "42:-1001234567890",
		"prefix:chat:1", "prefix:chat:1:user:2", "prefix/chat/1", "prefix\\chat\\1",
		"key", "Key", "KEY",
		"with space", "with  space", " leading", "trailing ", "tab\there",
		"a:b", "a/b", "a.b", "a*b", "a?b", "a%b", "a_b", "a'b", `a"b`, "a;b", "a#b",
		"ключ", "日本語", "emoji 🎉", "é", "e\u0301", // é precomposed and decomposed
		strings.Repeat("long", 64),
		strings.Repeat("long", 64) + "!",
	}
}

func testIndependentKeys(t *testing.T, s session.StorageAdapter[Value]) {
	ctx := context.Background()
	keys := suiteKeys()
	for _, k := range keys {
		write(t, s, k, sample(k))
	}
	for _, k := range keys {
		assertStored(t, s, k, sample(k))
	}

	// Overwriting or deleting one key touches no other.
	changed, deleted := keys[0], keys[len(keys)-1]
	write(t, s, changed, sample("changed"))
	require.NoError(t, s.Delete(ctx, deleted))
	for _, k := range keys {
		switch k {
		case changed:
			assertStored(t, s, k, sample("changed"))
		case deleted:
			assertMissing(t, s, k)
		default:
			assertStored(t, s, k, sample(k))
		}
	}
}

func testEmptyKey(t *testing.T, s session.StorageAdapter[Value]) {
	ctx := context.Background()
	if err := s.Write(ctx, "", sample("empty")); err != nil {
		// Allowed: the store rejects the empty key. It must not have
		// stored anything for it.
		t.Logf("store rejects the empty key (allowed): %v", err)
		assertMissing(t, s, "")
		return
	}
	assertStored(t, s, "", sample("empty"))
	write(t, s, "x", sample("x"))
	assertStored(t, s, "", sample("empty"))
	require.NoError(t, s.Delete(ctx, ""))
	assertMissing(t, s, "")
	assertStored(t, s, "x", sample("x"))
}

func testNoAliasing(t *testing.T, s session.StorageAdapter[Value]) {
	ctx := context.Background()

	v := sample("k")
	write(t, s, "k", v)
	v.Name = "changed"
	v.Count++
	v.Tags[0] = "changed"
	v.Tags = append(v.Tags, "appended")
	v.Attrs["lang"] = "changed"
	v.Attrs["added"] = "x"
	assertStored(t, s, "k", sample("k"))

	got, found, err := s.Read(ctx, "k")
	require.NoError(t, err)
	require.True(t, found)
	require.NotEmpty(t, got.Tags)
	require.NotNil(t, got.Attrs)
	got.Tags[0] = "changed"
	got.Tags[1] = "changed"
	got.Attrs["lang"] = "changed"
	delete(got.Attrs, "seed")
	assertStored(t, s, "k", sample("k"))

	// Two reads do not share memory either.
	a, _, err := s.Read(ctx, "k")
	require.NoError(t, err)
	b, _, err := s.Read(ctx, "k")
	require.NoError(t, err)
	a.Tags[0] = "changed"
	a.Attrs["lang"] = "changed"
	assert.Equal(t, sample("k"), b, "second Read after mutating the first")
}

func testCancelledContext(t *testing.T, s session.StorageAdapter[Value]) {
	write(t, s, "k", sample("before"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, found, err := s.Read(ctx, "k")
	assert.ErrorIs(t, err, context.Canceled, "Read")
	assert.False(t, found, "Read with a cancelled context reports found")
	assert.ErrorIs(t, s.Write(ctx, "k", sample("after")), context.Canceled, "Write")
	assert.ErrorIs(t, s.Write(ctx, "new", sample("new")), context.Canceled, "Write of a new key")
	assert.ErrorIs(t, s.Delete(ctx, "k"), context.Canceled, "Delete")

	if it, ok := s.(session.Iterator[Value]); ok && canList(it) {
		assertSeqCancelled(t, "Keys", it.Keys(ctx))
		assertSeqCancelled(t, "Values", it.Values(ctx))
		assertSeqCancelled(t, "Entries", it.Entries(ctx))
	}

	// None of the cancelled calls changed anything.
	assertStored(t, s, "k", sample("before"))
	assertMissing(t, s, "new")
}

// assertSeqCancelled checks that seq, made with a cancelled context, yields
// context.Canceled and then stops.
func assertSeqCancelled[V any](t *testing.T, name string, seq func(yield func(V, error) bool)) {
	t.Helper()
	var errs []error
	for _, err := range seq {
		errs = append(errs, err)
		if len(errs) > 1000 {
			break // a sequence that never stops
		}
	}
	require.NotEmpty(t, errs, "%s with a cancelled context yielded nothing", name)
	// The error ends the sequence: nothing may follow it.
	assert.ErrorIs(t, errs[len(errs)-1], context.Canceled, "%s with a cancelled context: last yield", name)
	for _, err := range errs[:len(errs)-1] {
		assert.NoError(t, err, "%s with a cancelled context: yield after an error", name)
	}
}

func testConcurrentDistinct(t *testing.T, s session.StorageAdapter[Value]) {
	const writers, perWriter = 8, 20
	ctx := context.Background()
	key := func(w, i int) string { return fmt.Sprintf("writer-%d:key-%d", w, i) }

	var wg sync.WaitGroup
	errs := make(chan error, writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if err := s.Write(ctx, key(w, i), sample(key(w, i))); err != nil {
					errs <- fmt.Errorf("write %q: %w", key(w, i), err)
				}
				// Read back another writer's keys while they are written.
				if _, _, err := s.Read(ctx, key((w+1)%writers, i)); err != nil {
					errs <- fmt.Errorf("read %q: %w", key((w+1)%writers, i), err)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}
	for w := range writers {
		for i := range perWriter {
			assertStored(t, s, key(w, i), sample(key(w, i)))
		}
	}
}

func testConcurrentSame(t *testing.T, s session.StorageAdapter[Value]) {
	const writers, perWriter = 8, 20
	ctx := context.Background()
	written := map[string]Value{}
	for w := range writers {
		v := sample(fmt.Sprint(w))
		written[v.Name] = v
	}

	var wg sync.WaitGroup
	errs := make(chan error, 2*writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWriter {
				if err := s.Write(ctx, "same", sample(fmt.Sprint(w))); err != nil {
					errs <- fmt.Errorf("write: %w", err)
				}
				v, found, err := s.Read(ctx, "same")
				if err != nil {
					errs <- fmt.Errorf("read: %w", err)
				} else if want, ok := written[v.Name]; !found || !ok || !equal(v, want) {
					errs <- fmt.Errorf("read: found=%v %+v is none of the written values", found, v)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		assert.NoError(t, err)
	}

	got, found, err := s.Read(ctx, "same")
	require.NoError(t, err)
	require.True(t, found)
	want, ok := written[got.Name]
	if assert.True(t, ok, "final value %+v is none of the written values", got) {
		assert.Equal(t, want, got, "final value is one writer's value, whole")
	}
}

func equal(a, b Value) bool {
	return assert.ObjectsAreEqual(normalize(a), normalize(b))
}

func testIterator(t *testing.T, s session.StorageAdapter[Value]) {
	it, ok := s.(session.Iterator[Value])
	if !ok {
		t.Skip("store does not implement session.Iterator")
	}
	ctx := context.Background()
	if !canList(it) {
		t.Skip("store cannot list its sessions (its iterator reports errors.ErrUnsupported)")
	}

	// An empty store yields nothing.
	for k, err := range it.Keys(ctx) {
		require.NoError(t, err)
		t.Errorf("empty store: Keys yielded %q", k)
	}

	// Write, overwrite and delete, then expect exactly the live entries.
	live := map[string]Value{}
	for i, k := range suiteKeys() {
		write(t, s, k, sample("stale"))
		switch i % 4 {
		case 0:
			require.NoError(t, s.Delete(ctx, k))
		default:
			write(t, s, k, sample(k))
			live[k] = sample(k)
		}
	}
	var wantKeys []string
	var wantValues []Value
	var wantEntries []session.Entry[Value]
	for k, v := range live {
		wantKeys = append(wantKeys, k)
		wantValues = append(wantValues, v)
		wantEntries = append(wantEntries, session.Entry[Value]{Key: k, Value: v})
	}
	// ElementsMatch counts duplicates, so each entry must come exactly once.
	assert.ElementsMatch(t, wantKeys, collect(t, "Keys", it.Keys(ctx)), "Keys")
	assert.ElementsMatch(t, wantValues, collect(t, "Values", it.Values(ctx)), "Values")
	assert.ElementsMatch(t, wantEntries, collect(t, "Entries", it.Entries(ctx)), "Entries")

	// Breaking out of the loop stops the sequence (a sequence that kept
	// calling yield would make the range loop panic).
	n := 0
	for _, err := range it.Keys(ctx) {
		require.NoError(t, err)
		n++
		break
	}
	for _, err := range it.Values(ctx) {
		require.NoError(t, err)
		n++
		break
	}
	for _, err := range it.Entries(ctx) {
		require.NoError(t, err)
		n++
		break
	}
	assert.Equal(t, 3, n, "each sequence yields once before break")

	// Iteration does not change the store.
	for k, v := range live {
		assertStored(t, s, k, v)
	}
}

// canList reports whether it can list: a wrapper (session.Encoded) has
// the Iterator methods whatever its base store has, and reports a base
// that cannot list by yielding errors.ErrUnsupported.
func canList(it session.Iterator[Value]) bool {
	for _, err := range it.Keys(context.Background()) {
		return !errors.Is(err, errors.ErrUnsupported)
	}
	return true
}

// collect drains seq, failing the test on the first error.
func collect[V any](t *testing.T, name string, seq func(yield func(V, error) bool)) []V {
	t.Helper()
	var out []V
	for v, err := range seq {
		if err != nil {
			require.NoError(t, err, name)
		}
		out = append(out, v)
	}
	return out
}
