package session

import (
	"context"
	"hash/maphash"
	"slices"
	"sync"
)

// keyLocks serialises updates per session key within one process: two
// updates with the same key never run their handlers at the same time,
// different keys run in parallel, and waiting gives up when the update's
// context ends.
//
// An uncontended lock and unlock cost one map lookup under a shard mutex;
// channels are made only for waiters. Entries of idle keys are kept for
// reuse, up to maxIdle per shard, then dropped together: memory stays
// bounded however many chats the bot has seen, and a busy chat does not
// insert and delete its entry on every update.
type keyLocks struct {
	seed   maphash.Seed
	shards [32]lockShard // sharded so that unrelated keys rarely contend
}

const maxIdle = 64 // idle entries kept per shard

type lockShard struct {
	mu    sync.Mutex
	locks map[string]*keyLock
	idle  int // entries with held == false
}

type keyLock struct {
	shard   *lockShard
	held    bool
	waiters []chan struct{} // FIFO; closing one hands it the lock
}

func newKeyLocks() *keyLocks {
	l := &keyLocks{seed: maphash.MakeSeed()}
	for i := range l.shards {
		l.shards[i].locks = make(map[string]*keyLock)
	}
	return l
}

// lock waits until key is free or ctx ends.
func (l *keyLocks) lock(ctx context.Context, key string) (*keyLock, error) {
	s := &l.shards[maphash.String(l.seed, key)%uint64(len(l.shards))]
	s.mu.Lock()
	kl := s.locks[key]
	switch {
	case kl == nil:
		kl = &keyLock{shard: s}
		s.locks[key] = kl
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
		l.unlock(kl)
	default:
		kl.waiters = slices.DeleteFunc(kl.waiters, func(w chan struct{}) bool { return w == ch })
		s.mu.Unlock()
	}
	return nil, ctx.Err()
}

// unlock releases a lock returned by lock, handing it straight to the
// longest waiter if there is one.
func (l *keyLocks) unlock(kl *keyLock) {
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
func (l *keyLocks) size() (entries, held int) {
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
