package storagetest

import (
	"context"
	"reflect"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// Freezer is an optional test hook of a [session.Lease], with which
// [RunLocker] simulates a holder whose process froze (SIGSTOP, a long
// pause) or died: a store's lease renews itself until Commit or Release,
// so a holder that merely stops using it never loses it.
//
// Freeze stops renewing the lease and does nothing else: the lease stays
// in the backend until it runs out, as a dead process's would. A later
// Commit or Release must behave as that of a frozen holder that woke up:
// Commit is fenced (an error wrapping [session.ErrConflict] if another
// holder took the key) and Release does not free the next holder's lock.
// Leases without Freeze have RunLocker skip the checks that need it.
type Freezer interface {
	Freeze()
}

// RunLocker checks [session.Locker] across two clients of one backing
// store, as two processes sharing Redis or PostgreSQL have: newPair
// returns two stores over the same empty data, each with its own
// connection and its own in-process state (as separate processes would
// have; two clients that share an in-process lock table would pass the
// exclusion checks without locking across processes), both with a Locker
// (found through Unwrap chains) whose leases last lease. Choose lease
// short, a few hundred milliseconds: the checks wait for leases to run
// out a few times.
//
// What the suite requires, beyond the single-client checks of [Run]:
//
//   - The two stores share their data, and their Lockers are distinct.
//   - Mutual exclusion: goroutines on both clients incrementing one
//     counter under the lock never overlap nor lose an increment; a held
//     key blocks the other client (until its deadline, with an error
//     wrapping context.DeadlineExceeded) but not other keys; a released
//     key goes to the other client's waiter.
//   - The Lease's Value is read with the lock: a client that waited for
//     the key sees what the holder committed, and what plain writes of
//     the other client left.
//   - Each Op committed by one client is what the other reads.
//   - Renewal: a lease held for several times its duration stays held,
//     and its Commit then succeeds.
//   - A Release (or Commit) of a lease that ended does not free, or
//     write over, the other client's hold of the key.
//   - The record of applied updates ([session.Lease.Applied]): a mark
//     committed by one client, with any Op, is applied for the other
//     client's next lease of that key with that mark, and for no other
//     key, mark or bot; a Release, and a Lock without a mark, record
//     nothing; the last [session.AppliedWindow] marks of a key are all
//     kept.
//
// And, if a's leases implement [Freezer] (skipped otherwise):
//
//   - Lease expiry: the key of a frozen holder is free for the other
//     client after about lease (not before a third of it).
//   - Owner-only release: the frozen holder's Release, once it woke up,
//     does not free the new holder's lock.
//   - Fencing: the frozen holder's Commit of OpWrite, OpDelete or
//     OpTouch, after the other client took the key, fails with an error
//     wrapping [session.ErrConflict] that names the key, and changes
//     nothing (whether the new holder committed yet or not); OpKeep
//     returns nil or that error. The new holder's lock and commit are
//     unaffected, and the key locks normally afterwards. A refused commit
//     records no mark.
func RunLocker(t *testing.T, newPair func(t *testing.T) (a, b session.Store), lease time.Duration) {
	t.Helper()
	require.Positive(t, lease, "RunLocker needs a positive lease")
	for _, c := range []struct {
		name string
		test func(t *testing.T, p *pair)
	}{
		{"SharedData", testSharedData},
		{"MutualExclusion", testMutualExclusion},
		{"Exclusion", testExclusion},
		{"ValueReadWithLock", testValueReadWithLock},
		{"EachOp", testEachOp},
		{"Renewal", testRenewal},
		{"EndedLease", testEndedLease},
		{"LeaseExpiry", testLeaseExpiry},
		{"Fencing", testFencing},
		{"AppliedMarks", testAppliedMarks},
		{"AppliedWindow", testAppliedWindow},
	} {
		t.Run(c.name, func(t *testing.T) {
			p := newPairOf(t, newPair, lease)
			c.test(t, p)
		})
	}
}

// pair is the two clients of a RunLocker check.
type pair struct {
	a, b   session.Store
	la, lb session.Locker
	ttl    time.Duration // of the Changes committed
	lease  time.Duration
}

func newPairOf(t *testing.T, newPair func(t *testing.T) (a, b session.Store), lease time.Duration) *pair {
	t.Helper()
	a, b := newPair(t)
	require.False(t, isNil(a), "newPair returned a nil store a")
	require.False(t, isNil(b), "newPair returned a nil store b")
	require.False(t, same(a, b), "newPair returned one store twice: the checks need two clients")
	la, ok := session.Unwrap[session.Locker](a)
	require.True(t, ok, "store a has no session.Locker")
	lb, ok := session.Unwrap[session.Locker](b)
	require.True(t, ok, "store b has no session.Locker")
	require.False(t, same(la, lb), "stores a and b share one Locker: the checks need two clients")
	return &pair{a: a, b: b, la: la, lb: lb, ttl: changeTTL(a), lease: lease}
}

// same reports whether x and y are the same comparable value (the same
// pointer, typically).
func same(x, y any) bool {
	if reflect.TypeOf(x) != reflect.TypeOf(y) || !reflect.TypeOf(x).Comparable() {
		return false
	}
	return x == y
}

// expiryWait bounds a wait for a frozen lease to run out.
func (p *pair) expiryWait() time.Duration { return 4*p.lease + waitLimit }

func (p *pair) write(v string) session.Change {
	return session.Change{Op: session.OpWrite, Value: []byte(v), TTL: p.ttl}
}

func testSharedData(t *testing.T, p *pair) {
	ctx := context.Background()
	write(t, p.a, "k", []byte("from a"))
	assertValue(t, p.b, "k", []byte("from a"))
	require.NoError(t, p.b.Delete(ctx, "k"))
	assertMissing(t, p.a, "k")
	l := lockWithin(t, p.la, "k")
	require.NoError(t, l.Commit(ctx, p.write("committed by a")))
	assertValue(t, p.b, "k", []byte("committed by a"))
}

func testMutualExclusion(t *testing.T, p *pair) {
	const perClient, rounds = 4, 25
	ctx := context.Background()
	var inside, overlaps atomic.Int32
	var wg sync.WaitGroup
	errs := make(chan error, 2*perClient*rounds)
	for _, lk := range []session.Locker{p.la, p.lb} {
		for range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range rounds {
					if err := increment(ctx, lk, "counter", p.ttl, &inside, &overlaps); err != nil {
						errs <- err
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	close(errs)
	collectErrs(t, errs)
	assert.Zero(t, overlaps.Load(), "holders of one key on two clients overlapped")
	want := []byte(strconv.Itoa(2 * perClient * rounds))
	assertValue(t, p.a, "counter", want)
	assertValue(t, p.b, "counter", want)
}

func testExclusion(t *testing.T, p *pair) {
	ctx := context.Background()
	l := lockWithin(t, p.la, "held")
	assertHeld(t, p.lb, "held", heldWait, "client b, while a holds the key")
	assertFree(t, p.lb, "other", "client b, another key while a holds one")
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if l2, err := p.lb.Lock(cancelled, "held", ""); !assert.ErrorIs(t, err, context.Canceled, "client b: Lock with a cancelled context") && err == nil {
		l2.Release()
	}

	// b's waiter gets the key once a releases it.
	got := make(chan error, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, waitLimit)
		defer cancel()
		l2, err := p.lb.Lock(wctx, "held", "")
		if err == nil {
			assertHeld(t, p.la, "held", heldWait, "client a, while b holds the key it waited for")
			l2.Release()
		}
		got <- err
	}()
	time.Sleep(heldWait) // let b wait (not needed for correctness)
	l.Release()
	assert.NoError(t, <-got, "client b waiting for a key a released")
	assertFree(t, p.la, "held", "client a, after b released")
}

func testValueReadWithLock(t *testing.T, p *pair) {
	ctx := context.Background()
	l := lockWithin(t, p.la, "k")
	assertLeaseValue(t, l, nil, false, "a: missing key")
	require.NoError(t, l.Commit(ctx, p.write("a1")))
	l = lockWithin(t, p.lb, "k")
	assertLeaseValue(t, l, []byte("a1"), true, "b: after a's commit")
	require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpDelete}))
	l = lockWithin(t, p.la, "k")
	assertLeaseValue(t, l, nil, false, "a: after b's delete")
	l.Release()
	write(t, p.b, "k", []byte("b plain"))
	l = lockWithin(t, p.la, "k")
	assertLeaseValue(t, l, []byte("b plain"), true, "a: after b's plain Write")

	// b waits while a holds the key and commits: b's lease has a's
	// commit, not what was stored when b started waiting.
	got := make(chan session.Lease, 1)
	go func() {
		wctx, cancel := context.WithTimeout(ctx, waitLimit)
		defer cancel()
		l2, err := p.lb.Lock(wctx, "k", "")
		assert.NoError(t, err, "b waiting for the key")
		got <- l2
	}()
	time.Sleep(heldWait) // let b wait (not needed for correctness)
	require.NoError(t, l.Commit(ctx, p.write("a2")))
	if l2 := <-got; l2 != nil {
		assertLeaseValue(t, l2, []byte("a2"), true, "b: after waiting for a's commit")
		l2.Release()
	}
}

