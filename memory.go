package session

import (
	"context"
	"fmt"
	"iter"
	"sync"
	"time"
)

// Memory is the default [StorageAdapter]: sessions in a map, safe for
// concurrent use. It never shares memory with its callers: values are
// deep-copied on the way in and out, unexported fields and the dynamic
// types of interface values included, so the next update reads exactly
// what the last one left, and a handler that mutates a map in place and
// then fails leaves the stored session as it was. A type that cannot be
// copied (it holds a channel or a function) makes every call fail with an
// error naming the type.
//
// Memory is a [Locker] (within this process), a [Toucher] and an
// [Iterator]. With a TTL (see [MemoryOptions]) a session expires once it
// has gone unused for TTL: a write, or a touch by the middleware after an
// update that used the session, restarts the clock. Expired sessions are
// reported missing and swept from the map as writes happen, so they do not
// pile up even if they are never read. When many sessions have been
// deleted the map is rebuilt, so its memory is given back.
type Memory[T any] struct {
	ttl   time.Duration
	now   func() time.Time
	ops   valueOps[T]
	locks *keyLocks[string]

	mu        sync.RWMutex
	items     map[string]memoryItem[T]
	forwards  map[string]memoryForward // chat migrations' forwards, by old key
	peak      int                      // most items since the map was last rebuilt
	nextSweep int64                    // Unix ns; 0 without TTL
}

// memoryForward is a chat migration's forward: it lives as a session would.
type memoryForward struct {
	to      string
	expires int64 // Unix ns; 0: never
}

type memoryItem[T any] struct {
	value   T
	expires int64 // Unix ns; 0: never
}

// MemoryOptions configures [NewMemory]. The zero value keeps sessions
// until they are deleted.
type MemoryOptions struct {
	// TTL, when > 0, makes a session expire once it has gone unused for
	// TTL: it is expired from the instant its last write or touch is TTL
	// old, the same boundary as [EnhanceOptions.TTL].
	TTL time.Duration
	// Clock replaces time.Now, so tests can move time without sleeping.
	Clock func() time.Time
}

// NewMemory returns an empty in-memory store. Options are usually given
// as one MemoryOptions; several are merged, the later ones' non-zero fields
// winning.
func NewMemory[T any](opts ...MemoryOptions) *Memory[T] {
	o := MemoryOptions{Clock: time.Now}
	for _, opt := range opts {
		if opt.TTL != 0 {
			o.TTL = opt.TTL
		}
		if opt.Clock != nil {
			o.Clock = opt.Clock
		}
	}
	if o.TTL < 0 {
		configErr("NewMemory: negative TTL %v", o.TTL)
	}
	if isNil(o.Clock) {
		o.Clock = time.Now
	}
	return &Memory[T]{
		ttl:   o.TTL,
		now:   o.Clock,
		ops:   opsFor[T](),
		locks: newKeyLocks[string](),
		items: make(map[string]memoryItem[T]),
	}
}

// WithTTL is MemoryOptions{TTL: ttl}, kept so that code written for the
// first release still compiles.
//
// Deprecated: use NewMemory[T](MemoryOptions{TTL: ttl}).
func WithTTL(ttl time.Duration) MemoryOptions { return MemoryOptions{TTL: ttl} }

// WithClock is MemoryOptions{Clock: now}, kept so that code written for the
// first release still compiles.
//
// Deprecated: use NewMemory[T](MemoryOptions{Clock: now}).
func WithClock(now func() time.Time) MemoryOptions { return MemoryOptions{Clock: now} }

func (m *Memory[T]) forwardOf(ctx context.Context, key string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	m.mu.RLock()
	f, ok := m.forwards[key]
	m.mu.RUnlock()
	if !ok || (f.expires != 0 && m.clock() >= f.expires) {
		return "", false, nil
	}
	return f.to, true, nil
}

func (m *Memory[T]) setForward(ctx context.Context, key, to string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f := memoryForward{to: to}
	now := m.clock()
	if m.ttl > 0 {
		f.expires = now + int64(m.ttl)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.forwards == nil {
		m.forwards = make(map[string]memoryForward)
	}
	for k, old := range m.forwards { // as few as the groups that migrated
		if old.expires != 0 && now >= old.expires {
			delete(m.forwards, k)
		}
	}
	m.forwards[key] = f
	return nil
}

// checkType reports a session type Memory cannot copy.
func (m *Memory[T]) checkType() error {
	if m.ops.ops.err != nil {
		return fmt.Errorf("memory: %w", m.ops.ops.err)
	}
	return nil
}

// Read returns a copy of the session stored under key.
func (m *Memory[T]) Read(ctx context.Context, key string) (T, bool, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, false, err
	}
	m.mu.RLock()
	item, ok := m.items[key]
	m.mu.RUnlock()
	if !ok || m.expired(item, m.clock()) {
		return zero, false, nil
	}
	v, err := m.ops.cloneValue(item.value)
	if err != nil {
		return zero, false, fmt.Errorf("session: memory: copy %q: %w", key, err)
	}
	return v, true, nil
}

