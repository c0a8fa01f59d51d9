// Package storagetest is a conformance suite for [session.Store]
// implementations. An adapter author calls [Run] from an ordinary test,
// giving it a function that returns an empty store:
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
//		storagetest.Run(t, func(t *testing.T) session.Store {
//			return mystore.New(openTestDB(t))
//		})
//	}
//
// Run checks the three methods of a Store, then each optional capability
// the store has, found as the middleware finds it (through Unwrap chains,
// see [session.Unwrap]): [session.Expirer], [session.Lister] and
// [session.Locker], as far as one client and no clock can. A capability
// the store lacks is reported as a skipped subtest ("store has no
// Lister"), never as a pass. The other entry points check what needs
// more:
//
//   - [RunExpiry]: an Expirer's keys expire, for real, with short TTLs;
//     writes and Touch restart the expiry; expired keys are neither read,
//     listed nor brought back.
//   - [RunLocker]: two clients of one backing store exclude each other;
//     leases are read with the lock, renewed while held, expire when their
//     holder dies, are released only by their owner, and fence the commit
//     of a holder that lost its lease ([session.ErrConflict]); each key
//     keeps the record of the updates committed to it.
//   - [RunCrossProcess]: several OS processes update the same chats
//     through the middleware and lose nothing with the store's Locker (and
//     lose updates over a view of the store without it, to show the test
//     can tell).
//   - [RunRedelivery]: an update Telegram sends again, after a crash
//     between its commit and its acknowledgement or to a second replica,
//     is applied once, through package runner against telegramtest.
//   - [RunPanics]: an update that panics in Initial, the codec or the
//     handler while its lease is held gives the lease back at once, and
//     nothing renews it.
//   - [RunBenchmarks]: single calls, updates through the middleware, and
//     64 updates in flight, with round trips per operation (rt/op).
//   - [StartFaultLoad]: increments through the middleware while the test
//     breaks connections or restarts the server; no error is hidden, no
//     value corrupt, no acknowledged increment lost.
//
// The suites never fake a clock inside the store: expiry and leases are
// checked with short real durations, bounded polls and failure-detector
// timeouts, never exact timings. The adapters in this repository
// (redisstore, pgstore, boltstore) use all of them against real servers.
// Run the suites with -race: some subtests call the store from many
// goroutines at once.
package storagetest

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// waitLimit is the failure detector of the suites: how long a call that
// must finish (a Lock of a free key, a listing, an expiry) may take
// before the suite calls it hung. It is generous, so that a loaded
// machine never fails a check that a correct store passes.
const waitLimit = 10 * time.Second