func testEachOp(t *testing.T, p *pair) {
	ctx := context.Background()
	commit := func(lk session.Locker, c session.Change) {
		t.Helper()
		l := lockWithin(t, lk, "k")
		require.NoError(t, l.Commit(ctx, c), "Commit(Op %d)", c.Op)
	}
	commit(p.la, p.write("v1"))
	assertValue(t, p.b, "k", []byte("v1"))
	commit(p.lb, session.Change{Op: session.OpTouch, TTL: p.ttl})
	assertValue(t, p.a, "k", []byte("v1"))
	commit(p.la, session.Change{Op: session.OpKeep})
	assertValue(t, p.b, "k", []byte("v1"))
	commit(p.lb, p.write("v2"))
	assertValue(t, p.a, "k", []byte("v2"))
	commit(p.la, session.Change{Op: session.OpDelete})
	assertMissing(t, p.b, "k")
	commit(p.lb, session.Change{Op: session.OpTouch, TTL: p.ttl})
	assertMissing(t, p.a, "k") // a missing key stays missing
	commit(p.la, session.Change{Op: session.OpKeep})
	assertMissing(t, p.b, "k")
	assertFree(t, p.lb, "k", "client b, after every commit")
}

func testRenewal(t *testing.T, p *pair) {
	ctx := context.Background()
	l := lockWithin(t, p.la, "k")
	// Held for three times its lease: renewed, so still a's.
	assertHeld(t, p.lb, "k", 3*p.lease, "client b, while a holds the key past its lease")
	require.NoError(t, l.Commit(ctx, p.write("after renewals")), "Commit of a lease renewed past its duration")
	l = lockWithin(t, p.lb, "k")
	assertLeaseValue(t, l, []byte("after renewals"), true, "b: after a's renewed commit")
	l.Release()
}

