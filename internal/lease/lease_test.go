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
	errs     chan error
}

func newFake() *fake {
	return &fake{owner: make(map[string]string), errs: make(chan error, 100)}
}

func (f *fake) config(lease time.Duration) *Config {
	return &Config{
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
		Lost:    errLost,
		OnError: func(err error) { f.errs <- err },
	}
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

// commit is a fenced commit of key: it deletes the lease if token owns
// it, and counts the calls.
func (f *fake) commit(key string, calls *atomic.Int32) func(ctx context.Context, token string) (bool, error) {
	return func(ctx context.Context, token string) (bool, error) {
		calls.Add(1)
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.owner[key] != token {
			return false, nil
		}
		delete(f.owner, key)
		return true, nil
	}
}

func (f *fake) held(key string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	_, ok := f.owner[key]
	return ok
}

// counter is a done function that counts its calls.
type counter struct{ n atomic.Int32 }

func (c *counter) done() { c.n.Add(1) }

// waitErr returns the next error reported to OnError.
func waitErr(t *testing.T, f *fake) error {
	t.Helper()
	select {
	case err := <-f.errs:
		return err
	case <-time.After(5 * time.Second):
		require.FailNow(t, "no error reported")
		return nil
	}
}

func TestRenewedUntilCommitThenNever(t *testing.T) {
	const lease = 30 * time.Millisecond
	f := newFake()
	cfg := f.config(lease)
	var local counter
	ctx, cancel := context.WithCancel(context.Background())
	l, err := Acquire(ctx, cfg, "k", local.done, f.try("k"))
	require.NoError(t, err)
	assert.Len(t, l.token, 32)
	// The caller's context ending does not stop the renewal.
	cancel()
	require.Eventually(t, func() bool { return f.renewals.Load() >= 3 }, 5*time.Second, time.Millisecond,
		"renewed every Lease/3 after the locker's ctx ended")

	var commits atomic.Int32
	require.NoError(t, l.Commit(context.Background(), f.commit("k", &commits)))
	assert.EqualValues(t, 1, commits.Load())
	assert.EqualValues(t, 1, local.n.Load(), "done called at commit")
	assert.False(t, f.held("k"))

	n := f.renewals.Load() // Commit waited for a renewal under way
	time.Sleep(3 * lease)  // longer than two renewal periods
	assert.Equal(t, n, f.renewals.Load(), "no renewal after Commit")

	// Ended: Release does nothing, a second Commit is an error.
	l.Release()
	assert.Zero(t, f.releases.Load())
	err = l.Commit(context.Background(), f.commit("k", &commits))
	assert.ErrorIs(t, err, errEnded)
	assert.EqualValues(t, 1, commits.Load())
	assert.EqualValues(t, 1, local.n.Load())
	assert.Empty(t, f.errs)
}

func TestReleaseIsIdempotentAndStopsRenewal(t *testing.T) {
	const lease = 30 * time.Millisecond
	f := newFake()
	var local counter
	l, err := Acquire(context.Background(), f.config(lease), "k", local.done, f.try("k"))
	require.NoError(t, err)
	l.Release()
	l.Release()
	assert.EqualValues(t, 1, f.releases.Load())
	assert.EqualValues(t, 1, local.n.Load())
	assert.False(t, f.held("k"))

	n := f.renewals.Load()
	time.Sleep(3 * lease)
	assert.Equal(t, n, f.renewals.Load(), "no renewal after Release")

	var commits atomic.Int32
	err = l.Commit(context.Background(), f.commit("k", &commits))
	assert.ErrorIs(t, err, errEnded)
	assert.Zero(t, commits.Load())
}

func TestLostLeaseFailsCommit(t *testing.T) {
	f := newFake()
	var local counter
	l, err := Acquire(context.Background(), f.config(30*time.Millisecond), "k", local.done, f.try("k"))
	require.NoError(t, err)

	f.mu.Lock()
	f.owner["k"] = "someone else"
	f.mu.Unlock()
	err = waitErr(t, f)
	assert.ErrorIs(t, err, errLost)
	assert.ErrorContains(t, err, `fake: renew lock "k"`)

	var commits atomic.Int32
	err = l.Commit(context.Background(), f.commit("k", &commits))
	assert.ErrorIs(t, err, errLost)
	assert.ErrorContains(t, err, `fake: commit "k"`)
	assert.Zero(t, commits.Load(), "a lease known lost is not committed")
	assert.EqualValues(t, 1, local.n.Load())
	assert.Zero(t, f.releases.Load(), "nothing to release")
	n := f.renewals.Load()
	time.Sleep(100 * time.Millisecond)
	assert.Equal(t, n, f.renewals.Load(), "a lost lease is not renewed")
}

func TestCommitRefusedByTheServer(t *testing.T) {
	f := newFake()
	var local counter
	l, err := Acquire(context.Background(), f.config(time.Second), "k", local.done, f.try("k"))
	require.NoError(t, err)
	f.mu.Lock()
	f.owner["k"] = "someone else" // taken over before any renewal saw it
	f.mu.Unlock()
	var commits atomic.Int32
	err = l.Commit(context.Background(), f.commit("k", &commits))
	assert.ErrorIs(t, err, errLost)
	assert.EqualValues(t, 1, commits.Load())
	assert.EqualValues(t, 1, local.n.Load())
}

func TestCommitWithEndedContextReleases(t *testing.T) {
	f := newFake()
	var local counter
	l, err := Acquire(context.Background(), f.config(time.Second), "k", local.done, f.try("k"))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	var commits atomic.Int32
	err = l.Commit(ctx, f.commit("k", &commits))
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorContains(t, err, `fake: commit "k"`)
	assert.Zero(t, commits.Load(), "nothing committed with an ended ctx")
	assert.False(t, f.held("k"), "released")
	assert.EqualValues(t, 1, local.n.Load())
}

func TestCommitErrorReleases(t *testing.T) {
	f := newFake()
	var local counter
	l, err := Acquire(context.Background(), f.config(time.Second), "k", local.done, f.try("k"))
	require.NoError(t, err)
	boom := errors.New("connection reset")
	err = l.Commit(context.Background(), func(context.Context, string) (bool, error) { return false, boom })
	assert.ErrorIs(t, err, boom)
	assert.NotErrorIs(t, err, errLost)
	assert.False(t, f.held("k"), "released after a failed commit")
	assert.EqualValues(t, 1, local.n.Load())
}

func TestRenewErrorIsReportedAndRetried(t *testing.T) {
	f := newFake()
	f.renewErr = errors.New("down")
	var local counter
	l, err := Acquire(context.Background(), f.config(30*time.Millisecond), "k", local.done, f.try("k"))
	require.NoError(t, err)
	assert.ErrorContains(t, waitErr(t, f), "down")
	assert.ErrorContains(t, waitErr(t, f), "down", "retried")
	l.Release()
	assert.EqualValues(t, 1, local.n.Load())
}

func TestAcquireWaitsAndCancels(t *testing.T) {
	f := newFake()
	cfg := f.config(time.Second)
	ctx := context.Background()
	var first counter
	l, err := Acquire(ctx, cfg, "k", first.done, f.try("k"))
	require.NoError(t, err)

	// Held: a second Acquire polls until its ctx ends.
	var second counter
	cctx, cancel := context.WithTimeout(ctx, 30*time.Millisecond)
	defer cancel()
	_, err = Acquire(cctx, cfg, "k", second.done, f.try("k"))
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.EqualValues(t, 1, second.n.Load(), "done called when Acquire fails")

	// Released while waiting: the waiter gets it.
	got := make(chan *Lease)
	go func() {
		l2, err := Acquire(ctx, cfg, "k", func() {}, f.try("k"))
		assert.NoError(t, err)
		got <- l2
	}()
	l.Release()
	select {
	case l2 := <-got:
		require.NotNil(t, l2)
		assert.NotEqual(t, l.token, l2.token)
		l2.Release()
	case <-time.After(5 * time.Second):
		require.FailNow(t, "the waiter did not get the lease")
	}
}

func TestAcquireErrorReleases(t *testing.T) {
	f := newFake()
	var local counter
	boom := errors.New("reply lost")
	_, err := Acquire(context.Background(), f.config(time.Second), "k", local.done, func(token string) (bool, error) {
		_, _ = f.try("k")(token) // taken, but the reply is lost
		return false, boom
	})
	assert.ErrorIs(t, err, boom)
	assert.EqualValues(t, 1, local.n.Load())
	require.Eventually(t, func() bool { return !f.held("k") }, 5*time.Second, time.Millisecond,
		"the lease is given back")
}

func TestFreezeStopsRenewalOnly(t *testing.T) {
	const lease = 30 * time.Millisecond
	f := newFake()
	var local counter
	l, err := Acquire(context.Background(), f.config(lease), "k", local.done, f.try("k"))
	require.NoError(t, err)
	l.Freeze() // waits for a renewal under way
	n := f.renewals.Load()
	time.Sleep(3 * lease)
	assert.Equal(t, n, f.renewals.Load(), "no renewal after Freeze")
	assert.True(t, f.held("k"), "the lease stays until it runs out")
	assert.Zero(t, local.n.Load(), "the lease has not ended")

	// Woken up: the commit is fenced as ever.
	var commits atomic.Int32
	require.NoError(t, l.Commit(context.Background(), f.commit("k", &commits)))
	assert.EqualValues(t, 1, commits.Load())
	assert.EqualValues(t, 1, local.n.Load())
}

// A renewal under way when the lease ends lands before Commit (or
// Release) returns: nothing of the lease reaches the server afterwards.
func TestEndWaitsForARenewalUnderWay(t *testing.T) {
	for _, end := range []string{"Commit", "Release"} {
		t.Run(end, func(t *testing.T) {
			const lease = 30 * time.Millisecond
			f := newFake()
			entered, proceed := make(chan struct{}), make(chan struct{})
			cfg := f.config(lease)
			renew := cfg.Renew
			var once sync.Once
			cfg.Renew = func(ctx context.Context, key, token string) (bool, error) {
				once.Do(func() { close(entered); <-proceed })
				return renew(ctx, key, token)
			}
			var local counter
			l, err := Acquire(context.Background(), cfg, "k", local.done, f.try("k"))
			require.NoError(t, err)
			<-entered // the first renewal is under way, and waits
			returned := make(chan struct{})
			go func() {
				defer close(returned)
				if end == "Commit" {
					assert.NoError(t, l.Commit(context.Background(), func(context.Context, string) (bool, error) { return true, nil }))
				} else {
					l.Release()
				}
			}()
			select {
			case <-returned:
				t.Fatalf("%s returned while a renewal was under way", end)
			default:
			}
			close(proceed)
			<-returned
			n := f.renewals.Load()
			assert.EqualValues(t, 1, n, "the renewal under way landed before %s returned", end)
			time.Sleep(3 * lease)
			assert.Equal(t, n, f.renewals.Load(), "no renewal after %s", end)
		})
	}
}
