package session

import (
	"context"
	"hash/maphash"
	"reflect"
	"slices"
	"sync"
)

// keyLocks serialises holders of one key: the lock table behind
// [Memory.Lock] and behind stores that have no [Locker] of their own.
// Different keys are locked in parallel, and waiting gives up when the
// caller's context ends.
//
// An uncontended lock and unlock cost one map lookup under a shard mutex;
// channels are made only for waiters, and a released lock goes straight
// to the longest waiter (FIFO), so no holder starves. Entries of idle keys
// are kept for reuse, up to maxIdle per shard, then dropped together:
// memory stays bounded however many chats the bot has seen, and a busy
// chat does not insert and delete its entry on every update.
type keyLocks[K comparable] struct {
	seed   maphash.Seed
	shards [32]lockShard[K] // sharded so that unrelated keys rarely contend
}

const maxIdle = 64 // idle entries kept per shard

type lockShard[K comparable] struct {
	mu    sync.Mutex
	locks map[K]*keyLock[K]
	idle  int // entries with held == false
}

type keyLock[K comparable] struct {
	shard   *lockShard[K]
	held    bool
	waiters []chan struct{} // FIFO; closing one hands it the lock
}

func newKeyLocks[K comparable]() *keyLocks[K] {
	return &keyLocks[K]{seed: maphash.MakeSeed()}
}

// lock waits until k is free or ctx ends. hash is the string the shard is
// chosen by (the session key).
func (l *keyLocks[K]) lock(ctx context.Context, k K, hash string) (*keyLock[K], error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	s := &l.shards[maphash.String(l.seed, hash)%uint64(len(l.shards))]
	s.mu.Lock()
	kl := s.locks[k]
	switch {
	case kl == nil:
		if s.locks == nil {
			s.locks = make(map[K]*keyLock[K])
		}
		kl = &keyLock[K]{shard: s}
		s.locks[k] = kl
	case !kl.held:
		s.idle--
	}
	if !kl.held {
		kl.held = true
		s.mu.Unlock()
		return kl, nil
	}
	ch := make(chan struct{})
	kl.waiters = append(kl.waiters, ch)
	s.mu.Unlock()

	select {
	case <-ch:
		return kl, nil
	case <-ctx.Done():
	}
	s.mu.Lock()
	select {
	case <-ch: // handed over while we gave up: pass it on
		s.mu.Unlock()
		kl.unlock()
	default:
		kl.waiters = slices.DeleteFunc(kl.waiters, func(w chan struct{}) bool { return w == ch })
		s.mu.Unlock()
	}
	return nil, ctx.Err()
}

// unlock releases the lock, handing it straight to the longest waiter if
// there is one.
func (kl *keyLock[K]) unlock() {
	s := kl.shard
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(kl.waiters) > 0 {
		close(kl.waiters[0])
		kl.waiters = kl.waiters[1:]
		return
	}
	kl.held = false
	if s.idle++; s.idle > maxIdle {
		for k, e := range s.locks {
			if !e.held {
				delete(s.locks, k)
			}
		}
		s.idle = 0
	}
}

// size reports how many keys have an entry, and how many are held; for tests.
func (l *keyLocks[K]) size() (entries, held int) {
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		entries += len(s.locks)
		for _, e := range s.locks {
			if e.held {
				held++
			}
		}
		s.mu.Unlock()
	}
	return entries, held
}

// storeKey names one key of one store in the process-wide lock table.
type storeKey struct {
	store any // storeIdentity of the store
	key   string
}

// processLocks is the lock table of every store without a Locker: keyed
// by the store and the key, so any number of middlewares over one store
// exclude each other, and its idle entries are dropped like any other.
var processLocks = newKeyLocks[storeKey]()

// tableLocker is the Locker of a store that has none: its keys in
// processLocks.
type tableLocker struct{ id any }

func (t tableLocker) Lock(ctx context.Context, key string) (func(), error) {
	return unlockOnce(processLocks.lock(ctx, storeKey{t.id, key}, key))
}

// unlockOnce gives a lock taken from a keyLocks the unlock function of a
// [Locker], which does nothing when called again.
func unlockOnce[K comparable](kl *keyLock[K], err error) (func(), error) {
	if err != nil {
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(kl.unlock) }, nil
}

// ownLocks is implemented by [Memory]: the middleware locks its keys in
// its table directly, which saves the allocation of an unlock function per
// update.
type ownLocks interface{ keyTable() *keyLocks[string] }

// lockerOf returns the Locker that guards store's keys: its own, or its
// share of the process-wide table.
func lockerOf(store any) Locker {
	if l, ok := store.(Locker); ok {
		return l
	}
	return tableLocker{storeIdentity(store)}
}

// storeIdentity returns a comparable value that is the same for every use
// of one store: its address for pointer-like stores, the value itself if
// it is comparable, and otherwise its type. The last makes every value of
// such a type share locks, which serialises more than needed but never
// lets two holders of one key in at once.
func storeIdentity(store any) any {
	v := reflect.ValueOf(store)
	switch v.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Chan, reflect.Func, reflect.UnsafePointer, reflect.Slice:
		return identity{v.Type(), v.Pointer()}
	}
	if v.IsValid() && v.Comparable() {
		return store
	}
	return reflect.TypeOf(store)
}

type identity struct {
	t reflect.Type
	p uintptr
}

// wrapper is implemented by the stores of this package that wrap another
// ([Encoded], [Enhance]): their keys are the base store's keys, and so
// are their locks.
type wrapper interface{ base() any }

// lockRoot follows wrappers to the store whose locks guard store's keys.
func lockRoot(store any) any {
	for {
		w, ok := store.(wrapper)
		if !ok {
			return store
		}
		store = w.base()
	}
}

// lockRank orders lock tables for the deadlock-free acquisition of the
// keys of a multi session: by address where there is one.
func lockRank(id any) uintptr {
	if i, ok := id.(identity); ok {
		return i.p
	}
	return 0
}
