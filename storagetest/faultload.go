package storagetest

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// FaultLoad is a load for testing a store under faults that a test
// injects while it runs (connections killed as a network cut does, a
// server killed and restarted): goroutines send updates through the
// middleware, each incrementing its own chat's counter under the store's
// lock, and record which updates succeeded and which failed. Start it
// with [StartFaultLoad]; after the faults, [FaultLoad.Stop] it and
// [FaultLoad.Check] that nothing acknowledged was lost.
type FaultLoad struct {
	store           session.Store
	sess            *session.Session[Counter]
	okays, failures atomic.Int64
	mu              sync.Mutex
	acked           map[int64]int // updates whose handler chain returned nil, per chat
	wg              sync.WaitGroup
	stop            chan struct{}
	stopOnce        sync.Once
}

// StartFaultLoad starts goroutines that each send updates for a chat of
// their own through the middleware of a [session.New] Counter session
// over s, which must have a [session.Locker], until [FaultLoad.Stop].
// Every failed update must return an error that carries the store's own
// text errPrefix ("mystore: ") somewhere in its chain of messages, so
// that no failure goes unexplained, and none may wrap
// [session.ErrCorrupt]: nothing may be half-written.
func StartFaultLoad(t *testing.T, s session.Store, goroutines int, errPrefix string) *FaultLoad {
	t.Helper()
	require.False(t, isNil(s), "StartFaultLoad: nil store")
	_, ok := session.Unwrap[session.Locker](s)
	require.True(t, ok, "StartFaultLoad needs a store with a session.Locker")
	sess, err := session.New(session.Options[Counter]{Storage: s})
	require.NoError(t, err)
	h := counterMiddleware(sess)
	l := &FaultLoad{store: s, sess: sess, acked: map[int64]int{}, stop: make(chan struct{})}
	for g := range goroutines {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			chat := faultChat(g)
			for i := 0; ; i++ {
				select {
				case <-l.stop:
					return
				default:
				}
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				err := h(session.NewContext[Counter](ctx, nil, chatUpdate(i, chat)))
				cancel()
				if err != nil {
					assert.False(t, errors.Is(err, session.ErrCorrupt), "a half-written value: %v", err)
					assert.True(t, strings.Contains(err.Error(), errPrefix), "error %q is the store's (%q)", err, errPrefix)
					l.failures.Add(1)
					time.Sleep(5 * time.Millisecond) // a server that is down: do not spin
					continue
				}
				l.mu.Lock()
				l.acked[chat]++
				l.mu.Unlock()
				l.okays.Add(1)
			}
		}()
	}
	return l
}

// faultChat is the chat of goroutine g of a fault load.
func faultChat(g int) int64 { return 1000 + int64(g) }

// Okays returns how many updates have succeeded so far.
func (l *FaultLoad) Okays() int64 { return l.okays.Load() }

// Failures returns how many updates have failed with an error so far.
func (l *FaultLoad) Failures() int64 { return l.failures.Load() }

// Stop stops the goroutines and waits for them.
func (l *FaultLoad) Stop() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Check verifies, after [FaultLoad.Stop], that the store works, that
// every chat's session decodes, and that every acknowledged increment is
// stored (an update whose reply was lost may or may not have landed, so
// a counter may be higher than the acknowledged count, never lower).
func (l *FaultLoad) Check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for chat, n := range l.acked {
		got, found := readCounter(t, l.sess, l.store, chat)
		require.True(t, found, "chat %d: %d acknowledged updates, no session stored", chat, n)
		assert.GreaterOrEqual(t, got, n, "chat %d: acknowledged increments lost", chat)
	}
}
