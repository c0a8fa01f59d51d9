// Package lease is the machinery of the cross-process leases that the
// storage adapters (redisstore, pgstore) take on session keys: random
// tokens, taking a lease with backoff while another process holds it, a
// renewal timer per lease that runs until the lease ends and never after,
// and ending it, by the adapter's fenced commit or by an owner-only
// release that waits for the server a bounded time. The adapter supplies
// the round trips.
package lease

import (
	"context"
	cryptorand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"
)

// maxRelease bounds how long a release waits for the server: a release
// that cannot be made is not needed for correctness (the lease expires by
// itself), so a server that is down must not hold the update up for long.
const maxRelease = 2 * time.Second

// Config is what the leases of one store need from their adapter.
type Config struct {
	// Name prefixes every error ("redisstore").
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
	// Lost is wrapped by the errors of a lease found lost
	// (session.ErrConflict).
	Lost error
	// OnError, if set, is given the errors of renewals and releases,
	// which have no caller to return them to.
	OnError func(error)
}

// errEnded reports a Commit of a lease that had already ended.
var errEnded = errors.New("the lease has already ended")

// newToken returns a random lease token: 128 bits, so no two holders ever
// share one.
func newToken() (string, error) {
	var b [16]byte
	if _, err := cryptorand.Read(b[:]); err != nil {
		return "", fmt.Errorf("lease token: %w", err)
	}
	return hex.EncodeToString(b[:]), nil
}

// Lease is one held lease on a key. It is renewed until [Lease.Commit] or
// [Lease.Release] ends it; the first of them to be called ends it.
type Lease struct {
	cfg   *Config
	key   string
	token string
	// base carries the values (tracing) of the context the lease was
	// taken with, without its cancellation: renewals and the release
	// must go on, for a bounded time each, when that context has ended.
	base context.Context
	done func() // called once, when the lease ends

	// renewing counts the renewal under way (0 or 1): ending the lease
	// waits for it, so that nothing of the lease reaches the server after
	// Commit or Release returned. Added to under mu, before ended is set.
	renewing sync.WaitGroup

	mu     sync.Mutex
	timer  *time.Timer // the next renewal
	ended  bool        // committed or released: renew no more
	frozen bool        // Freeze was called: renew no more
	lost   bool        // a renewal found the lease taken or gone
}

// Acquire takes key's lease with a new random token: it calls try, which
// tries once, in one round trip, to take the lease for token and reports
// whether it did, until it does, fails or ctx ends; then it returns try's
// or ctx's error. While another process holds the lease it polls, with
// capped exponential backoff and jitter.
//
// The lease returned is renewed every cfg.Lease/3, whatever becomes of
// ctx, until it is committed or released. done is called exactly once:
// when Acquire fails, or when the lease ends (after the lease was given
// back to the server, so that a next holder in this process need not
// poll).
func Acquire(ctx context.Context, cfg *Config, key string, done func(), try func(token string) (bool, error)) (*Lease, error) {
	token, err := newToken()
	if err != nil {
		done()
		return nil, err
	}
	wait := time.Millisecond
	for {
		if err := ctx.Err(); err != nil {
			done()
			return nil, err
		}
		ok, err := try(token)
		if err != nil {
			// The lease may have been taken with the reply lost: give it
			// back (only ours, by token) rather than block the key for a
			// whole lease; in the background, so that the caller gets
			// its error now.
			go release(cfg, context.WithoutCancel(ctx), key, token)
			done()
			return nil, err
		}
		if ok {
			l := &Lease{cfg: cfg, key: key, token: token, base: context.WithoutCancel(ctx), done: done}
			l.mu.Lock()
			l.renewLater()
			l.mu.Unlock()
			return l, nil
		}
		// Held by another process: poll, spreading out the waiters of
		// several processes.
		timer := time.NewTimer(wait/2 + rand.N(wait/2+1))
		select {
		case <-ctx.Done():
			timer.Stop()
			done()
			return nil, ctx.Err()
		case <-timer.C:
		}
		wait = min(2*wait, cfg.Retry)
	}
}

// end marks the lease ended, stops its renewal and waits for a renewal
// under way (at most a third of a lease: its timeout). It reports whether
// this call ended it, and whether a renewal had found it lost.
func (l *Lease) end() (ended, lost bool) {
	l.mu.Lock()
	if l.ended {
		l.mu.Unlock()
		return false, l.lost
	}
	l.ended = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.mu.Unlock()
	l.renewing.Wait()
	l.mu.Lock()
	defer l.mu.Unlock()
	return true, l.lost
}