func testEndedLease(t *testing.T, p *pair) {
	ctx := context.Background()
	write(t, p.a, "k", []byte("v"))
	for _, end := range []string{"Release", "Commit"} {
		first := lockWithin(t, p.la, "k")
		if end == "Release" {
			first.Release()
		} else {
			require.NoError(t, first.Commit(ctx, session.Change{Op: session.OpKeep}))
		}
		second := lockWithin(t, p.lb, "k")
		first.Release()
		for _, c := range []session.Change{p.write("late"), {Op: session.OpDelete}} {
			if err := first.Commit(ctx, c); err != nil {
				t.Logf("Commit after %s: %v (allowed)", end, err)
			}
		}
		assertValue(t, p.b, "k", []byte("v"))
		assertHeld(t, p.la, "k", heldWait, "client a, after a late Release and Commit of its ended lease")
		require.NoError(t, second.Commit(ctx, session.Change{Op: session.OpKeep}))
	}
}

// frozenMark is the update the frozen holders of the checks commit: their
// refused commits must not record it.
const frozenMark = "1:99"

// frozen takes key's lock on a (for frozenMark) and freezes the lease, or skips t if a's
// leases cannot be frozen.
func (p *pair) frozen(t *testing.T, key string) session.Lease {
	t.Helper()
	l := lockMarked(t, p.la, key, frozenMark)
	f, ok := l.(Freezer)
	if !ok {
		l.Release()
		t.Skip("the leases of store a have no Freeze method (storagetest.Freezer): a holder that froze or died " +
			"cannot be simulated, since a lease renews itself until Commit or Release; " +
			"lease expiry, owner-only release and fencing are not checked")
	}
	f.Freeze()
	return l
}

