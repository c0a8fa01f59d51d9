package session

import (
	"context"
	"hash/maphash"
	"iter"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the default [Store]: sessions in this process's memory, safe
// for concurrent use. Like every store it keeps each session's encoding,
// so what a handler sees next time is exactly what Redis or PostgreSQL
// would give back: a bot tested on Memory fails where production would.
//
// Memory is an [Expirer] and a [Lister]. It has no [Locker]: the
// middleware locks its keys in the process-wide table, which is all a
// store private to one process needs. Expired sessions are reported
// missing at once and removed a shard at a time as writes happen, so no
// write waits for more than one shard's housekeeping; a shard that lost
// most of its sessions is rebuilt, so its memory is given back.
type Memory struct {
	locks  *keyLocks[string] // the process-wide table of this store
	now    func() time.Time
	seed   maphash.Seed
	cursor atomic.Uint32 // the shard the next expiring write sweeps, if due
	shards [memoryShards]memoryShard
}

// memoryShards splits the store so that housekeeping (sweeping expired
// sessions, rebuilding a shrunken map) works on a small part at a time,
// under that part's lock only.
const memoryShards = 256

type memoryShard struct {
	mu        sync.RWMutex
	items     map[string]memoryItem
	peak      int   // most items since the map was last rebuilt
	nextSweep int64 // Unix ns
}

type memoryItem struct {
	data    []byte // never changed once stored: readers may keep it
	expires int64  // Unix ns; 0: never
}

// MemoryOptions configures [NewMemory].
type MemoryOptions struct {
	// Clock replaces time.Now for expiry, so tests can move time without
	// sleeping. Give it the same clock as the session's Options.Clock.
	Clock func() time.Time
}

// NewMemory returns an empty in-memory store.
func NewMemory(opts ...MemoryOptions) *Memory {
	m := &Memory{locks: newKeyLocks[string](), now: time.Now, seed: maphash.MakeSeed()}
	for _, o := range opts {
		if !isNil(o.Clock) {
			m.now = o.Clock
		}
	}
	return m
}

func (m *Memory) shard(key string) *memoryShard {
	return &m.shards[maphash.String(m.seed, key)%memoryShards]
}

// Read returns the bytes stored under key. The caller must not change them.
func (m *Memory) Read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	s := m.shard(key)
	s.mu.RLock()
	item, ok := s.items[key]
	s.mu.RUnlock()
	if !ok || (item.expires != 0 && m.now().UnixNano() >= item.expires) {
		return nil, false, nil
	}
	return item.data, true, nil
}

// Write stores value under key, with no expiry. Memory keeps the slice:
// the caller must not change it afterwards.
func (m *Memory) Write(ctx context.Context, key string, value []byte) error {
	return m.put(ctx, key, value, 0)
}

// WriteTTL stores value under key, to expire ttl from now. Memory keeps
// the slice, as Write does.
func (m *Memory) WriteTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	return m.put(ctx, key, value, ttl)
}

func (m *Memory) put(ctx context.Context, key string, value []byte, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	item := memoryItem{data: value} // the caller gives it up (see Store)
	if item.data == nil {
		item.data = []byte{}
	}
	var now int64
	if ttl > 0 {
		now = m.now().UnixNano()
		item.expires = now + int64(ttl)
	}
	s := m.shard(key)
	s.mu.Lock()
	if s.items == nil {
		s.items = make(map[string]memoryItem)
	}
	s.items[key] = item
	s.peak = max(s.peak, len(s.items))
	s.mu.Unlock()
	if ttl > 0 {
		m.sweepNext(now, ttl)
	}
	return nil
}

// Delete removes key; a missing key is not an error.
func (m *Memory) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s := m.shard(key)
	s.mu.Lock()
	delete(s.items, key)
	s.shrinkLocked()
	s.mu.Unlock()
	return nil
}

// Touch makes a live session expire ttl from now. A missing or expired
// key stays missing.
func (m *Memory) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	now := m.now().UnixNano()
	s := m.shard(key)
	s.mu.Lock()
	if item, ok := s.items[key]; ok && (item.expires == 0 || now < item.expires) {
		item.expires = 0
		if ttl > 0 {
			item.expires = now + int64(ttl)
		}
		s.items[key] = item
	}
	s.mu.Unlock()
	if ttl > 0 {
		m.sweepNext(now, ttl)
	}
	return nil
}

// Keys yields the key of every live session, in no particular order. It
// works on a snapshot of one shard's keys at a time, so the loop body may
// read and write the store.
func (m *Memory) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for i := range m.shards {
			if err := ctx.Err(); err != nil {
				yield("", err)
				return
			}
			s := &m.shards[i]
			now := m.now().UnixNano()
			s.mu.RLock()
			keys := make([]string, 0, len(s.items))
			for k, item := range s.items {
				if item.expires == 0 || now < item.expires {
					keys = append(keys, k)
				}
			}
			s.mu.RUnlock()
			for _, k := range keys {
				if !yield(k, nil) {
					return
				}
			}
		}
	}
}

// sweepNext sweeps the next shard in turn if its sweep is due: each
// expiring write looks at a bounded number of one shard's entries, and
// such writes anywhere sweep every shard in turn, each at most once per
// ttl/2 once it is clean.
func (m *Memory) sweepNext(now int64, ttl time.Duration) {
	s := &m.shards[m.cursor.Add(1)%memoryShards]
	s.mu.Lock()
	defer s.mu.Unlock()
	if now < s.nextSweep {
		return
	}
	// At most sweepBatch entries per write: a shard with more is swept
	// on by the next writes (map iteration starts at a random place).
	seen := 0
	for k, item := range s.items {
		if seen++; seen > sweepBatch {
			return // still due
		}
		if item.expires != 0 && now >= item.expires {
			delete(s.items, k)
		}
	}
	s.nextSweep = now + int64(ttl/2)
	s.shrinkLocked()
}

// sweepBatch bounds the entries one write's housekeeping looks at.
const sweepBatch = 256

// minShrink is the peak below which a shard's map is never rebuilt: small
// maps cost little, and rebuilding them often would cost more.
const minShrink = 64

// shrinkLocked rebuilds the shard's map once it holds less than a quarter
// of its peak, because a Go map never gives back the buckets of deleted
// keys. Each rebuild copies at most a quarter of the deletions since the
// last, so its cost per delete is constant.
func (s *memoryShard) shrinkLocked() {
	if len(s.items) == 0 {
		s.items, s.peak = nil, 0
		return
	}
	if s.peak < minShrink || len(s.items)*4 >= s.peak {
		return
	}
	items := make(map[string]memoryItem, len(s.items))
	for k, v := range s.items {
		items[k] = v
	}
	s.items, s.peak = items, len(items)
}
