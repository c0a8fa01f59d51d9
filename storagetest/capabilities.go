package storagetest

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// long is a TTL no check outlives: a key written with it is live for the
// whole suite.
const long = time.Hour

// testExpirer checks the parts of session.Expirer that need no clock:
// expiry itself is RunExpiry's.
func testExpirer(t *testing.T, newStore func(t *testing.T) session.Store) {
	if _, ok := session.Unwrap[session.Expirer](mustStore(t, newStore(t))); !ok {
		t.Skip("store has no Expirer (the middleware keeps a session TTL in the stored data)")
	}
	ctx := context.Background()
	run := func(name string, f func(t *testing.T, s session.Store, ex session.Expirer)) {
		t.Run(name, func(t *testing.T) {
			s := mustStore(t, newStore(t))
			ex, ok := session.Unwrap[session.Expirer](s)
			require.True(t, ok, "a second store of newStore has no Expirer")
			f(t, s, ex)
		})
	}

	run("WriteTTL", func(t *testing.T, s session.Store, ex session.Expirer) {
		for _, c := range values() {
			require.NoError(t, ex.WriteTTL(ctx, "k "+c.name, c.v, long), "WriteTTL(%q)", c.name)
			assertValue(t, s, "k "+c.name, c.v)
		}
		require.NoError(t, ex.WriteTTL(ctx, "empty", []byte{}, long))
		got, found, err := s.Read(ctx, "empty")
		require.NoError(t, err)
		assert.True(t, found, "an empty value written with WriteTTL is found")
		assert.Empty(t, got)
	})

	run("Overwrite", func(t *testing.T, s session.Store, ex session.Expirer) {
		// WriteTTL and Write replace each other's values whole.
		write(t, s, "k", large(10<<10))
		require.NoError(t, ex.WriteTTL(ctx, "k", []byte("ttl"), long))
		assertValue(t, s, "k", []byte("ttl"))
		write(t, s, "k", []byte("plain"))
		assertValue(t, s, "k", []byte("plain"))
		require.NoError(t, ex.WriteTTL(ctx, "k", []byte("ttl again"), long))
		assertValue(t, s, "k", []byte("ttl again"))
		require.NoError(t, s.Delete(ctx, "k"))
		assertMissing(t, s, "k")
	})

	run("Touch", func(t *testing.T, s session.Store, ex session.Expirer) {
		assert.NoError(t, ex.Touch(ctx, "missing", long), "Touch of a missing key")
		assertMissing(t, s, "missing") // touching creates nothing

		require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v"), long))
		require.NoError(t, ex.Touch(ctx, "k", long))
		assertValue(t, s, "k", []byte("v"))
		write(t, s, "plain", []byte("p"))
		require.NoError(t, ex.Touch(ctx, "plain", long), "Touch of a key written without TTL")
		assertValue(t, s, "plain", []byte("p"))

		require.NoError(t, s.Delete(ctx, "k"))
		assert.NoError(t, ex.Touch(ctx, "k", long), "Touch of a deleted key")
		assertMissing(t, s, "k")
	})

	run("CancelledContext", func(t *testing.T, s session.Store, ex session.Expirer) {
		require.NoError(t, ex.WriteTTL(ctx, "k", []byte("before"), long))
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		assert.ErrorIs(t, ex.WriteTTL(cancelled, "k", []byte("after"), long), context.Canceled, "WriteTTL")
		assert.ErrorIs(t, ex.WriteTTL(cancelled, "new", []byte("new"), long), context.Canceled, "WriteTTL of a new key")
		assert.ErrorIs(t, ex.Touch(cancelled, "k", long), context.Canceled, "Touch")
		assertValue(t, s, "k", []byte("before"))
		assertMissing(t, s, "new")
	})
}

