package session

import (
	"bytes"
	"context"
	"fmt"
	"hash/maphash"
	"iter"
	"reflect"
	"sync"
	"sync/atomic"
	"time"
)

// Memory is the default [StorageAdapter]: sessions in this process's
// memory, safe for concurrent use.
//
// Memory keeps what a byte store keeps: each session as its JSON encoding
// (a Memory[[]byte] keeps the bytes as given). So the next update sees
// exactly what Redis, PostgreSQL or a file would give it back: an int put
// in a map[string]any comes back a float64, an unexported field comes back
// zero, and a test of a bot on Memory fails where production on another
// store would. A session type JSON cannot encode (a channel, a func) is an
// [ErrConfig] when a middleware over Memory is built.
//
// Memory is a [Locker] (within this process), a [Toucher] and an
// [Iterator]. With a TTL (see [MemoryOptions]) a session expires once it
// has gone unused for TTL: a write, or a touch by the middleware after an
// update that used the session, restarts the clock. Expired sessions are
// reported missing and swept a shard at a time as writes happen, so they do
// not pile up even if they are never read, and no write waits for more than
// one shard's sweep. A shard that lost most of its sessions is rebuilt, so
// its memory is given back.
type Memory[T any] struct {
	ttl   time.Duration
	now   func() time.Time
	codec memoryCodec[T]
	locks *keyLocks[string]
	seed  maphash.Seed

	cursor atomic.Uint32 // the shard the next write sweeps, if due

	shards [memoryShards]memoryShard

	fwdMu    sync.Mutex
	forwards map[string]memoryForward // chat migrations' forwards, by old key
}

// memoryShards splits the store so that housekeeping (sweeping expired
// sessions, rebuilding a shrunken map) works on a small part at a time,
// under that part's lock only.
const memoryShards = 256

type memoryShard struct {
	mu        sync.RWMutex
	items     map[string]memoryItem
	peak      int   // most items since the map was last rebuilt
	nextSweep int64 // Unix ns; 0 without TTL
}

type memoryItem struct {
	data    []byte // never changed once stored: readers may keep it
	expires int64  // Unix ns; 0: never
}

// memoryForward is a chat migration's forward: it lives as a session would.
type memoryForward struct {
	to      string
	expires int64 // Unix ns; 0: never
}

// MemoryOptions configures [NewMemory]. The zero value keeps sessions
// until they are deleted.
type MemoryOptions struct {
	// TTL, when > 0, makes a session expire once it has gone unused for
	// TTL: it is expired from the instant its last write or touch is TTL
	// old, the same boundary as [EnhanceOptions.TTL]. Negative is an
	// [ErrConfig].
	TTL time.Duration
	// Clock replaces time.Now, so tests can move time without sleeping.
	Clock func() time.Time
}

// NewMemory returns an empty in-memory store. Options are usually given
// as one MemoryOptions; several are merged, the later ones' non-zero fields
// winning. A negative TTL panics with an error wrapping [ErrConfig].
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
		codec: memoryCodecFor[T](),
		locks: newKeyLocks[string](),
		seed:  maphash.MakeSeed(),
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

// memoryCodec turns values into the bytes Memory keeps: JSON (with the
// fast path for simple structs), or for Memory[[]byte] the bytes
// themselves.
type memoryCodec[T any] struct {
	raw  bool // T is []byte
	json jsonCodec[T]
}

func memoryCodecFor[T any]() memoryCodec[T] {
	if reflect.TypeFor[T]() == reflect.TypeFor[[]byte]() {
		return memoryCodec[T]{raw: true}
	}
	return memoryCodec[T]{json: jsonCodecFor[T]()}
}

// checkType reports a session type Memory cannot keep.
func (m *Memory[T]) checkType() error {
	if m.codec.raw {
		return nil
	}
	if err := jsonProblem(reflect.TypeFor[T]()); err != nil {
		return fmt.Errorf("memory keeps sessions as JSON: %w", err)
	}
	return nil
}

func (m *Memory[T]) encode(key string, v *T) ([]byte, error) {
	if m.codec.raw {
		return bytes.Clone(any(*v).([]byte)), nil
	}
	data, err := m.codec.json.marshal(v)
	if err != nil {
		return nil, fmt.Errorf("session: memory: encode %q: %w", key, err)
	}
	return data, nil
}

// decode fills *into, which holds the zero value, from data.
func (m *Memory[T]) decode(key string, data []byte, into *T) error {
	if m.codec.raw {
		*into = any(bytes.Clone(data)).(T)
		return nil
	}
	if err := m.codec.json.unmarshal(data, into); err != nil {
		var zero T
		*into = zero
		return fmt.Errorf("%w: key %q: %w", ErrCorrupt, key, err)
	}
	return nil
}

func (m *Memory[T]) shard(key string) *memoryShard {
	return &m.shards[maphash.String(m.seed, key)%memoryShards]
}