// takeOver takes key's lock on b, waiting for a frozen lease to run out.
func (p *pair) takeOver(t *testing.T, key string) (session.Lease, time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), p.expiryWait())
	defer cancel()
	start := time.Now()
	l, err := p.lb.Lock(ctx, key, "")
	require.NoError(t, err, "client b: Lock(%q) of a key whose holder froze, within %v", key, p.expiryWait())
	return l, time.Since(start)
}

func testLeaseExpiry(t *testing.T, p *pair) {
	ctx := context.Background()
	write(t, p.a, "k", []byte("v"))
	old := p.frozen(t, "k")
	lb, waited := p.takeOver(t, "k")
	// A lower bound only: however slow the machine, the lease cannot
	// have run out before a third of it (renewals come every third).
	assert.GreaterOrEqual(t, waited, p.lease/3, "the key of a frozen holder was free before its lease ran out")
	assertLeaseValue(t, lb, []byte("v"), true, "b: after taking over a frozen holder's key")

	// The frozen holder wakes up and releases: the new holder's lock
	// stands.
	old.Release()
	assertHeld(t, p.la, "k", heldWait, "client a, after its expired lease's Release")
	require.NoError(t, lb.Commit(ctx, p.write("b")), "the new holder's commit")
	assertValue(t, p.a, "k", []byte("b"))
}

func testFencing(t *testing.T, p *pair) {
	ctx := context.Background()
	ops := []struct {
		name     string
		change   session.Change
		bCommits bool // b commits before the frozen holder wakes up
	}{
		{"Write", p.write("a"), true},
		{"WriteHeld", p.write("a"), false},
		{"Delete", session.Change{Op: session.OpDelete}, true},
		{"DeleteHeld", session.Change{Op: session.OpDelete}, false},
		{"Touch", session.Change{Op: session.OpTouch, TTL: p.ttl}, false},
		{"Keep", session.Change{Op: session.OpKeep}, false},
	}
	// Freeze every lease first, so that they run out together.
	frozen := make([]session.Lease, len(ops))
	for i, op := range ops {
		write(t, p.a, op.name, []byte("orig"))
		frozen[i] = p.frozen(t, op.name)
	}
	taken := make([]session.Lease, len(ops))
	var wg sync.WaitGroup
	for i, op := range ops {
		wg.Add(1)
		go func() {
			defer wg.Done()
			wctx, cancel := context.WithTimeout(ctx, p.expiryWait())
			defer cancel()
			l, err := p.lb.Lock(wctx, op.name, "")
			if assert.NoError(t, err, "client b: Lock(%q) of a key whose holder froze", op.name) {
				taken[i] = l
			}
		}()
	}
	wg.Wait()
	for i, op := range ops {
		if taken[i] == nil {
			continue
		}
		t.Run(op.name, func(t *testing.T) {
			want := "orig"
			if op.bCommits {
				want = "b"
				require.NoError(t, taken[i].Commit(ctx, p.write("b")), "the new holder's commit")
				taken[i] = nil
			}
			// The frozen holder wakes up and commits: refused.
			err := frozen[i].Commit(ctx, op.change)
			if op.change.Op == session.OpKeep {
				if err != nil {
					assert.ErrorIs(t, err, session.ErrConflict, "Commit(OpKeep) of a lost lease")
				}
			} else if assert.ErrorIs(t, err, session.ErrConflict, "Commit of a lost lease") {
				assert.ErrorContains(t, err, strconv.Quote(op.name), "the conflict error names the key")
			}
			assertValue(t, p.b, op.name, []byte(want))
			if taken[i] != nil {
				// The new holder's lock and commit are unaffected.
				assertHeld(t, p.la, op.name, heldWait, "client a, after its refused commit")
				require.NoError(t, taken[i].Commit(ctx, p.write("b after")), "the new holder's commit after the refused one")
				want = "b after"
				assertValue(t, p.a, op.name, []byte(want))
			}
			// And the key locks normally afterwards, on either client,
			// without the refused commit's mark.
			l := lockMarked(t, p.la, op.name, frozenMark)
			assertLeaseValue(t, l, []byte(want), true, "a: a fresh lease after the conflict")
			assert.False(t, l.Applied(), "a refused commit recorded its update as applied")
			require.NoError(t, l.Commit(ctx, p.write("a fresh")), "a fresh lease's commit after the conflict")
			assertValue(t, p.b, op.name, []byte("a fresh"))
		})
	}
}
