// Package lease is the bookkeeping of the cross-process leases that the
// storage adapters (redisstore, pgstore) hold on session keys: the table of
// held leases with the value prefetched when each was taken, the renewal
// timer, the unlock-once function and the owner-only release. The adapter
// supplies the round trips (renew, release) in a [Config].
package lease

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// maxRelease bounds how long an unlock waits for the server: a release
// that cannot be made is not needed for correctness (the lease expires by
// itself), so a server that is down must not hold the update up for long.
const maxRelease = 2 * time.Second

// Config is what a [Table] needs from its adapter.
type Config struct {
	// Name prefixes the errors given to OnError ("redisstore").
	Name string
	// Lease is how long a lease lasts; it is renewed every Lease/3.
	Lease time.Duration
	// Retry caps the wait between attempts to take a lease held by
	// another process.
	Retry time.Duration
	// Renew extends key's lease if token still owns it; held is false if
	// it does not (the lease was lost).
	Renew func(ctx context.Context, key, token string) (held bool, err error)
	// Release deletes key's lease if token still owns it.
	Release func(ctx context.Context, key, token string) error
	// Lost is the error reported when a renewal finds the lease lost
	// (session.ErrConflict).
	Lost error
	// OnError, if set, is given the errors of renewals and releases,
	// which have no caller to return them to.
	OnError func(error)
}

// newToken returns a random lease token: 128 bits, so no two holders ever
// share one.
func newToken() (string, error) {
	var b [16]byte
	if _, err := cryptorand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lease token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Lease is one lock on a key held by a store in its backend.
type Lease struct {
	token string

	mu      sync.Mutex  // guards timer and stopped
	timer   *time.Timer // the next renewal
	stopped bool        // unlock was called: renew no more

	// The session as it was just after the lease was taken, read in the
	// same round trip: a Read under the lease that comes before any other
	// use of the key returns it instead of asking the server again
	// (guarded by Table.mu; used at most once, dropped by Write, Delete
	// and Touch).
	prefetched bool
	preValue   []byte
	preFound   bool
	preAt      time.Time
}

// Prefetch records the session value read with the lease (found false:
// there was none). Call it, if at all, before [Table.Hold].
func (l *Lease) Prefetch(value []byte, found bool) {
	l.prefetched, l.preValue, l.preFound, l.preAt = true, value, found, time.Now()
}

// Table is the set of leases one store holds, by key.
type Table struct {
	cfg Config

	mu   sync.Mutex
	held map[string]*Lease // keys whose lease this store holds
}

// NewTable returns an empty table whose leases use cfg.
func NewTable(cfg Config) *Table {
	return &Table{cfg: cfg, held: make(map[string]*Lease)}
}

// Acquire takes key's lease with a new random token: it calls try, which
// tries once to take the lease for token and reports whether it did, until
// it does, fails or ctx ends; then it returns try's or ctx's error. The
// lease is not yet held: pass it to [Table.Hold].
func (t *Table) Acquire(ctx context.Context, key string, try func(token string) (bool, error)) (*Lease, error) {
	token, err := newToken()
	if err != nil {
		return nil, err
	}
	wait := time.Millisecond
	for {
		ok, err := try(token)
		if err != nil {
			// The lease may have been taken with the reply lost: give it
			// back (only ours, by token) rather than block the key for a
			// whole lease.
			// In the background: the caller, whose context may have
			// ended, gets its error now.
			go t.Release(ctx, key, token)
			return nil, err
		}
		if ok {
			return &Lease{token: token}, nil
		}
		// Held by another process: poll with capped exponential backoff
		// and jitter, so that waiters of several processes spread out.
		timer := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			timer.Stop()
			return nil, ctx.Err()
		case <-timer.C:
		}
		wait = min(2*wait, t.cfg.Retry)
	}
}

