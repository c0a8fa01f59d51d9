package pgstore

import (
	"context"
	"sync"
)

// localLocks excludes the holders of one key within this process before
// they go to PostgreSQL: waiters in one process then wait on a channel instead
// of polling the server, and at most one per key polls for the lease.
// Entries live only while a key is held or waited for, so the table does
// not grow with the number of chats.
type localLocks struct {
	mu sync.Mutex
	m  map[string]*localLock
}

type localLock struct {
	ch   chan struct{} // holding the lock = a token in the buffer
	refs int           // holders and waiters; the entry goes at zero
}

// lock takes key's lock, or returns ctx's error if ctx ends first. The
// returned function releases it and must be called exactly once.
func (l *localLocks) lock(ctx context.Context, key string) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*localLock)
	}
	e := l.m[key]
	if e == nil {
		e = &localLock{ch: make(chan struct{}, 1)}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()

	select {
	case e.ch <- struct{}{}:
		return func() {
			<-e.ch
			l.drop(key, e)
		}, nil
	case <-ctx.Done():
		l.drop(key, e)
		return nil, ctx.Err()
	}
}

func (l *localLocks) drop(key string, e *localLock) {
	l.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(l.m, key)
	}
	l.mu.Unlock()
}
