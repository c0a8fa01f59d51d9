package storagetest

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// testToucher checks the parts of session.Toucher that need no clock:
// expiry itself is RunExpiry's.
func testToucher(t *testing.T, s session.StorageAdapter[Value]) {
	to, ok := s.(session.Toucher)
	if !ok {
		t.Skip("store does not implement session.Toucher")
	}
	ctx := context.Background()
	assert.NoError(t, to.Touch(ctx, "missing"), "Touch of a missing key")
	assertMissing(t, s, "missing") // touching creates nothing

	write(t, s, "k", sample("k"))
	require.NoError(t, to.Touch(ctx, "k"))
	assertStored(t, s, "k", sample("k"))

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, to.Touch(cancelled, "k"), context.Canceled, "Touch with a cancelled context")
	assertStored(t, s, "k", sample("k"))
}

// testLocker checks session.Locker within one client of the store.
func testLocker(t *testing.T, s session.StorageAdapter[Value]) {
	lk, ok := s.(session.Locker)
	if !ok {
		t.Skip("store does not implement session.Locker")
	}
	incr := func(ctx context.Context, key string) error {
		v, _, err := s.Read(ctx, key)
		if err != nil {
			return err
		}
		v.Count++
		return s.Write(ctx, key, v)
	}
	count := func(key string) int {
		v, _, err := s.Read(context.Background(), key)
		require.NoError(t, err)
		return v.Count
	}
	lockerChecks(t, []session.Locker{lk}, incr, count)
}

// lockerChecks are the Locker checks that hold for any set of clients of
// one store, one or several: lockers[i] is client i's Locker, incr adds
// one to the counter stored at key through some client and count reads
// it back.
func lockerChecks(t *testing.T, lockers []session.Locker, incr func(ctx context.Context, key string) error, count func(key string) int) {
	t.Run("MutualExclusion", func(t *testing.T) {
		// Goroutines on every client increment one stored counter under
		// the lock: any overlap is seen by the inside counter, and a lost
		// increment by the final count.
		const perLocker, rounds = 4, 25
		var inside, overlaps atomic.Int32
		var wg sync.WaitGroup
		errs := make(chan error, len(lockers)*perLocker*rounds)
		for _, lk := range lockers {
			for range perLocker {
				wg.Add(1)
				go func() {
					defer wg.Done()
					ctx := context.Background()
					for range rounds {
						unlock, err := lk.Lock(ctx, "counter")
						if err != nil {
							errs <- fmt.Errorf("lock: %w", err)
							return
						}
						if inside.Add(1) != 1 {
							overlaps.Add(1)
						}
						if err := incr(ctx, "counter"); err != nil {
							errs <- fmt.Errorf("increment under the lock: %w", err)
						}
						inside.Add(-1)
						unlock()
					}
				}()
			}
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			assert.NoError(t, err)
		}
		assert.Zero(t, overlaps.Load(), "holders of one key overlapped")
		assert.Equal(t, len(lockers)*perLocker*rounds, count("counter"), "increments made under the lock")
	})

	t.Run("OtherKeysFree", func(t *testing.T) {
		unlock, err := lockers[0].Lock(context.Background(), "a")
		require.NoError(t, err)
		defer unlock()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		for i, lk := range lockers {
			unlockB, err := lk.Lock(ctx, "b")
			if assert.NoError(t, err, "client %d: a held key blocks another key", i) {
				unlockB()
			}
		}
	})

	t.Run("CancelledWait", func(t *testing.T) {
		unlock, err := lockers[0].Lock(context.Background(), "held")
		require.NoError(t, err)
		defer unlock()
		for i, lk := range lockers {
			ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
			start := time.Now()
			u, err := lk.Lock(ctx, "held")
			cancel()
			if !assert.ErrorIs(t, err, context.DeadlineExceeded, "client %d: Lock of a held key past its deadline", i) && u != nil {
				u()
			}
			assert.Less(t, time.Since(start), 5*time.Second, "client %d: Lock did not give up at its deadline", i)

			ctx, cancel = context.WithCancel(context.Background())
			cancel()
			u, err = lk.Lock(ctx, "held")
			if !assert.ErrorIs(t, err, context.Canceled, "client %d: Lock with a cancelled context", i) && u != nil {
				u()
			}
		}
	})

	t.Run("UnlockOnce", func(t *testing.T) {
		first, err := lockers[0].Lock(context.Background(), "k")
		require.NoError(t, err)
		first()
		last := lockers[len(lockers)-1]
		second, err := last.Lock(context.Background(), "k")
		require.NoError(t, err)
		defer second()

		// unlock must be called once; calling it again may panic, like
		// sync.Mutex, but must not free the second holder's lock.
		func() {
			defer func() { _ = recover() }()
			first()
		}()
		for i, lk := range lockers {
			ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
			u, err := lk.Lock(ctx, "k")
			cancel()
			if !assert.Error(t, err, "client %d took a lock freed by a second unlock of its previous holder", i) {
				u()
			}
		}
	})
}

