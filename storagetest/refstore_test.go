package storagetest_test

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tgsession/session"
)

// backend is the data shared by the clients of the reference locking
// store: what a Redis or PostgreSQL server holds for several processes.
type backend struct {
	mu     sync.Mutex
	data   map[string]item
	locks  map[string]lockRow
	marks  map[string][]string // key -> the marks applied to it, newest last
	tokens int64
	trips  atomic.Int64 // round trips of all clients
}

type item struct {
	value   []byte
	expires time.Time // zero: never
}

type lockRow struct {
	token int64
	until time.Time
}

func newBackend() *backend {
	return &backend{data: map[string]item{}, locks: map[string]lockRow{}}
}

// flaw is a deliberate bug of a client, for checking that the suites
// catch it.
type flaw int

const (
	sound      flaw = iota
	localLocks      // locks only within the client, like an in-process table
	noFence         // Commit of a lost lease writes anyway
	revive          // Touch brings back expired keys
)

// client is one client of a backend, with in-process state of its own, as
// a process has. It is a session.Store with every capability, leases that
// renew themselves until Commit or Release, and Freeze.
type client struct {
	be     *backend
	lease  time.Duration
	flaw   flaw
	locks  map[string]lockRow // its own lock table, for localLocks
	faulty atomic.Bool        // every call fails, as with a server down
}

var (
	_ session.Store   = (*client)(nil)
	_ session.Expirer = (*client)(nil)
	_ session.Lister  = (*client)(nil)
	_ session.Locker  = (*client)(nil)
)

func newClient(be *backend, lease time.Duration, f flaw) *client {
	return &client{be: be, lease: lease, flaw: f, locks: map[string]lockRow{}}
}

// errFault is the error of a faulty client.
var errFault = errors.New("ref: injected fault")

// call starts a round trip: it checks ctx and the fault switch, counts
// the trip and locks the backend. The caller unlocks be.mu.
func (c *client) call(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("ref: %s %q: %w", op, key, err)
	}
	if c.faulty.Load() {
		return fmt.Errorf("ref: %s %q: %w", op, key, errFault)
	}
	c.be.trips.Add(1)
	c.be.mu.Lock()
	return nil
}

func (c *client) lockTable() map[string]lockRow {
	if c.flaw == localLocks {
		return c.locks
	}
	return c.be.locks
}

func live(it item, now time.Time) bool { return it.expires.IsZero() || now.Before(it.expires) }

func expiry(ttl time.Duration) time.Time {
	if ttl <= 0 {
		return time.Time{}
	}
	return time.Now().Add(ttl)
}

func (c *client) Read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := c.call(ctx, "read", key); err != nil {
		return nil, false, err
	}
	defer c.be.mu.Unlock()
	it, ok := c.be.data[key]
	if !ok || !live(it, time.Now()) {
		return nil, false, nil
	}
	return it.value, true, nil
}

func (c *client) Write(ctx context.Context, key string, value []byte) error {
	return c.WriteTTL(ctx, key, value, 0)
}

func (c *client) WriteTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := c.call(ctx, "write", key); err != nil {
		return err
	}
	defer c.be.mu.Unlock()
	c.be.data[key] = item{append([]byte{}, value...), expiry(ttl)}
	return nil
}

func (c *client) Delete(ctx context.Context, key string) error {
	if err := c.call(ctx, "delete", key); err != nil {
		return err
	}
	defer c.be.mu.Unlock()
	delete(c.be.data, key)
	return nil
}

func (c *client) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := c.call(ctx, "touch", key); err != nil {
		return err
	}
	defer c.be.mu.Unlock()
	c.touchLocked(key, ttl)
	return nil
}

func (c *client) touchLocked(key string, ttl time.Duration) {
	if it, ok := c.be.data[key]; ok && (live(it, time.Now()) || c.flaw == revive) {
		it.expires = expiry(ttl)
		c.be.data[key] = it
	}
}

func (c *client) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		if err := c.call(ctx, "list", ""); err != nil {
			yield("", err)
			return
		}
		var keys []string
		now := time.Now()
		for k, it := range c.be.data {
			if live(it, now) {
				keys = append(keys, k)
			}
		}
		c.be.mu.Unlock()
		sort.Strings(keys)
		for _, k := range keys {
			if err := ctx.Err(); err != nil {
				yield("", fmt.Errorf("ref: list: %w", err))
				return
			}
			if !yield(k, nil) {
				return
			}
		}
	}
}

