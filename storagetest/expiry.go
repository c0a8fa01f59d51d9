package storagetest

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// shortTTL is the TTL of the keys RunExpiry watches expire: short enough
// for a quick suite, long enough that the few calls a check makes before
// its decisive one fit in it on a loaded machine (and a check whose setup
// did not fit retries, see conclusive).
const shortTTL = 400 * time.Millisecond

// RunExpiry checks the expiry of a store that is a [session.Expirer]
// (found through Unwrap chains): newStore returns an empty store each
// call. Expiry is real: keys are written with TTLs of a few hundred
// milliseconds, and the checks wait for them with bounded polls, never
// for an exact time. The suite takes a few seconds.
//
// What the suite requires:
//
//   - A key written with WriteTTL expires (is no longer found) some time
//     after its TTL, and another key written with a long TTL meanwhile
//     stays; it is found while its TTL has not run out.
//   - WriteTTL over a key restarts its expiry with the new TTL; Write
//     over a key with a TTL leaves it with none; WriteTTL over a key
//     written with Write gives it one.
//   - Touch makes a live key expire its ttl from now: a short TTL
//     touched with a long one outlives the short one, a long TTL (or none)
//     touched with a short one expires; the value is kept.
//   - Touch of a missing key, or of one that has expired, returns nil and
//     brings nothing back (a store that keeps expired data until a purge
//     must not revive it).
//   - If the store is a [session.Lister], Keys does not yield expired
//     keys.
//   - If the store is a [session.Locker], a lease does not find an
//     expired value, and Commit applies Change.TTL: OpWrite with a short
//     TTL expires, OpWrite with zero does not, OpTouch restarts the
//     expiry.
func RunExpiry(t *testing.T, newStore func(t *testing.T) session.Store) {
	t.Helper()
	for _, c := range []struct {
		name string
		test func(t *testing.T, s session.Store, ex session.Expirer)
	}{
		{"Expires", testExpires},
		{"WriteTTLRestarts", testWriteTTLRestarts},
		{"WriteClearsTTL", testWriteClearsTTL},
		{"WriteTTLAfterWrite", testWriteTTLAfterWrite},
		{"TouchExtends", testTouchExtends},
		{"TouchShortens", testTouchShortens},
		{"TouchMissingOrExpired", testTouchMissingOrExpired},
		{"ListerSkipsExpired", testListerSkipsExpired},
		{"LeaseTTL", testLeaseTTL},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := mustStore(t, newStore(t))
			ex, ok := session.Unwrap[session.Expirer](s)
			require.True(t, ok, "RunExpiry needs a store that is a session.Expirer")
			c.test(t, s, ex)
		})
	}
}

// eventuallyGone waits, with a bounded poll, until key is no longer
// found.
func eventuallyGone(t *testing.T, s session.Store, key, what string) bool {
	t.Helper()
	var lastErr error
	ok := assert.Eventually(t, func() bool {
		_, found, err := s.Read(context.Background(), key)
		lastErr = err
		return err == nil && !found
	}, waitLimit, 20*time.Millisecond, "%s: key %q did not expire within %v", what, key, waitLimit)
	if !ok && lastErr != nil {
		t.Logf("last Read(%q): %v", key, lastErr)
	}
	return ok
}

// pastExpiry waits until a key written now with shortTTL would have
// expired: it writes a witness key with that TTL and waits until the
// witness is gone. Waiting on the store's own expiry, not on a clock,
// keeps the checks free of timings.
func pastExpiry(t *testing.T, s session.Store, ex session.Expirer, witness string) {
	t.Helper()
	require.NoError(t, ex.WriteTTL(context.Background(), witness, []byte("witness"), shortTTL))
	require.True(t, eventuallyGone(t, s, witness, "witness"), "the witness key must expire")
}

// conclusive runs attempt until its setup was fast enough to say
// something: attempt writes keys with shortTTL and returns how long it
// took from its first write to its decisive call. If that was more than
// half the TTL (a stalled machine), the key may have expired before the
// decisive call and the attempt proves nothing; conclusive then retries
// with a fresh round number. It fails t if no attempt was conclusive.
func conclusive(t *testing.T, attempt func(round string) (setup time.Duration, done bool)) {
	t.Helper()
	for round := range 5 {
		setup, done := attempt(strconv.Itoa(round))
		if done {
			if setup <= shortTTL/2 {
				return
			}
			t.Logf("round %d inconclusive: setup took %v of a %v TTL; retrying", round, setup, shortTTL)
			continue
		}
		return // the attempt failed t
	}
	t.Fatalf("no round had a setup within %v: the machine is too slow for this check", shortTTL/2)
}

func testExpires(t *testing.T, s session.Store, ex session.Expirer) {
	ctx := context.Background()
	require.NoError(t, ex.WriteTTL(ctx, "lives", []byte("l"), long))
	start := time.Now()
	require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v"), shortTTL))
	v, found, err := s.Read(ctx, "k")
	require.NoError(t, err)
	if time.Since(start) < shortTTL/2 {
		// Only then must the key still be there.
		assert.True(t, found, "a key read right after WriteTTL (%v) is found", shortTTL)
		if found {
			assert.Equal(t, "v", string(v))
		}
	}
	eventuallyGone(t, s, "k", "WriteTTL")
	assertValue(t, s, "lives", []byte("l"))

	// An expired key can be written again.
	write(t, s, "k", []byte("again"))
	assertValue(t, s, "k", []byte("again"))
}

func testWriteTTLRestarts(t *testing.T, s session.Store, ex session.Expirer) {
	ctx := context.Background()
	require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v1"), shortTTL))
	require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v2"), long))
	pastExpiry(t, s, ex, "witness")
	assertValue(t, s, "k", []byte("v2"))

	// And the other way round: a long TTL overwritten with a short one.
	require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v3"), shortTTL))
	eventuallyGone(t, s, "k", "WriteTTL over a longer TTL")
}