// Run checks that the store made by newStore behaves as [session.Store]
// requires, then checks the capabilities it has. newStore returns an
// empty store each call.
//
// Each check is a subtest of t with its own store: newStore is called
// with the subtest's t, so it may use t.Cleanup to release the store, and
// stores are never shared between subtests. Subtests run one after
// another. A capability's subtest calls newStore once more, to find out
// whether the store has it.
//
// What the suite requires of every store:
//
//   - Read of a missing key reports found == false and a nil error.
//   - Write then Read returns the same bytes, whatever they are (binary,
//     NUL bytes, invalid UTF-8, a megabyte); an empty value is found, with
//     length 0. A write replaces the whole value: nothing of a longer old
//     value is left.
//   - Delete removes only its key; deleting a missing key returns nil; a
//     deleted key can be written again.
//   - Keys are opaque strings compared byte for byte: case, spaces, ':',
//     '/', glob and LIKE wildcards, quotes, control characters, unicode
//     (precomposed and decomposed) and keys of a kilobyte all work, and no
//     key collides with another. The empty key and keys that are not
//     valid UTF-8 or hold a NUL byte are optional: a store may reject
//     them with an error from Write (storing nothing), but if Write
//     accepts one, it must behave like any other key.
//   - A call whose context is already cancelled returns an error that
//     errors.Is context.Canceled and changes nothing; this holds for
//     every method of every capability, Lease.Commit included.
//   - Concurrent writers to distinct keys all land; concurrent writers
//     to one key leave one of the written values, whole, and readers
//     meanwhile see only whole values.
//
// And of each capability, in the subtests "Expirer", "Lister" and
// "Locker" (skipped, with the reason, for a store without it):
//
//   - Expirer: WriteTTL with a long TTL stores the value as Write does;
//     Touch of a live key keeps its value; Touch of a missing key returns
//     nil and creates nothing. Expiry itself is [RunExpiry]'s.
//   - Lister: Keys yields every live key exactly once (written,
//     overwritten and deleted keys, odd keys, more keys than a page), and
//     nothing for an empty store; breaking out of the loop stops it; the
//     loop body may call the store (a store that holds a transaction
//     across yield deadlocks here); a cancelled context yields one error
//     wrapping context.Canceled, with an empty key, and stops.
//   - Locker, with one client: the Lease's Value is what was stored when
//     the lock was taken; Commit of each Op does what it says and frees
//     the key; Release frees the key and changes nothing, and a second
//     Release (or a Commit after Release or Commit) neither writes nor
//     frees the key's next holder; a held key blocks a second Lock of the
//     same client until its deadline (an error wrapping
//     context.DeadlineExceeded) but not other keys; goroutines
//     incrementing a counter under the lock never overlap nor lose an
//     increment. Exclusion across clients, renewal, lease expiry and
//     fencing are [RunLocker]'s: in one client, an in-process lock table
//     would pass them without locking across processes at all.
func Run(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	for _, c := range []struct {
		name string
		test func(t *testing.T, s session.Store)
	}{
		{"MissingKey", testMissingKey},
		{"RoundTrip", testRoundTrip},
		{"EmptyValue", testEmptyValue},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"DeleteMissingKey", testDeleteMissingKey},
		{"IndependentKeys", testIndependentKeys},
		{"OptionalKeys", testOptionalKeys},
		{"CancelledContext", testCancelledContext},
		{"ConcurrentWritersDistinctKeys", testConcurrentDistinct},
		{"ConcurrentWritersSameKey", testConcurrentSame},
	} {
		t.Run(c.name, func(t *testing.T) {
			c.test(t, mustStore(t, newStore(t)))
		})
	}
	// Each capability's checks are subtests with a store each.
	for _, c := range []struct {
		name string
		test func(t *testing.T, newStore func(t *testing.T) session.Store)
	}{
		{"Expirer", testExpirer},
		{"Lister", testLister},
		{"Locker", testLocker},
	} {
		t.Run(c.name, func(t *testing.T) { c.test(t, newStore) })
	}
}

// mustStore fails t if s is nil (or a typed nil).
func mustStore(t *testing.T, s session.Store) session.Store {
	t.Helper()
	require.False(t, isNil(s), "the store function returned a nil store")
	return s
}

func isNil(s any) bool {
	if s == nil {
		return true
	}
	v := reflect.ValueOf(s)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Slice, reflect.Func, reflect.Chan, reflect.Interface:
		return v.IsNil()
	}
	return false
}

// assertValue checks that key holds want.
func assertValue(t *testing.T, s session.Store, key string, want []byte) bool {
	t.Helper()
	got, found, err := s.Read(context.Background(), key)
	if !assert.NoError(t, err, "Read(%q)", key) || !assert.True(t, found, "Read(%q): not found", key) {
		return false
	}
	return assertBytes(t, want, got, "Read(%q)", key)
}