// testLister checks session.Lister.
func testLister(t *testing.T, newStore func(t *testing.T) session.Store) {
	if _, ok := session.Unwrap[session.Lister](mustStore(t, newStore(t))); !ok {
		t.Skip("store has no Lister (Session.Entries cannot list its sessions)")
	}
	ctx := context.Background()
	run := func(name string, f func(t *testing.T, s session.Store, ls session.Lister)) {
		t.Run(name, func(t *testing.T) {
			s := mustStore(t, newStore(t))
			ls, ok := session.Unwrap[session.Lister](s)
			require.True(t, ok, "a second store of newStore has no Lister")
			f(t, s, ls)
		})
	}

	run("Empty", func(t *testing.T, s session.Store, ls session.Lister) {
		assert.Empty(t, listKeys(t, ls), "Keys of an empty store")
	})

	run("LiveKeys", func(t *testing.T, s session.Store, ls session.Lister) {
		// Write, overwrite and delete, then expect exactly the live keys.
		var live []string
		for i, k := range suiteKeys() {
			write(t, s, k, []byte("stale"))
			if i%4 == 0 {
				require.NoError(t, s.Delete(ctx, k))
				continue
			}
			write(t, s, k, []byte("value of "+k))
			live = append(live, k)
		}
		// ElementsMatch counts duplicates: each key must come exactly
		// once.
		assert.ElementsMatch(t, live, listKeys(t, ls), "Keys")

		// Listing changes nothing.
		for _, k := range live {
			assertValue(t, s, k, []byte("value of "+k))
		}
	})

	run("ManyKeys", func(t *testing.T, s session.Store, ls session.Lister) {
		// More keys than a page of any paging store.
		const n = 1200
		want := make([]string, n)
		var wg sync.WaitGroup
		errs := make(chan error, n)
		for w := range 8 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += 8 {
					want[i] = "many:" + strconv.Itoa(i)
					if err := s.Write(ctx, want[i], []byte{byte(i)}); err != nil {
						errs <- err
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		collectErrs(t, errs)
		got := listKeys(t, ls)
		assert.Len(t, got, n)
		assert.ElementsMatch(t, want, got, "Keys")
	})

	run("Break", func(t *testing.T, s session.Store, ls session.Lister) {
		for i := range 5 {
			write(t, s, "k"+strconv.Itoa(i), []byte("v"))
		}
		// Breaking out of the loop stops the sequence: a sequence that
		// went on calling yield would make the range loop panic.
		n := 0
		for _, err := range ls.Keys(ctx) {
			require.NoError(t, err)
			n++
			break
		}
		assert.Equal(t, 1, n)
	})

	run("StoreCallsInLoop", func(t *testing.T, s session.Store, ls session.Lister) {
		// The loop body may read, write and delete: a store that holds a
		// lock or a transaction across yield deadlocks here.
		var want []string
		original := map[string]bool{}
		for i := range 50 {
			k := "k" + strconv.Itoa(i)
			want = append(want, k)
			original[k] = true
			write(t, s, k, []byte("v"))
		}
		done := make(chan []string, 1)
		var loopErr atomic.Value
		go func() {
			var seen []string
			for k, err := range ls.Keys(ctx) {
				if err != nil {
					loopErr.Store(err)
					break
				}
				seen = append(seen, k)
				if !original[k] {
					continue // written by the loop: writing again for it could go on forever
				}
				if _, _, err := s.Read(ctx, k); err != nil {
					loopErr.Store(err)
					break
				}
				if err := s.Write(ctx, "written in loop "+k, []byte("w")); err != nil {
					loopErr.Store(err)
					break
				}
				if err := s.Delete(ctx, k); err != nil {
					loopErr.Store(err)
					break
				}
			}
			done <- seen
		}()
		var seen []string
		select {
		case seen = <-done:
		case <-time.After(waitLimit):
			t.Fatalf("a listing whose loop body calls the store did not end in %v: the store deadlocks on itself", waitLimit)
		}
		if err, _ := loopErr.Load().(error); err != nil {
			require.NoError(t, err, "store call in the loop body")
		}
		// Every key that was there and untouched until it was yielded
		// is yielded; keys written during the listing may or may not be.
		set := map[string]bool{}
		for _, k := range seen {
			set[k] = true
		}
		for _, k := range want {
			assert.True(t, set[k], "key %q was not yielded", k)
			assertMissing(t, s, k)
		}
	})

	run("CancelledContext", func(t *testing.T, s session.Store, ls session.Lister) {
		write(t, s, "k", []byte("v"))
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		var keys []string
		var errs []error
		for k, err := range ls.Keys(cancelled) {
			keys = append(keys, k)
			errs = append(errs, err)
			if len(errs) > 1000 {
				break // a sequence that never stops
			}
		}
		require.NotEmpty(t, errs, "Keys with a cancelled context yielded nothing")
		// The error ends the sequence: nothing may follow it.
		last := len(errs) - 1
		assert.ErrorIs(t, errs[last], context.Canceled, "Keys with a cancelled context: last yield")
		assert.Empty(t, keys[last], "the error is yielded with an empty key")
		for _, err := range errs[:last] {
			assert.NoError(t, err, "Keys with a cancelled context: a yield after an error")
		}
		assertValue(t, s, "k", []byte("v"))
	})
}

// listKeys drains ls.Keys, failing t on an error (or a listing that does
// not end), and returns the keys sorted.
func listKeys(t *testing.T, ls session.Lister) []string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	keys := []string{}
	for k, err := range ls.Keys(ctx) {
		require.NoError(t, err, "Keys")
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// changeTTL is the TTL of the Changes the suite commits: long on an
// Expirer, zero on other stores (as session.Change requires).
func changeTTL(s session.Store) time.Duration {
	if _, ok := session.Unwrap[session.Expirer](s); ok {
		return long
	}
	return 0
}

// lockWithin takes key's lock, failing t if that takes more than
// waitLimit: the key is expected to be free.
func lockWithin(t *testing.T, lk session.Locker, key string) session.Lease {
	t.Helper()
	return lockMarked(t, lk, key, "")
}

// lockMarked is lockWithin for the update named by mark.
func lockMarked(t *testing.T, lk session.Locker, key, mark string) session.Lease {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	l, err := lk.Lock(ctx, key, mark)
	require.NoError(t, err, "Lock(%q, %q) of a free key", key, mark)
	require.NotNil(t, l, "Lock(%q, %q) returned a nil Lease", key, mark)
	return l
}

// assertFree checks that key's lock can be taken (within waitLimit) and
// releases it.
func assertFree(t *testing.T, lk session.Locker, key, what string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	l, err := lk.Lock(ctx, key, "")
	if assert.NoError(t, err, "%s: Lock(%q) of a key that should be free", what, key) {
		l.Release()
	}
}

// assertHeld checks that key's lock cannot be taken within wait: a Lock
// with that deadline fails with an error wrapping
// context.DeadlineExceeded.
func assertHeld(t *testing.T, lk session.Locker, key string, wait time.Duration, what string) bool {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	start := time.Now()
	l, err := lk.Lock(ctx, key, "")
	if err == nil {
		l.Release()
		return assert.Fail(t, fmt.Sprintf("%s: Lock(%q) took a key that should be held", what, key))
	}
	ok := assert.ErrorIs(t, err, context.DeadlineExceeded, "%s: Lock(%q) of a held key past its deadline", what, key)
	return assert.Less(t, time.Since(start), wait+waitLimit, "%s: Lock(%q) did not give up at its deadline", what, key) && ok
}

// assertLeaseValue checks the value a lease read with its lock.
func assertLeaseValue(t *testing.T, l session.Lease, want []byte, wantFound bool, what string) bool {
	t.Helper()
	got, found := l.Value()
	if !wantFound {
		return assert.False(t, found, "%s: Value() found %q, want missing", what, clip(got))
	}
	return assert.True(t, found, "%s: Value() not found", what) && assertBytes(t, want, got, "%s: Value()", what)
}

// heldWait is how long the single-client checks try to take a key that
// must be held: a failure detector, not a timing.
const heldWait = 100 * time.Millisecond

// testLocker checks session.Locker within one client of the store.
func testLocker(t *testing.T, newStore func(t *testing.T) session.Store) {
	if _, ok := session.Unwrap[session.Locker](mustStore(t, newStore(t))); !ok {
		t.Skip("store has no Locker (the middleware locks its keys in a process-wide table); " +
			"locking across clients is checked by RunLocker")
	}
	ctx := context.Background()
	run := func(name string, f func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration)) {
		t.Run(name, func(t *testing.T) {
			s := mustStore(t, newStore(t))
			lk, ok := session.Unwrap[session.Locker](s)
			require.True(t, ok, "a second store of newStore has no Locker")
			f(t, s, lk, changeTTL(s))
		})
	}

	run("Value", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		l := lockWithin(t, lk, "missing")
		assertLeaseValue(t, l, nil, false, "missing key")
		l.Release()
		for _, c := range values() {
			write(t, s, "k "+c.name, c.v)
			l := lockWithin(t, lk, "k "+c.name)
			assertLeaseValue(t, l, c.v, true, c.name)
			l.Release()
		}
		write(t, s, "empty", []byte{})
		l = lockWithin(t, lk, "empty")
		got, found := l.Value()
		assert.True(t, found, "an empty value is found")
		assert.Empty(t, got)
		l.Release()

		// The value is read with the lock, not remembered from an
		// earlier lease of the same client.
		l = lockWithin(t, lk, "k")
		require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("1"), TTL: ttl}))
		write(t, s, "k", []byte("2"))
		l = lockWithin(t, lk, "k")
		assertLeaseValue(t, l, []byte("2"), true, "after a plain Write")
		l.Release()
		require.NoError(t, s.Delete(ctx, "k"))
		l = lockWithin(t, lk, "k")
		assertLeaseValue(t, l, nil, false, "after a plain Delete")
		l.Release()
	})

	run("CommitWrite", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		for _, c := range values() {
			l := lockWithin(t, lk, "k")
			require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: c.v, TTL: ttl}), "Commit(OpWrite %s)", c.name)
			assertValue(t, s, "k", c.v)
		}
		l := lockWithin(t, lk, "k")
		require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte{}, TTL: ttl}))
		got, found, err := s.Read(ctx, "k")
		require.NoError(t, err)
		assert.True(t, found, "an empty value committed is found")
		assert.Empty(t, got)
		assertFree(t, lk, "k", "after Commit(OpWrite)")
	})

	run("CommitKeep", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		write(t, s, "k", []byte("v"))
		l := lockWithin(t, lk, "k")
		require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpKeep}))
		assertValue(t, s, "k", []byte("v"))
		assertFree(t, lk, "k", "after Commit(OpKeep)")
		l = lockWithin(t, lk, "missing")
		require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpKeep}))
		assertMissing(t, s, "missing")
	})

	run("CommitTouch", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		write(t, s, "k", []byte("v"))
		l := lockWithin(t, lk, "k")
		require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpTouch, TTL: ttl}))
		assertValue(t, s, "k", []byte("v"))
		assertFree(t, lk, "k", "after Commit(OpTouch)")
		l = lockWithin(t, lk, "missing")
		require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpTouch, TTL: ttl}), "Commit(OpTouch) of a missing key")
		assertMissing(t, s, "missing") // a missing key stays missing
		assertFree(t, lk, "missing", "after Commit(OpTouch) of a missing key")
	})

	run("CommitDelete", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		write(t, s, "k", []byte("v"))
		write(t, s, "k2", []byte("v2"))
		l := lockWithin(t, lk, "k")
		require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpDelete}))
		assertMissing(t, s, "k")
		assertValue(t, s, "k2", []byte("v2"))
		assertFree(t, lk, "k", "after Commit(OpDelete)")
		l = lockWithin(t, lk, "k")
		assert.NoError(t, l.Commit(ctx, session.Change{Op: session.OpDelete}), "Commit(OpDelete) of a missing key")
		assertMissing(t, s, "k")
	})

	run("Release", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		write(t, s, "k", []byte("v"))
		l := lockWithin(t, lk, "k")
		l.Release()
		l.Release() // does nothing
		assertValue(t, s, "k", []byte("v"))
		assertFree(t, lk, "k", "after Release")
	})

	run("ReleaseAfterEnd", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		// A Release after the lease ended (by Release or Commit) does not
		// free the lock of the key's next holder.
		for _, end := range []string{"Release", "Commit"} {
			first := lockWithin(t, lk, "k")
			if end == "Release" {
				first.Release()
			} else {
				require.NoError(t, first.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("first"), TTL: ttl}))
			}
			second := lockWithin(t, lk, "k")
			first.Release()
			assertHeld(t, lk, "k", heldWait, "Release after "+end+" by the previous holder")
			second.Release()
		}
	})

	run("CommitAfterEnd", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		// Commit after the lease ended is a misuse: it may return an
		// error or nil, but it writes nothing and frees nothing.
		write(t, s, "k", []byte("v"))
		for _, end := range []string{"Release", "Commit"} {
			first := lockWithin(t, lk, "k")
			if end == "Release" {
				first.Release()
			} else {
				require.NoError(t, first.Commit(ctx, session.Change{Op: session.OpKeep}))
			}
			second := lockWithin(t, lk, "k")
			for _, c := range []session.Change{
				{Op: session.OpWrite, Value: []byte("late"), TTL: ttl},
				{Op: session.OpDelete},
			} {
				if err := first.Commit(ctx, c); err != nil {
					t.Logf("Commit after %s: %v (allowed)", end, err)
				}
				assertValue(t, s, "k", []byte("v"))
			}
			assertHeld(t, lk, "k", heldWait, "Commit after "+end+" by the previous holder")
			second.Release()
		}
	})

	run("HeldKeyBlocks", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		l := lockWithin(t, lk, "held")
		assertHeld(t, lk, "held", heldWait, "a second Lock of the same client")
		assertFree(t, lk, "other", "another key while one is held")
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		l2, err := lk.Lock(cancelled, "held", "")
		if !assert.ErrorIs(t, err, context.Canceled, "Lock of a held key with a cancelled context") && err == nil {
			l2.Release()
		}
		// A waiter takes the lock when it is released.
		got := make(chan error, 1)
		go func() {
			wctx, cancel := context.WithTimeout(ctx, waitLimit)
			defer cancel()
			l2, err := lk.Lock(wctx, "held", "")
			if err == nil {
				l2.Release()
			}
			got <- err
		}()
		time.Sleep(heldWait) // let the waiter wait (not needed for correctness)
		l.Release()
		assert.NoError(t, <-got, "a waiter for a released key")
	})

	run("CancelledContext", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		l, err := lk.Lock(cancelled, "free", "")
		if !assert.ErrorIs(t, err, context.Canceled, "Lock of a free key with a cancelled context") && err == nil {
			l.Release()
		}

		for i, c := range []session.Change{
			{Op: session.OpWrite, Value: []byte("after"), TTL: ttl},
			{Op: session.OpDelete},
			{Op: session.OpTouch, TTL: ttl},
		} {
			// The failed Commit ends the lease; the key is free at once
			// or when the lease runs out, which this suite does not wait
			// for: each round uses a key of its own.
			key := "k" + strconv.Itoa(i)
			write(t, s, key, []byte("before"))
			l := lockWithin(t, lk, key)
			assert.ErrorIs(t, l.Commit(cancelled, c), context.Canceled, "Commit(Op %d) with a cancelled context", c.Op)
			l.Release()
			assertValue(t, s, key, []byte("before"))
		}
	})

	run("ConcurrentIncrements", func(t *testing.T, s session.Store, lk session.Locker, ttl time.Duration) {
		// Goroutines increment one counter under the lock, reading it
		// with the lock and committing it: an overlap shows in the inside
		// counter, a lost increment (a stale Value) in the final count.
		const goroutines, rounds = 8, 25
		var inside, overlaps atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, goroutines*rounds)
		for range goroutines {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					if err := increment(ctx, lk, "counter", ttl, &inside, &overlaps); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		collectErrs(t, errs)
		assert.Zero(t, overlaps.Load(), "holders of one key overlapped")
		assertValue(t, s, "counter", []byte(strconv.Itoa(goroutines*rounds)))
	})
}

