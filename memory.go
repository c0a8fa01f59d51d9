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
// copied on the way in and out (by assignment for types without
// references, through JSON otherwise, as a persistent store would), so a
// handler that mutates a map in place and then fails leaves the stored
// session as it was.
//
// With [WithTTL], sessions expire a fixed time after their last write.
// Expired sessions are reported as missing and are swept from the map as
// writes happen, so they do not pile up even if they are never read.
type Memory[T any] struct {
	ttl time.Duration
	now func() time.Time
	ops valueOps[T]

	mu        sync.RWMutex
	items     map[string]memoryItem[T]
	nextSweep time.Time // zero without TTL
}

type memoryItem[T any] struct {
	value   T
	expires time.Time // zero: never
}

// MemoryOption configures [NewMemory].
type MemoryOption func(*memoryConfig)

type memoryConfig struct {
	ttl time.Duration
	now func() time.Time
}

// WithTTL makes sessions expire ttl after their last write. A ttl <= 0
// means never.
func WithTTL(ttl time.Duration) MemoryOption {
	return func(c *memoryConfig) { c.ttl = ttl }
}

// WithClock replaces time.Now, so tests can move time without sleeping.
func WithClock(now func() time.Time) MemoryOption {
	return func(c *memoryConfig) { c.now = now }
}

// NewMemory returns an empty in-memory store.
func NewMemory[T any](opts ...MemoryOption) *Memory[T] {
	cfg := memoryConfig{now: time.Now}
	for _, o := range opts {
		o(&cfg)
	}
	return &Memory[T]{
		ttl:   max(cfg.ttl, 0),
		now:   cfg.now,
		ops:   opsFor[T](),
		items: make(map[string]memoryItem[T]),
	}
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
	v, err := m.ops.clone(item.value)
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
	v, err := m.ops.clone(value)
	if err != nil {
		return fmt.Errorf("session: memory: copy %q: %w", key, err)
	}
	item := memoryItem[T]{value: v}
	now := m.clock()
	if m.ttl > 0 {
		item.expires = now.Add(m.ttl)
	}
	m.mu.Lock()
	m.items[key] = item
	if m.ttl > 0 && !now.Before(m.nextSweep) {
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
	m.mu.Unlock()
	return nil
}

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
	return func(yield func(T, error) bool) {
		for e, err := range m.Entries(ctx) {
			if !yield(e.Value, err) {
				return
			}
		}
	}
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

func (m *Memory[T]) clock() time.Time {
	if m.ttl == 0 {
		return time.Time{} // no TTL: skip the clock on the hot path
	}
	return m.now()
}

func (m *Memory[T]) expired(item memoryItem[T], now time.Time) bool {
	return !item.expires.IsZero() && !now.Before(item.expires)
}

// sweepLocked drops expired items. It runs at most once per TTL/2 of
// clock time, so its cost per write stays constant on average while no
// expired item outlives its expiry by more than half a TTL of writes.
func (m *Memory[T]) sweepLocked(now time.Time) {
	for k, item := range m.items {
		if m.expired(item, now) {
			delete(m.items, k)
		}
	}
	m.nextSweep = now.Add(m.ttl / 2)
}