// Commit ends the lease with the adapter's commit, which applies a change
// and deletes the lease in one round trip if token still owns it, and
// reports whether it did (held false: the lease was lost, nothing was
// changed). Whatever happens the lease ends: its renewal stops, and the
// done function given to Acquire is called before Commit returns.
//
// Commit calls commit only if the lease may still be held: a lease a
// renewal found lost, or a ctx that has ended, fails at once (the latter
// releasing the lease). If commit fails, the lease is released too: the
// change may or may not have been made, but the lease must not block the
// key. Errors name the key; a lost lease's wraps cfg.Lost, an ended
// ctx's wraps ctx.Err().
func (l *Lease) Commit(ctx context.Context, commit func(ctx context.Context, token string) (held bool, err error)) error {
	ended, lost := l.end()
	if !ended {
		return l.errorf(ctx, "commit", errEnded)
	}
	defer l.done()
	if lost {
		return l.errorf(ctx, "commit", l.cfg.Lost)
	}
	if err := ctx.Err(); err != nil {
		release(l.cfg, l.base, l.key, l.token)
		return l.errorf(ctx, "commit", err)
	}
	held, err := commit(ctx, l.token)
	if err != nil {
		release(l.cfg, l.base, l.key, l.token)
		return l.errorf(ctx, "commit", err)
	}
	if !held {
		return l.errorf(ctx, "commit", l.cfg.Lost)
	}
	return nil
}

// Release ends the lease without a change: it stops the renewal, deletes
// the lease on the server if it still owns it (waiting at most the
// shorter of a lease and maxRelease), and calls the done function given
// to Acquire. It does nothing if the lease has already ended.
func (l *Lease) Release() {
	ended, lost := l.end()
	if !ended {
		return
	}
	if !lost {
		release(l.cfg, l.base, l.key, l.token)
	}
	l.done()
}

// Freeze stops renewing the lease (waiting for a renewal under way) and
// does nothing else, as if the
// holder's process had frozen: the lease runs out on the server by
// itself, and a later Commit or Release behaves as that of a frozen
// holder that woke up (the commit is fenced, the release owner-only). It
// is a test hook (the leases of the adapters are storagetest.Freezer
// values, for storagetest.RunLocker).
func (l *Lease) Freeze() {
	l.mu.Lock()
	l.frozen = true
	if l.timer != nil {
		l.timer.Stop()
	}
	l.mu.Unlock()
	l.renewing.Wait() // as end: nothing renews once Freeze returned
}

// errorf wraps err from operation op on the lease's key. If ctx has
// ended, the result also wraps ctx's error, whatever error the client
// made of it, so callers can test for context.Canceled.
func (l *Lease) errorf(ctx context.Context, op string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("%s: %s %q: %w (%w)", l.cfg.Name, op, l.key, cerr, err)
	}
	return fmt.Errorf("%s: %s %q: %w", l.cfg.Name, op, l.key, err)
}

// release deletes key's lease if token still owns it, for at most the
// shorter of a lease and maxRelease, and reports a failure to OnError.
func release(cfg *Config, base context.Context, key, token string) {
	ctx, cancel := context.WithTimeout(base, min(cfg.Lease, maxRelease))
	defer cancel()
	if err := cfg.Release(ctx, key, token); err != nil {
		report(cfg, fmt.Errorf("%s: release lock %q: %w", cfg.Name, key, err))
	}
}

// renewLater schedules the next renewal, a third of a lease from now,
// unless the lease has ended. l.mu must be held. A timer rather than a
// goroutine per lease: nothing to start when locking, nothing to wait for
// when unlocking.
func (l *Lease) renewLater() {
	if !l.ended && !l.frozen {
		l.timer = time.AfterFunc(l.cfg.Lease/3, l.renew)
	}
}

// renew extends the lease and schedules the next renewal, unless the
// lease has ended or a renewal finds it lost.
func (l *Lease) renew() {
	l.mu.Lock()
	stopped := l.ended || l.frozen
	if !stopped {
		l.renewing.Add(1)
	}
	l.mu.Unlock()
	if stopped {
		return
	}
	defer l.renewing.Done()
	every := l.cfg.Lease / 3
	ctx, cancel := context.WithTimeout(l.base, every)
	held, err := l.cfg.Renew(ctx, l.key, l.token)
	cancel()

	var lostNow bool
	l.mu.Lock()
	switch {
	case l.ended || l.frozen:
		// Committed, released or frozen meanwhile: a lost lease is no
		// news, and nothing is renewed any more.
		l.mu.Unlock()
		return
	case err != nil:
		// Try again next time; if the lease runs out or is taken over
		// meanwhile, the commit's fencing refuses the change.
		l.renewLater()
	case !held:
		l.lost, lostNow = true, true
	default:
		l.renewLater()
	}
	l.mu.Unlock()
	// Reported outside l.mu, so that OnError may do anything.
	switch {
	case err != nil:
		report(l.cfg, fmt.Errorf("%s: renew lock %q: %w", l.cfg.Name, l.key, err))
	case lostNow:
		report(l.cfg, fmt.Errorf("%s: renew lock %q: %w", l.cfg.Name, l.key, l.cfg.Lost))
	}
}

func report(cfg *Config, err error) {
	if cfg.OnError != nil {
		cfg.OnError(err)
	}
}
