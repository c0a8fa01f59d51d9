package lease

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

var errLost = errors.New("lost")

// fake is a backend with one lease per key, as Redis or the locks table.
type fake struct {
	mu       sync.Mutex
	owner    map[string]string // key -> token
	renewals atomic.Int32
	releases atomic.Int32
	renewErr error
	errs     []error
}

func newFake() *fake { return &fake{owner: make(map[string]string)} }

func (f *fake) table(lease time.Duration) *Table {
	return NewTable(Config{
		Name:  "fake",
		Lease: lease,
		Retry: 5 * time.Millisecond,
		Renew: func(ctx context.Context, key, token string) (bool, error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.renewals.Add(1)
			if f.renewErr != nil {
				return false, f.renewErr
			}
			return f.owner[key] == token, nil
		},
		Release: func(ctx context.Context, key, token string) error {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.releases.Add(1)
			if f.owner[key] == token {
				delete(f.owner, key)
			}
			return nil
		},
		Lost: errLost,
		OnError: func(err error) {
			f.mu.Lock()
			defer f.mu.Unlock()
			f.errs = append(f.errs, err)
		},
	})
}

func (f *fake) try(key string) func(token string) (bool, error) {
	return func(token string) (bool, error) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if _, taken := f.owner[key]; taken {
			return false, nil
		}
		f.owner[key] = token
		return true, nil
	}
}

func (f *fake) errors() []error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]error(nil), f.errs...)
}

func TestLeaseHoldRenewRelease(t *testing.T) {
	f := newFake()
	tab := f.table(30 * time.Millisecond)
	ctx := context.Background()
	l, err := tab.Acquire(ctx, "k", f.try("k"))
	require.NoError(t, err)
	var locals atomic.Int32
	unlock := tab.Hold(ctx, "k", l, func() { locals.Add(1) })

	tok, ok := tab.Token("k")
	require.True(t, ok)
	assert.Len(t, tok, 32)

	time.Sleep(100 * time.Millisecond)
	assert.GreaterOrEqual(t, f.renewals.Load(), int32(2), "renewed every Lease/3")
	assert.Empty(t, f.errors())

	unlock()
	unlock() // does nothing
	assert.Equal(t, int32(1), locals.Load())
	assert.Equal(t, int32(1), f.releases.Load())
	_, ok = tab.Token("k")
	assert.False(t, ok, "unlock forgets the lease")
	n := f.renewals.Load()
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, n, f.renewals.Load(), "no renewal after unlock")
}

func TestLeaseLost(t *testing.T) {
	f := newFake()
	tab := f.table(30 * time.Millisecond)
	ctx := context.Background()
	l, err := tab.Acquire(ctx, "k", f.try("k"))
	require.NoError(t, err)
	l.Prefetch([]byte("v"), true)
	unlock := tab.Hold(ctx, "k", l, func() {})
	defer unlock()

	f.mu.Lock()
	f.owner["k"] = "someone else"
	f.mu.Unlock()
	require.Eventually(t, func() bool { return len(f.errors()) > 0 }, 2*time.Second, 5*time.Millisecond)
	assert.ErrorIs(t, f.errors()[0], errLost)
	assert.Contains(t, f.errors()[0].Error(), `fake: renew lock "k"`)
	_, _, ok := tab.TakePrefetched("k", 0)
	assert.False(t, ok, "a lost lease's prefetched value is dropped")
	n := f.renewals.Load()
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, n, f.renewals.Load(), "a lost lease is not renewed")
}

func TestLeaseRenewErrorRetries(t *testing.T) {
	f := newFake()
	f.renewErr = errors.New("down")
	tab := f.table(30 * time.Millisecond)
	ctx, cancel := context.WithCancel(context.Background())
	l, err := tab.Acquire(ctx, "k", f.try("k"))
	require.NoError(t, err)
	unlock := tab.Hold(ctx, "k", l, func() {})
	defer unlock()
	require.Eventually(t, func() bool { return f.renewals.Load() >= 2 }, 2*time.Second, 5*time.Millisecond)
	assert.ErrorContains(t, f.errors()[0], "down")

	// The holder's ctx ends: renewal stops, the lease runs out.
	cancel()
	time.Sleep(30 * time.Millisecond)
	n := f.renewals.Load()
	time.Sleep(50 * time.Millisecond)
	assert.Equal(t, n, f.renewals.Load())
}

func TestLeaseAcquireWaitsAndCancels(t *testing.T) {
	f := newFake()
	tab := f.table(time.Second)
	ctx := context.Background()
	l, err := tab.Acquire(ctx, "k", f.try("k"))
	require.NoError(t, err)
	unlock := tab.Hold(ctx, "k", l, func() {})

	// Held: a second Acquire polls until its ctx ends.
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	_, err = tab.Acquire(cctx, "k", f.try("k"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)

	// Released while waiting: the waiter gets it.
	go func() {
		time.Sleep(20 * time.Millisecond)
		unlock()
	}()
	l2, err := tab.Acquire(ctx, "k", f.try("k"))
	require.NoError(t, err)
	assert.NotEqual(t, l.token, l2.token)
}

func TestLeaseAcquireErrorReleases(t *testing.T) {
	f := newFake()
	tab := f.table(time.Second)
	boom := errors.New("reply lost")
	_, err := tab.Acquire(context.Background(), "k", func(token string) (bool, error) {
		_, _ = f.try("k")(token) // taken, but the reply is lost
		return false, boom
	})
	assert.ErrorIs(t, err, boom)
	require.Eventually(t, func() bool {
		f.mu.Lock()
		defer f.mu.Unlock()
		return len(f.owner) == 0
	}, 2*time.Second, 5*time.Millisecond, "the lease is given back")
}

func TestLeasePrefetch(t *testing.T) {
	f := newFake()
	tab := f.table(time.Second)
	ctx := context.Background()
	l, err := tab.Acquire(ctx, "k", f.try("k"))
	require.NoError(t, err)
	l.Prefetch([]byte("v"), true)
	unlock := tab.Hold(ctx, "k", l, func() {})
	v, found, ok := tab.TakePrefetched("k", time.Hour)
	assert.True(t, ok)
	assert.True(t, found)
	assert.Equal(t, []byte("v"), v)
	_, _, ok = tab.TakePrefetched("k", time.Hour)
	assert.False(t, ok, "used at most once")
	unlock()

	// Token drops it; so does age beyond half the TTL.
	l, err = tab.Acquire(ctx, "k", f.try("k"))
	require.NoError(t, err)
	l.Prefetch(nil, false)
	unlock = tab.Hold(ctx, "k", l, func() {})
	_, ok = tab.Token("k")
	require.True(t, ok)
	_, _, ok = tab.TakePrefetched("k", time.Hour)
	assert.False(t, ok)
	unlock()

	l, err = tab.Acquire(ctx, "k", f.try("k"))
	require.NoError(t, err)
	l.Prefetch([]byte("old"), true)
	unlock = tab.Hold(ctx, "k", l, func() {})
	defer unlock()
	time.Sleep(10 * time.Millisecond)
	_, _, ok = tab.TakePrefetched("k", 10*time.Millisecond)
	assert.False(t, ok, "older than TTL/2")

	// Without prefetching nothing is returned.
	_, _, ok = tab.TakePrefetched("other", 0)
	assert.False(t, ok)
}