// incrementHold is how long increment holds the lock between its read
// and its commit.
const incrementHold = time.Millisecond

// increment adds one to the decimal counter at key under lk's lock,
// counting overlapping holders in overlaps.
func increment(ctx context.Context, lk session.Locker, key string, ttl time.Duration, inside, overlaps *atomic.Int32) error {
	wctx, cancel := context.WithTimeout(ctx, waitLimit)
	defer cancel()
	l, err := lk.Lock(wctx, key, "")
	if err != nil {
		return fmt.Errorf("lock: %w", err)
	}
	defer l.Release()
	if inside.Add(1) != 1 {
		overlaps.Add(1)
	}
	// The holder is inside until it calls Commit: Commit releases the
	// lock in the same step, so the next holder may come in before
	// Commit has returned.
	left := false
	leave := func() {
		if !left {
			left = true
			inside.Add(-1)
		}
	}
	defer leave()
	n := 0
	if v, found := l.Value(); found {
		if n, err = strconv.Atoi(string(v)); err != nil {
			return fmt.Errorf("counter %q: %w", v, err)
		}
	}
	// Stay inside a while, as a handler does: with a store whose calls
	// take microseconds, holders that do not exclude each other would
	// otherwise rarely overlap.
	time.Sleep(incrementHold)
	leave()
	if err := l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte(strconv.Itoa(n + 1)), TTL: ttl}); err != nil {
		return fmt.Errorf("commit: %w", err)
	}
	return nil
}
