// Package locallock is the in-process lock table shared by the storage
// adapters (redisstore, pgstore) in front of their cross-process leases.
package locallock

import (
	"context"
	"sync"
)

// Table excludes the holders of one key within this process before they go
// to the shared store (Redis, PostgreSQL): waiters in one process then wait
// on a channel instead of polling the server, and at most one per key polls
// for the lease. Entries live only while a key is held or waited for, so the
// table does not grow with the number of chats. The zero value is ready to
// use.
type Table struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	ch   chan struct{} // holding the lock = a token in the buffer
	refs int           // holders and waiters; the entry goes at zero
}

// Lock takes key's lock, or returns ctx's error if ctx ends first. The
// returned function releases it and must be called exactly once.
func (l *Table) Lock(ctx context.Context, key string) (func(), error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*entry)
	}
	e := l.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
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

// Len reports how many keys have an entry (held or waited for).
func (l *Table) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}

func (l *Table) drop(key string, e *entry) {
	l.mu.Lock()
	e.refs--
	if e.refs == 0 {
		delete(l.m, key)
	}
	l.mu.Unlock()
}