// Hold records l, just taken on key, starts its renewal, which goes on
// until the returned unlock is called or ctx ends, and returns unlock.
// unlock stops the renewal, releases the lease (only if l still owns it)
// and then calls unlockLocal; calling it again does nothing.
func (t *Table) Hold(ctx context.Context, key string, l *Lease, unlockLocal func()) (unlock func()) {
	t.mu.Lock()
	t.held[key] = l
	t.mu.Unlock()
	t.renewLater(ctx, key, l)

	return func() {
		l.mu.Lock()
		if l.stopped {
			l.mu.Unlock()
			return
		}
		l.stopped = true
		if l.timer != nil {
			l.timer.Stop()
		}
		l.mu.Unlock()
		t.mu.Lock()
		delete(t.held, key)
		t.mu.Unlock()
		// Free the key in the backend before the next holder in this
		// process goes for it, so it need not poll.
		t.Release(ctx, key, l.token)
		unlockLocal()
	}
}

// Token returns the token of the lease this store holds on key, if any,
// and drops its prefetched value: the caller is about to change the key.
func (t *Table) Token(key string) (string, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.held[key]
	if l == nil {
		return "", false
	}
	l.prefetched, l.preValue = false, nil
	return l.token, true
}

// TakePrefetched returns, once, the value read with key's lease. ok is
// false if there is none, or if it is older than half of ttl (a lock held
// that long may have outlived the value's expiry; ttl 0: no expiry).
func (t *Table) TakePrefetched(key string, ttl time.Duration) (v []byte, found, ok bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	l := t.held[key]
	if l == nil || !l.prefetched {
		return nil, false, false
	}
	l.prefetched = false
	v, found = l.preValue, l.preFound
	l.preValue = nil
	if ttl > 0 && time.Since(l.preAt) >= ttl/2 {
		return nil, false, false
	}
	return v, found, true
}

// Release deletes key's lease if token still owns it. It runs even when
// ctx has ended (the lease must not outlive its holder needlessly), for at
// most maxRelease or the lease, whichever is shorter.
func (t *Table) Release(ctx context.Context, key, token string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), min(t.cfg.Lease, maxRelease))
	defer cancel()
	if err := t.cfg.Release(rctx, key, token); err != nil {
		t.report(fmt.Errorf("%s: release lock %q: %w", t.cfg.Name, key, err))
	}
}

// renewLater schedules the next renewal of l, a third of a lease from
// now. A timer rather than a goroutine per lock: nothing to start when
// locking or to wait for when unlocking.
func (t *Table) renewLater(ctx context.Context, key string, l *Lease) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.stopped {
		l.timer = time.AfterFunc(t.cfg.Lease/3, func() { t.renew(ctx, key, l) })
	}
}

func isStopped(l *Lease) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stopped
}

// renew extends l, and schedules the next renewal, unless the lock was
// released or the holder's ctx has ended (then the lease runs out).
func (t *Table) renew(ctx context.Context, key string, l *Lease) {
	if ctx.Err() != nil || isStopped(l) {
		return
	}
	every := t.cfg.Lease / 3
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), every)
	held, err := t.cfg.Renew(rctx, key, l.token)
	cancel()
	switch {
	case err != nil:
		// Try again next time; if the lease runs out or is taken over
		// meanwhile, fencing refuses the holder's write.
		if !isStopped(l) {
			t.report(fmt.Errorf("%s: renew lock %q: %w", t.cfg.Name, key, err))
		}
		t.renewLater(ctx, key, l)
	case !held:
		// Lost (or released meanwhile, which is no news).
		if !isStopped(l) {
			t.dropPrefetched(key, l)
			t.report(fmt.Errorf("%s: renew lock %q: %w", t.cfg.Name, key, t.cfg.Lost))
		}
	default:
		t.renewLater(ctx, key, l)
	}
}

// dropPrefetched forgets the value read with lease l of key, if l is
// still the held lease.
func (t *Table) dropPrefetched(key string, l *Lease) {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.held[key] == l {
		l.prefetched, l.preValue = false, nil
	}
}

func (t *Table) report(err error) {
	if t.cfg.OnError != nil {
		t.cfg.OnError(err)
	}
}