// Lock polls for the key's lock row, as a store over a server does.
func (c *client) Lock(ctx context.Context, key, mark string) (session.Lease, error) {
	for {
		if err := c.call(ctx, "lock", key); err != nil {
			return nil, err
		}
		now := time.Now()
		locks := c.lockTable()
		if row, held := locks[key]; !held || !now.Before(row.until) {
			c.be.tokens++
			token := c.be.tokens
			locks[key] = lockRow{token, now.Add(c.lease)}
			it, found := c.be.data[key]
			found = found && live(it, now)
			c.be.mu.Unlock()
			l := &lease{c: c, key: key, mark: mark, token: token, value: it.value, found: found, stop: make(chan struct{})}
			l.applied = mark != "" && slices.Contains(c.be.marks[key], mark)
			go l.renew()
			return l, nil
		}
		c.be.mu.Unlock()
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("ref: lock %q: %w", key, ctx.Err())
		case <-time.After(2 * time.Millisecond):
		}
	}
}

// lease is one hold of a client's lock.
type lease struct {
	c        *client
	key      string
	mark     string
	applied  bool
	token    int64
	value    []byte
	found    bool
	stop     chan struct{} // closed: no more renewal
	stopOnce sync.Once
	ended    atomic.Bool
}

var (
	_ session.Lease         = (*lease)(nil)
	_ interface{ Freeze() } = (*lease)(nil)
)

func (l *lease) renew() {
	t := time.NewTicker(l.c.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		l.c.be.mu.Lock()
		locks := l.c.lockTable()
		row, ok := locks[l.key]
		if ok && row.token == l.token {
			locks[l.key] = lockRow{l.token, time.Now().Add(l.c.lease)}
		}
		l.c.be.mu.Unlock()
		if !ok || row.token != l.token {
			return // lost
		}
	}
}

func (l *lease) Value() ([]byte, bool) { return l.value, l.found }

func (l *lease) Applied() bool { return l.applied }

// Freeze stops the renewal, as if the holder's process froze.
func (l *lease) Freeze() { l.stopOnce.Do(func() { close(l.stop) }) }

func (l *lease) Commit(ctx context.Context, ch session.Change) error {
	if l.ended.Swap(true) {
		return fmt.Errorf("ref: commit %q: the lease has ended", l.key)
	}
	l.Freeze()
	if err := l.c.call(ctx, "commit", l.key); err != nil {
		l.release()
		return err
	}
	defer l.c.be.mu.Unlock()
	locks := l.c.lockTable()
	row, ok := locks[l.key]
	if (!ok || row.token != l.token || !time.Now().Before(row.until)) && l.c.flaw != noFence {
		return fmt.Errorf("ref: commit %q: %w", l.key, session.ErrConflict)
	}
	if ok && row.token == l.token {
		delete(locks, l.key)
	}
	switch ch.Op {
	case session.OpWrite:
		l.c.be.data[l.key] = item{append([]byte{}, ch.Value...), expiry(ch.TTL)}
	case session.OpTouch:
		l.c.touchLocked(l.key, ch.TTL)
	case session.OpDelete:
		delete(l.c.be.data, l.key)
	}
	if l.mark != "" {
		if l.c.be.marks == nil {
			l.c.be.marks = make(map[string][]string)
		}
		m := append(l.c.be.marks[l.key], l.mark)
		if len(m) > session.AppliedWindow {
			m = m[len(m)-session.AppliedWindow:]
		}
		l.c.be.marks[l.key] = m
	}
	return nil
}

func (l *lease) Release() {
	if l.ended.Swap(true) {
		return
	}
	l.Freeze()
	l.release()
}

// release deletes the lock row if it is still this lease's.
func (l *lease) release() {
	l.c.be.mu.Lock()
	defer l.c.be.mu.Unlock()
	locks := l.c.lockTable()
	if row, ok := locks[l.key]; ok && row.token == l.token {
		delete(locks, l.key)
	}
}