// Write stores a copy of value under key.
func (m *Memory[T]) Write(ctx context.Context, key string, value T) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	v, err := m.ops.cloneValue(value)
	if err != nil {
		return fmt.Errorf("session: memory: copy %q: %w", key, err)
	}
	item := memoryItem[T]{value: v}
	now := m.clock()
	if m.ttl > 0 {
		item.expires = now + int64(m.ttl)
	}
	m.mu.Lock()
	m.items[key] = item
	m.peak = max(m.peak, len(m.items))
	if m.ttl > 0 && now >= m.nextSweep {
		m.sweepLocked(now)
	}
	m.mu.Unlock()
	return nil
}

// Delete removes key; a missing key is not an error.
func (m *Memory[T]) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	m.mu.Lock()
	delete(m.items, key)
	m.shrinkLocked()
	m.mu.Unlock()
	return nil
}

// Touch restarts the expiry of a live session, as a write would, without
// copying it. Without a TTL, or for a missing key, it does nothing.
func (m *Memory[T]) Touch(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil || m.ttl == 0 {
		return err
	}
	now := m.clock()
	m.mu.Lock()
	if item, ok := m.items[key]; ok && !m.expired(item, now) {
		item.expires = now + int64(m.ttl)
		m.items[key] = item
	}
	m.mu.Unlock()
	return nil
}

// Lock waits until no one else holds key in this store, or ctx ends. The
// middleware holds it while an update uses the session of key.
func (m *Memory[T]) Lock(ctx context.Context, key string) (func(), error) {
	return unlockOnce(m.locks.lock(ctx, key, key))
}

func (m *Memory[T]) keyTable() *keyLocks[string] { return m.locks }

// Has reports whether a live session is stored under key.
func (m *Memory[T]) Has(ctx context.Context, key string) (bool, error) {
	if err := ctx.Err(); err != nil {
		return false, err
	}
	m.mu.RLock()
	item, ok := m.items[key]
	m.mu.RUnlock()
	return ok && !m.expired(item, m.clock()), nil
}

// Keys yields the key of every live session, in no particular order.
func (m *Memory[T]) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for e, err := range m.Entries(ctx) {
			if !yield(e.Key, err) {
				return
			}
		}
	}
}

// Values yields a copy of every live session, in no particular order.
func (m *Memory[T]) Values(ctx context.Context) iter.Seq2[T, error] {
	return values(m.Entries(ctx))
}

// Entries yields every live session, in no particular order. It works on
// a snapshot of the keys, so the loop body may read and write the store.
func (m *Memory[T]) Entries(ctx context.Context) iter.Seq2[Entry[T], error] {
	return func(yield func(Entry[T], error) bool) {
		if err := ctx.Err(); err != nil {
			yield(Entry[T]{}, err) // even when there is nothing to list
			return
		}
		m.mu.RLock()
		keys := make([]string, 0, len(m.items))
		for k := range m.items {
			keys = append(keys, k)
		}
		m.mu.RUnlock()
		for _, k := range keys {
			v, ok, err := m.Read(ctx, k)
			if err != nil {
				yield(Entry[T]{}, err)
				return
			}
			if ok && !yield(Entry[T]{Key: k, Value: v}, nil) {
				return
			}
		}
	}
}

// clock returns the time in Unix ns, or 0 without a TTL: the clock is then
// never needed, and the hot path skips it.
func (m *Memory[T]) clock() int64 {
	if m.ttl == 0 {
		return 0
	}
	return m.now().UnixNano()
}

func (m *Memory[T]) expired(item memoryItem[T], now int64) bool {
	return item.expires != 0 && now >= item.expires
}

// sweepLocked drops expired items. It runs at most once per TTL/2 of
// clock time, so its cost per write stays constant on average while no
// expired item outlives its expiry by more than half a TTL of writes.
func (m *Memory[T]) sweepLocked(now int64) {
	for k, item := range m.items {
		if m.expired(item, now) {
			delete(m.items, k)
		}
	}
	m.nextSweep = now + int64(m.ttl/2)
	m.shrinkLocked()
}

// minShrink is the peak below which the map is never rebuilt: small maps
// cost little, and rebuilding them often would cost more.
const minShrink = 1024

// shrinkLocked rebuilds the map once it holds less than a quarter of its
// peak, because a Go map never gives back the buckets of deleted keys.
// Each rebuild copies at most a quarter of the deletions since the last,
// so its cost per delete is constant.
func (m *Memory[T]) shrinkLocked() {
	if m.peak < minShrink || len(m.items)*4 >= m.peak {
		return
	}
	items := make(map[string]memoryItem[T], len(m.items))
	for k, v := range m.items {
		items[k] = v
	}
	m.items, m.peak = items, len(items)
}