// RunExpiry checks the expiry of a byte store whose entries live for ttl
// after their last write or touch: newStore returns an empty store with
// that time-to-live. Expiry is a property of the backing store, not of the
// codec, so adapters are checked as the byte stores they are. ttl should
// be short, a few hundred milliseconds: the checks sleep a few times ttl.
//
// What the suite requires:
//
//   - A written key is found until ttl has passed and not after (an
//     expired key is neither read nor listed by an Iterator[[]byte]).
//   - A write restarts the ttl.
//   - The store implements session.Toucher, and Touch restarts the ttl
//     without changing the value; touching a missing or expired key
//     returns nil and brings nothing back.
func RunExpiry(t *testing.T, newStore func(t *testing.T) session.StorageAdapter[[]byte], ttl time.Duration) {
	t.Helper()
	require.Positive(t, ttl, "RunExpiry needs a positive ttl")
	// Sleeps are fractions or multiples of ttl, with room on both sides
	// so that a busy machine does not fail the checks.
	early, late := ttl*55/100, 2*ttl+100*time.Millisecond
	ctx := context.Background()
	for _, c := range []struct {
		name string
		test func(t *testing.T, s session.StorageAdapter[[]byte])
	}{
		{"Expires", func(t *testing.T, s session.StorageAdapter[[]byte]) {
			require.NoError(t, s.Write(ctx, "k", []byte("v")))
			assertBytes(t, s, "k", "v")
			time.Sleep(late)
			assertNoBytes(t, s, "k")
		}},
		{"WriteRestartsTTL", func(t *testing.T, s session.StorageAdapter[[]byte]) {
			require.NoError(t, s.Write(ctx, "k", []byte("v1")))
			time.Sleep(early)
			require.NoError(t, s.Write(ctx, "k", []byte("v2")))
			time.Sleep(early) // past the first write's ttl
			assertBytes(t, s, "k", "v2")
			time.Sleep(late)
			assertNoBytes(t, s, "k")
		}},
		{"TouchRestartsTTL", func(t *testing.T, s session.StorageAdapter[[]byte]) {
			to, ok := s.(session.Toucher)
			require.True(t, ok, "a store with expiry implements session.Toucher")
			require.NoError(t, s.Write(ctx, "k", []byte("v")))
			time.Sleep(early)
			require.NoError(t, to.Touch(ctx, "k"))
			time.Sleep(early) // past the write's ttl
			assertBytes(t, s, "k", "v")
			time.Sleep(late)
			assertNoBytes(t, s, "k")
		}},
		{"TouchMissingOrExpired", func(t *testing.T, s session.StorageAdapter[[]byte]) {
			to, ok := s.(session.Toucher)
			require.True(t, ok, "a store with expiry implements session.Toucher")
			assert.NoError(t, to.Touch(ctx, "missing"))
			assertNoBytes(t, s, "missing")
			require.NoError(t, s.Write(ctx, "k", []byte("v")))
			time.Sleep(late)
			assert.NoError(t, to.Touch(ctx, "k"), "Touch of an expired key")
			assertNoBytes(t, s, "k")
		}},
		{"IteratorSkipsExpired", func(t *testing.T, s session.StorageAdapter[[]byte]) {
			it, ok := s.(session.Iterator[[]byte])
			if !ok {
				t.Skip("store does not implement session.Iterator[[]byte]")
			}
			require.NoError(t, s.Write(ctx, "old", []byte("old")))
			time.Sleep(early)
			require.NoError(t, s.Write(ctx, "new", []byte("new")))
			time.Sleep(early) // "old" has expired, "new" has not
			assert.Equal(t, []string{"new"}, collect(t, "Keys", it.Keys(ctx)), "Keys")
			assert.Equal(t, [][]byte{[]byte("new")}, collect(t, "Values", it.Values(ctx)), "Values")
			assert.Equal(t, []session.Entry[[]byte]{{Key: "new", Value: []byte("new")}},
				collect(t, "Entries", it.Entries(ctx)), "Entries")
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newStore(t)
			require.NotNil(t, s, "newStore returned nil")
			c.test(t, s)
		})
	}
}