// get returns the live bytes stored under key.
func (m *Memory[T]) get(key string) ([]byte, bool) {
	s := m.shard(key)
	s.mu.RLock()
	item, ok := s.items[key]
	s.mu.RUnlock()
	if !ok || m.expired(item, m.clock()) {
		return nil, false
	}
	return item.data, true
}

// Read returns the session stored under key, decoded afresh.
func (m *Memory[T]) Read(ctx context.Context, key string) (T, bool, error) {
	var v T
	_, found, err := m.readRaw(ctx, key, &v)
	return v, found, err
}

// readRaw decodes the session into *into and returns the bytes it was
// decoded from, which the middleware compares with the new encoding.
func (m *Memory[T]) readRaw(ctx context.Context, key string, into *T) ([]byte, bool, error) {
	var zero T
	*into = zero
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	data, ok := m.get(key)
	if !ok {
		return nil, false, nil
	}
	if err := m.decode(key, data, into); err != nil {
		return nil, false, err
	}
	return data, true, nil
}

// Write stores the encoding of value under key.
func (m *Memory[T]) Write(ctx context.Context, key string, value T) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	data, err := m.encode(key, &value)
	if err != nil {
		return err
	}
	return m.writeRaw(ctx, key, data)
}

// writeRaw stores data, which the caller does not change afterwards.
func (m *Memory[T]) writeRaw(ctx context.Context, key string, data []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	item := memoryItem{data: data}
	now := m.clock()
	if m.ttl > 0 {
		item.expires = now + int64(m.ttl)
	}
	s := m.shard(key)
	s.mu.Lock()
	if s.items == nil {
		s.items = make(map[string]memoryItem)
	}
	s.items[key] = item
	s.peak = max(s.peak, len(s.items))
	s.mu.Unlock()
	if m.ttl > 0 {
		m.sweepNext(now)
	}
	return nil
}

// sweepNext sweeps the next shard in turn if its sweep is due: each write
// does at most one shard's housekeeping, and writes anywhere sweep every
// shard in turn.
func (m *Memory[T]) sweepNext(now int64) {
	s := &m.shards[m.cursor.Add(1)%memoryShards]
	s.mu.Lock()
	if now >= s.nextSweep {
		m.sweepLocked(s, now)
	}
	s.mu.Unlock()
}

// Delete removes key; a missing key is not an error.
func (m *Memory[T]) Delete(ctx context.Context, key string) error {
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

// Touch restarts the expiry of a live session, as a write would. Without
// a TTL, or for a missing key, it does nothing.
func (m *Memory[T]) Touch(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil || m.ttl == 0 {
		return err
	}
	now := m.clock()
	s := m.shard(key)
	s.mu.Lock()
	if item, ok := s.items[key]; ok && !m.expired(item, now) {
		item.expires = now + int64(m.ttl)
		s.items[key] = item
	}
	s.mu.Unlock()
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
	_, ok := m.get(key)
	return ok, nil
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

// Values yields every live session, in no particular order.
func (m *Memory[T]) Values(ctx context.Context) iter.Seq2[T, error] {
	return values(m.Entries(ctx))
}

// Entries yields every live session, in no particular order. It works on
// a snapshot of each shard's keys, so the loop body may read and write the
// store.
func (m *Memory[T]) Entries(ctx context.Context) iter.Seq2[Entry[T], error] {
	return func(yield func(Entry[T], error) bool) {
		if err := ctx.Err(); err != nil {
			yield(Entry[T]{}, err) // even when there is nothing to list
			return
		}
		for i := range m.shards {
			s := &m.shards[i]
			s.mu.RLock()
			keys := make([]string, 0, len(s.items))
			for k := range s.items {
				keys = append(keys, k)
			}
			s.mu.RUnlock()
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
}

func (m *Memory[T]) forwardOf(ctx context.Context, key string) (string, bool, error) {
	if err := ctx.Err(); err != nil {
		return "", false, err
	}
	m.fwdMu.Lock()
	f, ok := m.forwards[key]
	m.fwdMu.Unlock()
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
	m.fwdMu.Lock()
	defer m.fwdMu.Unlock()
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

// clock returns the time in Unix ns, or 0 without a TTL: the clock is then
// never needed, and the hot path skips it.
func (m *Memory[T]) clock() int64 {
	if m.ttl == 0 {
		return 0
	}
	return m.now().UnixNano()
}

func (m *Memory[T]) expired(item memoryItem, now int64) bool {
	return item.expires != 0 && now >= item.expires
}

// sweepLocked drops the shard's expired items. Each shard is swept at most
// once per TTL/2 of clock time, so the cost per write stays constant on
// average, a write waits for at most one shard's sweep, and once writes
// have gone round every shard no expired item is left that expired more
// than TTL/2 ago.
func (m *Memory[T]) sweepLocked(s *memoryShard, now int64) {
	for k, item := range s.items {
		if m.expired(item, now) {
			delete(s.items, k)
		}
	}
	s.nextSweep = now + int64(m.ttl/2)
	s.shrinkLocked()
}

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
