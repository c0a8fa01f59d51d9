// Package purgeloop runs a storage adapter's periodic purge of expired
// sessions in the background (boltstore, pgstore).
package purgeloop

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Loop is a running purge loop; see [Start].
type Loop struct {
	stop     chan struct{}
	done     chan struct{}
	stopOnce sync.Once
}

// Start calls purge every interval until [Loop.Stop]. Errors of purge go
// to onError (if set), except context.Canceled: that is Stop ending a
// purge under way.
func Start(interval time.Duration, purge func(context.Context) error, onError func(error)) *Loop {
	l := &Loop{stop: make(chan struct{}), done: make(chan struct{})}
	go l.run(interval, purge, onError)
	return l
}

// Stop ends the loop, cancelling a purge under way, and waits for it to
// return. It may be called more than once, and on a nil Loop (no purge
// was started).
func (l *Loop) Stop() {
	if l == nil {
		return
	}
	l.stopOnce.Do(func() { close(l.stop) })
	<-l.done
}

func (l *Loop) run(interval time.Duration, purge func(context.Context) error, onError func(error)) {
	defer close(l.done)
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-t.C:
		}
		// Stop cancels the purge: closing the store must not wait for a
		// long purge to finish.
		ctx, cancel := context.WithCancel(context.Background())
		go func() {
			select {
			case <-l.stop:
			case <-ctx.Done():
			}
			cancel()
		}()
		if err := purge(ctx); err != nil && !errors.Is(err, context.Canceled) && onError != nil {
			onError(err)
		}
		cancel()
	}
}