func testWriteClearsTTL(t *testing.T, s session.Store, ex session.Expirer) {
	ctx := context.Background()
	require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v1"), shortTTL))
	write(t, s, "k", []byte("v2"))
	pastExpiry(t, s, ex, "witness")
	assertValue(t, s, "k", []byte("v2"))
}

func testWriteTTLAfterWrite(t *testing.T, s session.Store, ex session.Expirer) {
	ctx := context.Background()
	write(t, s, "k", []byte("v1"))
	require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v2"), shortTTL))
	eventuallyGone(t, s, "k", "WriteTTL over a key without TTL")
}

func testTouchExtends(t *testing.T, s session.Store, ex session.Expirer) {
	ctx := context.Background()
	conclusive(t, func(round string) (time.Duration, bool) {
		key := "k" + round
		start := time.Now()
		if !assert.NoError(t, ex.WriteTTL(ctx, key, []byte("v"), shortTTL)) ||
			!assert.NoError(t, ex.Touch(ctx, key, long)) {
			return 0, false
		}
		setup := time.Since(start)
		if setup > shortTTL/2 {
			return setup, true
		}
		pastExpiry(t, s, ex, "witness"+round)
		return setup, assertValue(t, s, key, []byte("v"))
	})
}

func testTouchShortens(t *testing.T, s session.Store, ex session.Expirer) {
	ctx := context.Background()
	require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v"), long))
	require.NoError(t, ex.Touch(ctx, "k", shortTTL))
	eventuallyGone(t, s, "k", "Touch with a shorter TTL")

	write(t, s, "plain", []byte("p"))
	require.NoError(t, ex.Touch(ctx, "plain", shortTTL))
	eventuallyGone(t, s, "plain", "Touch of a key without TTL")
}

func testTouchMissingOrExpired(t *testing.T, s session.Store, ex session.Expirer) {
	ctx := context.Background()
	assert.NoError(t, ex.Touch(ctx, "missing", long), "Touch of a missing key")
	assertMissing(t, s, "missing")

	require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v"), shortTTL))
	eventuallyGone(t, s, "k", "WriteTTL")
	assert.NoError(t, ex.Touch(ctx, "k", long), "Touch of an expired key")
	assertMissing(t, s, "k") // not brought back
	if ls, ok := session.Unwrap[session.Lister](s); ok {
		assert.NotContains(t, listKeys(t, ls), "k", "Keys after Touch of an expired key")
	}
	if lk, ok := session.Unwrap[session.Locker](s); ok {
		l := lockWithin(t, lk, "k")
		assertLeaseValue(t, l, nil, false, "Lock after Touch of an expired key")
		l.Release()
	}
}

func testListerSkipsExpired(t *testing.T, s session.Store, ex session.Expirer) {
	ls, ok := session.Unwrap[session.Lister](s)
	if !ok {
		t.Skip("store has no Lister")
	}
	ctx := context.Background()
	require.NoError(t, ex.WriteTTL(ctx, "old", []byte("old"), shortTTL))
	require.NoError(t, ex.WriteTTL(ctx, "new", []byte("new"), long))
	write(t, s, "plain", []byte("plain"))
	eventuallyGone(t, s, "old", "WriteTTL")
	assert.Equal(t, []string{"new", "plain"}, listKeys(t, ls), "Keys after a key expired")
}

func testLeaseTTL(t *testing.T, s session.Store, ex session.Expirer) {
	lk, ok := session.Unwrap[session.Locker](s)
	if !ok {
		t.Skip("store has no Locker")
	}
	ctx := context.Background()

	t.Run("ExpiredValue", func(t *testing.T) {
		require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v"), shortTTL))
		eventuallyGone(t, s, "k", "WriteTTL")
		l := lockWithin(t, lk, "k")
		assertLeaseValue(t, l, nil, false, "Lock of an expired key")
		l.Release()
	})

	t.Run("CommitWriteTTL", func(t *testing.T) {
		l := lockWithin(t, lk, "k")
		require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("v"), TTL: shortTTL}))
		eventuallyGone(t, s, "k", "Commit(OpWrite) with a TTL")
	})

	t.Run("CommitWriteNoTTL", func(t *testing.T) {
		require.NoError(t, ex.WriteTTL(ctx, "k", []byte("v1"), shortTTL))
		l := lockWithin(t, lk, "k")
		require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpWrite, Value: []byte("v2")}))
		pastExpiry(t, s, ex, "witness")
		assertValue(t, s, "k", []byte("v2"))
	})

	t.Run("CommitTouch", func(t *testing.T) {
		conclusive(t, func(round string) (time.Duration, bool) {
			key := "k" + round
			start := time.Now()
			if !assert.NoError(t, ex.WriteTTL(ctx, key, []byte("v"), shortTTL)) {
				return 0, false
			}
			l := lockWithin(t, lk, key)
			if !assert.NoError(t, l.Commit(ctx, session.Change{Op: session.OpTouch, TTL: long})) {
				return 0, false
			}
			setup := time.Since(start)
			if setup > shortTTL/2 {
				return setup, true
			}
			pastExpiry(t, s, ex, "witness"+round)
			return setup, assertValue(t, s, key, []byte("v"))
		})

		require.NoError(t, ex.WriteTTL(ctx, "short", []byte("v"), long))
		l := lockWithin(t, lk, "short")
		require.NoError(t, l.Commit(ctx, session.Change{Op: session.OpTouch, TTL: shortTTL}))
		eventuallyGone(t, s, "short", fmt.Sprintf("Commit(OpTouch) with TTL %v", shortTTL))
	})
}