// assertBytes compares byte values without printing a megabyte on a
// mismatch.
func assertBytes(t *testing.T, want, got []byte, msg string, args ...any) bool {
	t.Helper()
	if bytes.Equal(want, got) {
		return true
	}
	what := fmt.Sprintf(msg, args...)
	if len(want) > 200 || len(got) > 200 {
		i := 0
		for i < len(want) && i < len(got) && want[i] == got[i] {
			i++
		}
		return assert.Fail(t, fmt.Sprintf("%s: got %d bytes, want %d; they differ from byte %d", what, len(got), len(want), i))
	}
	return assert.Equal(t, want, got, what)
}

// assertMissing checks that key holds nothing.
func assertMissing(t *testing.T, s session.Store, key string) bool {
	t.Helper()
	got, found, err := s.Read(context.Background(), key)
	if !assert.NoError(t, err, "Read(%q)", key) {
		return false
	}
	return assert.False(t, found, "Read(%q): found %q, want missing", key, clip(got))
}

func clip(b []byte) []byte {
	if len(b) > 64 {
		return b[:64]
	}
	return b
}

func write(t *testing.T, s session.Store, key string, v []byte) {
	t.Helper()
	require.NoError(t, s.Write(context.Background(), key, v), "Write(%q)", key)
}

func testMissingKey(t *testing.T, s session.Store) {
	_, found, err := s.Read(context.Background(), "missing")
	require.NoError(t, err)
	assert.False(t, found)
	write(t, s, "other", []byte("x"))
	assertMissing(t, s, "missing")
}

// allBytes is every byte value once, in an order that is not sorted.
func allBytes() []byte {
	b := make([]byte, 256)
	for i := range b {
		b[i] = byte(255 - i)
	}
	return b
}

