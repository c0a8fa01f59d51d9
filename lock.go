package session

import (
	"context"
	"fmt"
	"hash/maphash"
	"reflect"
	"slices"
	"sync"
)

// keyLocks serialises holders of one key: the lock table behind stores
// that have no [Locker] of their own, [Memory] among them.
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

// tables holds the lock table of each store without a Locker, by the
// store's identity, so any number of sessions over one store exclude each
// other. [Memory] keeps its own table instead, so a Memory that is dropped
// leaves nothing behind here.
var tables sync.Map // storeIdentity -> *keyLocks[string]

// tableFor returns the lock table of root, a store without a Locker at the
// bottom of its Unwrap chain, whose identity is id.
func tableFor(root Store, id any) *keyLocks[string] {
	if m, ok := root.(*Memory); ok {
		return m.locks
	}
	if t, ok := tables.Load(id); ok {
		return t.(*keyLocks[string])
	}
	t, _ := tables.LoadOrStore(id, newKeyLocks[string]())
	return t.(*keyLocks[string])
}

// root follows Unwrap to the store at the bottom of the chain.
func root(store Store) Store {
	for range maxUnwrap {
		w, ok := store.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		next := w.Unwrap()
		if next == nil || isNil(next) {
			break
		}
		store = next
	}
	return store
}

// localLease is the [Lease] of a store without a [Locker]: its key held in
// a lock table, the value read under it, and the commit made with the
// store's own methods. With a mark and an [Expirer], the key's record of
// applied updates is read with the value and written after the change.
type localLease struct {
	store     Store
	expirer   Expirer // nil: the store has no native expiry, and no record
	key       string
	mark      bool            // the update has a mark, and the store keeps records
	entry     [entrySize]byte // the mark, as the record keeps it
	recordKey string
	value     []byte
	found     bool
	record    []byte // the record read with the value
	applied   bool
	held      *keyLock[string]
}

// lock takes key in table and reads it (and its record) from store, into l.
func (l *localLease) lock(ctx context.Context, table *keyLocks[string], store Store, expirer Expirer, key string, u updateRef) error {
	held, err := table.lock(ctx, key, key)
	if err != nil {
		return err
	}
	*l = localLease{store: store, expirer: expirer, key: key, held: held}
	if u.marked() && expirer != nil {
		l.entry, l.mark, l.recordKey = u.entry(), true, appliedKey(key)
	}
	ok := false
	defer func() { // a store that panics in Read must not keep the key locked
		if !ok {
			l.Release()
		}
	}()
	if l.value, l.found, err = store.Read(ctx, key); err != nil {
		return err
	}
	if l.mark {
		if l.record, _, err = store.Read(ctx, l.recordKey); err != nil {
			return err
		}
		l.applied = recordHas(l.record, l.entry)
	}
	ok = true
	return nil
}

func (l *localLease) Value() ([]byte, bool) { return l.value, l.found }

func (l *localLease) Applied() bool { return l.applied }

func (l *localLease) Commit(ctx context.Context, c Change) error {
	if l.held == nil {
		return fmt.Errorf("session: commit %q: the lease has ended", l.key)
	}
	defer l.Release()
	if err := l.apply(ctx, c); err != nil {
		return err
	}
	if !l.mark {
		return nil
	}
	return l.expirer.WriteTTL(ctx, l.recordKey, recordAdd(l.record, l.entry), AppliedTTL)
}

func (l *localLease) apply(ctx context.Context, c Change) error {
	switch c.Op {
	case OpWrite:
		if c.TTL > 0 && l.expirer != nil {
			return l.expirer.WriteTTL(ctx, l.key, c.Value, c.TTL)
		}
		return l.store.Write(ctx, l.key, c.Value)
	case OpTouch:
		if c.TTL > 0 && l.expirer != nil {
			return l.expirer.Touch(ctx, l.key, c.TTL)
		}
	case OpDelete:
		return l.store.Delete(ctx, l.key)
	}
	return nil
}

func (l *localLease) Release() {
	if l.held != nil {
		l.held.unlock()
		l.held = nil
	}
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

// lockRank orders lock tables for the deadlock-free acquisition of the
// keys of a multi session: by address where there is one.
func lockRank(id any) uintptr {
	if i, ok := id.(identity); ok {
		return i.p
	}
	return 0
}
