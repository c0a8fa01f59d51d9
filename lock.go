package session

import (
	"context"
	"hash/maphash"
	"sync"
)

// keyLocks serialises updates per session key within one process: two
// updates with the same key never run their handlers at the same time,
// different keys run in parallel. A key's lock exists only while someone
// holds or waits for it, so the registry does not grow with the number of
// chats the bot has ever seen.
type keyLocks struct {
	seed   maphash.Seed
	shards [32]lockShard // sharded so that unrelated keys rarely contend
}

type lockShard struct {
	mu    sync.Mutex
	locks map[string]*keyLock
}

// keyLock is held by whoever put the token into ch. A channel rather than
// a sync.Mutex so that waiting can give up when the update's context ends.
type keyLock struct {
	ch   chan struct{}
	refs int // holders plus waiters; guarded by the shard's mutex
}

var keyLockPool = sync.Pool{New: func() any { return &keyLock{ch: make(chan struct{}, 1)} }}

func newKeyLocks() *keyLocks {
	l := &keyLocks{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].locks = make(map[string]*keyLock)
	}
	return l
}

func (l *keyLocks) shard(key string) *lockShard {
	return &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
}

// lock waits until key is free or ctx ends.
func (l *keyLocks) lock(ctx context.Context, key string) (*keyLock, error) {
	s := l.shard(key)
	s.mu.Lock()
	kl := s.locks[key]
	if kl == nil {
		kl = keyLockPool.Get().(*keyLock)
		s.locks[key] = kl
	}
	kl.refs++
	s.mu.Unlock()

	select {
	case kl.ch <- struct{}{}: // uncontended: no need to look at ctx
		return kl, nil
	default:
	}
	select {
	case kl.ch <- struct{}{}:
		return kl, nil
	case <-ctx.Done():
		l.release(s, key, kl)
		return nil, ctx.Err()
	}
}

// unlock releases a lock returned by lock.
func (l *keyLocks) unlock(key string, kl *keyLock) {
	<-kl.ch
	l.release(l.shard(key), key, kl)
}

func (l *keyLocks) release(s *lockShard, key string, kl *keyLock) {
	s.mu.Lock()
	kl.refs--
	if kl.refs == 0 {
		delete(s.locks, key)
		keyLockPool.Put(kl)
	}
	s.mu.Unlock()
}

// size reports how many keys have a lock; for tests.
func (l *keyLocks) size() int {
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		n += len(s.locks)
		s.mu.Unlock()
	}
	return n
}