// large returns n bytes of a pattern that no truncation or chunking bug
// keeps intact.
func large(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

// values are the values every store must round-trip.
func values() []struct {
	name string
	v    []byte
} {
	return []struct {
		name string
		v    []byte
	}{
		{"json", []byte(`{"name":"x","count":7,"tags":["a","b"],"attrs":{"lang":"en"}}`)},
		{"one byte", []byte{'x'}},
		{"NUL bytes", []byte{0, 0, 'a', 0}},
		{"every byte", allBytes()},
		{"invalid UTF-8", []byte{0xff, 0xfe, 0x80, 'a', 0xc3}},
		{"unicode", []byte("Ünïcødé ✓ 日本語 🎉 \u2028 \"quoted\" \\")},
		{"megabyte", large(1 << 20)},
	}
}

func testRoundTrip(t *testing.T, s session.Store) {
	for _, c := range values() {
		t.Run(c.name, func(t *testing.T) {
			key := "round-trip " + c.name
			write(t, s, key, c.v)
			assertValue(t, s, key, c.v)
		})
	}
}

func testEmptyValue(t *testing.T, s session.Store) {
	write(t, s, "empty", []byte{})
	got, found, err := s.Read(context.Background(), "empty")
	require.NoError(t, err)
	assert.True(t, found, "an empty value is found")
	assert.Empty(t, got)

	// Empty and missing stay apart after an overwrite and a delete.
	write(t, s, "k", []byte("x"))
	write(t, s, "k", []byte{})
	got, found, err = s.Read(context.Background(), "k")
	require.NoError(t, err)
	assert.True(t, found, "a value overwritten with an empty one is found")
	assert.Empty(t, got)
	require.NoError(t, s.Delete(context.Background(), "k"))
	assertMissing(t, s, "k")
}

func testOverwrite(t *testing.T, s session.Store) {
	long := large(100 << 10)
	write(t, s, "k", long)
	write(t, s, "k", []byte("short"))
	assertValue(t, s, "k", []byte("short")) // nothing of the long value left
	write(t, s, "k", long)
	assertValue(t, s, "k", long)
	write(t, s, "k", []byte(`{"n":2}`))
	write(t, s, "k", []byte(`{"n":1}`))
	assertValue(t, s, "k", []byte(`{"n":1}`))
}

func testDelete(t *testing.T, s session.Store) {
	ctx := context.Background()
	write(t, s, "k", []byte("k"))
	write(t, s, "other", []byte("other"))
	write(t, s, "k2", []byte("k2")) // shares a prefix with the deleted key
	require.NoError(t, s.Delete(ctx, "k"))
	assertMissing(t, s, "k")
	assertValue(t, s, "other", []byte("other"))
	assertValue(t, s, "k2", []byte("k2"))

	// A deleted key can be written again.
	write(t, s, "k", []byte("again"))
	assertValue(t, s, "k", []byte("again"))
}

func testDeleteMissingKey(t *testing.T, s session.Store) {
	ctx := context.Background()
	assert.NoError(t, s.Delete(ctx, "never-written"), "Delete of a missing key")
	write(t, s, "k", []byte("k"))
	require.NoError(t, s.Delete(ctx, "k"))
	assert.NoError(t, s.Delete(ctx, "k"), "second Delete of the same key")
	assertMissing(t, s, "k")
	assertMissing(t, s, "never-written")
}

// suiteKeys are keys every store must keep apart: shapes the session key
// functions and prefixes produce, and shapes that trip naive stores
// (prefix matching, case folding, trimming, unicode normalisation, path
// or separator handling, glob and LIKE patterns, quoting, long keys).
func suiteKeys() []string {
	return []string{
		"1", "11", "12", "1:1", "1:12", "11:2",
		"-1001234567890", "-1001234567890:42", "42:-1001234567890", "7/-1001234567890",
		"prefix:chat:1", "prefix:chat:1:user:2", "prefix/chat/1", "prefix\\chat\\1",
		"key", "Key", "KEY",
		"with space", "with  space", " leading", "trailing ", "tab\there", "new\nline", "ctrl\x01\x1f",
		"a:b", "a/b", "a.b", "a*b", "a?b", "a[b]", "a[^b]", "a{b}", "a\\*", "a%b", "%", "_", "a_b",
		"a'b", `a"b`, "a;b", "a#b", "a`b", "a$b", "a|b", "--", "/*",
		"ключ", "日本語", "emoji 🎉", "é", "e\u0301", // é precomposed and decomposed
		"\u00a0", "\ufeffbom", "\u200b",
		strings.Repeat("long", 64),
		strings.Repeat("long", 64) + "!",
		strings.Repeat("k", 1024),
	}
}

// optionalKeys are keys a store may refuse (PostgreSQL text cannot hold
// them, bbolt has no empty key) but must keep apart if it takes them.
func optionalKeys() []string {
	return []string{"", "\x00", "a\x00b", "a\x00c", "\xff\xfe", "a\x80b", "\xc3"}
}

func testIndependentKeys(t *testing.T, s session.Store) {
	ctx := context.Background()
	keys := suiteKeys()
	for _, k := range keys {
		write(t, s, k, []byte("value of "+k))
	}
	for _, k := range keys {
		assertValue(t, s, k, []byte("value of "+k))
	}

	// Overwriting or deleting one key touches no other.
	changed, deleted := keys[0], keys[len(keys)-1]
	write(t, s, changed, []byte("changed"))
	require.NoError(t, s.Delete(ctx, deleted))
	for _, k := range keys {
		switch k {
		case changed:
			assertValue(t, s, k, []byte("changed"))
		case deleted:
			assertMissing(t, s, k)
		default:
			assertValue(t, s, k, []byte("value of "+k))
		}
	}
}

func testOptionalKeys(t *testing.T, s session.Store) {
	ctx := context.Background()
	write(t, s, "x", []byte("x"))
	var taken []string
	for _, k := range optionalKeys() {
		if err := s.Write(ctx, k, []byte("value of "+k)); err != nil {
			// Allowed: the store rejects the key. It must not have
			// stored anything for it.
			t.Logf("store rejects key %q (allowed): %v", k, err)
			_, found, err := s.Read(ctx, k)
			if err == nil {
				assert.False(t, found, "key %q: Write failed but Read finds it", k)
			}
			continue
		}
		taken = append(taken, k)
	}
	for _, k := range taken {
		assertValue(t, s, k, []byte("value of "+k))
	}
	for _, k := range taken {
		require.NoError(t, s.Delete(ctx, k), "Delete(%q)", k)
		assertMissing(t, s, k)
	}
	assertValue(t, s, "x", []byte("x"))
}

func testCancelledContext(t *testing.T, s session.Store) {
	write(t, s, "k", []byte("before"))
	ctx, cancel := context.WithCancel(context.Background())
	cancel()

	_, found, err := s.Read(ctx, "k")
	assert.ErrorIs(t, err, context.Canceled, "Read")
	assert.False(t, found, "Read with a cancelled context reports found")
	assert.ErrorIs(t, s.Write(ctx, "k", []byte("after")), context.Canceled, "Write")
	assert.ErrorIs(t, s.Write(ctx, "new", []byte("new")), context.Canceled, "Write of a new key")
	assert.ErrorIs(t, s.Delete(ctx, "k"), context.Canceled, "Delete")

	// None of the cancelled calls changed anything. (The capabilities'
	// cancelled calls are checked in their subtests.)
	assertValue(t, s, "k", []byte("before"))
	assertMissing(t, s, "new")
}

// collectErrs drains errs into t.
func collectErrs(t *testing.T, errs <-chan error) {
	t.Helper()
	for err := range errs {
		assert.NoError(t, err)
	}
}

func testConcurrentDistinct(t *testing.T, s session.Store) {
	const writers, perWriter = 8, 20
	ctx := context.Background()
	key := func(w, i int) string { return fmt.Sprintf("writer-%d:key-%d", w, i) }
	val := func(w, i int) []byte { return []byte("value of " + key(w, i)) }

	var wg sync.WaitGroup
	errs := make(chan error, 2*writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range perWriter {
				if err := s.Write(ctx, key(w, i), val(w, i)); err != nil {
					errs <- fmt.Errorf("write %q: %w", key(w, i), err)
				}
				// Read another writer's keys while they are written:
				// missing or whole.
				o := (w + 1) % writers
				if v, found, err := s.Read(ctx, key(o, i)); err != nil {
					errs <- fmt.Errorf("read %q: %w", key(o, i), err)
				} else if found && !bytes.Equal(v, val(o, i)) {
					errs <- fmt.Errorf("read %q: %q is not what was written", key(o, i), v)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	collectErrs(t, errs)
	for w := range writers {
		for i := range perWriter {
			assertValue(t, s, key(w, i), val(w, i))
		}
	}
}

func testConcurrentSame(t *testing.T, s session.Store) {
	const writers, perWriter = 8, 20
	ctx := context.Background()
	// Values of different lengths, so that a torn write shows.
	val := func(w int) []byte { return bytes.Repeat([]byte{byte('a' + w)}, 1+w*997) }

	var wg sync.WaitGroup
	errs := make(chan error, 2*writers*perWriter)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range perWriter {
				if err := s.Write(ctx, "same", val(w)); err != nil {
					errs <- fmt.Errorf("write: %w", err)
				}
				v, found, err := s.Read(ctx, "same")
				if err != nil {
					errs <- fmt.Errorf("read: %w", err)
				} else if !found || !isWritten(v, writers, val) {
					errs <- fmt.Errorf("read: found=%v, %d bytes %q...: none of the written values", found, len(v), clip(v))
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	collectErrs(t, errs)

	got, found, err := s.Read(ctx, "same")
	require.NoError(t, err)
	require.True(t, found)
	assert.True(t, isWritten(got, writers, val), "final value (%d bytes) is one writer's value, whole", len(got))
}

func isWritten(v []byte, writers int, val func(int) []byte) bool {
	for w := range writers {
		if bytes.Equal(v, val(w)) {
			return true
		}
	}
	return false
}