func assertBytes(t *testing.T, s session.StorageAdapter[[]byte], key, want string) {
	t.Helper()
	got, found, err := s.Read(context.Background(), key)
	if assert.NoError(t, err, "Read(%q)", key) && assert.True(t, found, "Read(%q): not found", key) {
		assert.Equal(t, want, string(got), "Read(%q)", key)
	}
}

func assertNoBytes(t *testing.T, s session.StorageAdapter[[]byte], key string) {
	t.Helper()
	got, found, err := s.Read(context.Background(), key)
	if assert.NoError(t, err, "Read(%q)", key) {
		assert.False(t, found, "Read(%q): found %q, want missing", key, got)
	}
}

// RunLocker checks session.Locker across two clients of one backing
// store, as two processes sharing Redis or PostgreSQL have. newPair
// returns two stores over the same empty data, each with its own
// connection and its own in-process state (as separate processes would
// have), both implementing session.Locker with lock leases of lease.
// Choose lease short, a few hundred milliseconds: the checks wait for
// leases to run out.
//
// The suite simulates a holder that dies by ending the context given to
// Lock without calling unlock, so it requires that a store stop renewing
// a lease when the context of the Lock that took it ends (after that the
// holder can no longer use the store anyway).
//
// What the suite requires, beyond the single-client checks of [Run]
// (which it makes with both clients at once):
//
//   - Renewal: a lock held for longer than its lease stays held.
//   - Lease expiry: a lock whose holder stopped renewing it is free for
//     the other client after about lease, and not long before.
//   - Owner-only release: the unlock of a holder whose lease expired does
//     not free the lock of the holder that took it over.
//   - Fencing: once a holder's lease has been taken over, its Write and
//     Delete of the key fail with an error wrapping session.ErrConflict
//     and the newer value stands.
func RunLocker(t *testing.T, newPair func(t *testing.T) (a, b session.StorageAdapter[[]byte]), lease time.Duration) {
	t.Helper()
	require.Positive(t, lease, "RunLocker needs a positive lease")
	pair := func(t *testing.T) (a, b session.StorageAdapter[[]byte], la, lb session.Locker) {
		a, b = newPair(t)
		require.NotNil(t, a, "newPair returned a nil store")
		require.NotNil(t, b, "newPair returned a nil store")
		la, ok := a.(session.Locker)
		require.True(t, ok, "store a does not implement session.Locker")
		lb, ok = b.(session.Locker)
		require.True(t, ok, "store b does not implement session.Locker")
		return a, b, la, lb
	}
	bg := context.Background()

	t.Run("TwoClients", func(t *testing.T) {
		a, b, la, lb := pair(t)
		stores := []session.StorageAdapter[[]byte]{a, b}
		var n atomic.Int32
		incr := func(ctx context.Context, key string) error {
			// Alternate the client that reads and writes: the counter
			// goes through both connections.
			s := stores[n.Add(1)%2]
			v, _, err := s.Read(ctx, key)
			if err != nil {
				return err
			}
			c, _ := strconv.Atoi(string(v))
			return s.Write(ctx, key, []byte(strconv.Itoa(c+1)))
		}
		count := func(key string) int {
			v, _, err := a.Read(bg, key)
			require.NoError(t, err)
			c, err := strconv.Atoi(string(v))
			require.NoError(t, err, "counter %q", v)
			return c
		}
		lockerChecks(t, []session.Locker{la, lb}, incr, count)
	})

	t.Run("Renewal", func(t *testing.T) {
		_, _, la, lb := pair(t)
		unlock, err := la.Lock(bg, "k")
		require.NoError(t, err)
		ctx, cancel := context.WithTimeout(bg, 3*lease)
		u, err := lb.Lock(ctx, "k")
		cancel()
		if !assert.ErrorIs(t, err, context.DeadlineExceeded, "the lock was free after %v although its holder renews it", 3*lease) {
			u()
		}
		unlock()
		ctx, cancel = context.WithTimeout(bg, lease)
		defer cancel()
		u, err = lb.Lock(ctx, "k")
		if assert.NoError(t, err, "a released lock is free at once") {
			u()
		}
	})

	t.Run("LeaseExpiry", func(t *testing.T) {
		_, _, la, lb := pair(t)
		ctxA, dieA := context.WithCancel(bg)
		unlockA, err := la.Lock(ctxA, "k")
		require.NoError(t, err)
		dieA() // the holder dies: no more renewal, no unlock
		start := time.Now()

		ctx, cancel := context.WithTimeout(bg, 4*lease+5*time.Second)
		defer cancel()
		unlockB, err := lb.Lock(ctx, "k")
		require.NoError(t, err, "a lock whose holder died is free after its lease")
		waited := time.Since(start)
		assert.GreaterOrEqual(t, waited, lease/2, "the lock was free before its lease ran out")
		assert.Less(t, waited, 3*lease+2*time.Second, "the lock stayed held long after its lease")

		// The dead holder's unlock (say, a process that froze, then woke)
		// must not free the new holder's lock.
		unlockA()
		ctx2, cancel2 := context.WithTimeout(bg, lease)
		u, err := la.Lock(ctx2, "k")
		cancel2()
		if !assert.ErrorIs(t, err, context.DeadlineExceeded, "the expired holder's unlock freed the new holder's lock") {
			u()
		}
		unlockB()
	})

	t.Run("Fencing", func(t *testing.T) {
		a, b, la, lb := pair(t)
		ctxA, dieA := context.WithCancel(bg)
		unlockA, err := la.Lock(ctxA, "k")
		require.NoError(t, err)
		require.NoError(t, a.Write(bg, "k", []byte("a1")), "a write under a live lease")
		dieA()

		ctx, cancel := context.WithTimeout(bg, 4*lease+5*time.Second)
		defer cancel()
		unlockB, err := lb.Lock(ctx, "k")
		require.NoError(t, err)
		require.NoError(t, b.Write(bg, "k", []byte("b1")), "a write by the new holder")

		// The old holder wakes up and writes back: refused.
		err = a.Write(bg, "k", []byte("a2"))
		assert.ErrorIs(t, err, session.ErrConflict, "write under a lost lease")
		if err != nil {
			assert.Contains(t, err.Error(), `"k"`, "the conflict error names the key")
		}
		assert.ErrorIs(t, a.Delete(bg, "k"), session.ErrConflict, "delete under a lost lease")
		assertBytes(t, b, "k", "b1")
		assertBytes(t, a, "k", "b1")
		unlockA()
		unlockB()

		// Keys never locked by a are plain writes.
		assert.NoError(t, a.Write(bg, "other", []byte("x")))
		assertBytes(t, b, "other", "x")
	})

	t.Run("NoConflictAfterUnlock", func(t *testing.T) {
		// After unlock, a store writes the key as any unlocked key: a
		// released lease must not turn later writes into conflicts.
		a, b, la, _ := pair(t)
		unlock, err := la.Lock(bg, "k")
		require.NoError(t, err)
		require.NoError(t, a.Write(bg, "k", []byte("1")))
		unlock()
		require.NoError(t, a.Write(bg, "k", []byte("2")))
		require.NoError(t, a.Delete(bg, "k"))
		assertNoBytes(t, b, "k")
	})
}
