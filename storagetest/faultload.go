package storagetest

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// LockingStore is a byte store with a lock, as [StartFaultLoad] needs.
type LockingStore interface {
	session.StorageAdapter[[]byte]
	session.Locker
}

// FaultLoad is a load for testing a store under faults that a test
// injects while it runs (connections killed as a network cut does, a
// server killed and restarted): goroutines increment counters under the
// lock and record which increments succeeded and which failed. Start it
// with [StartFaultLoad]; after the faults, [FaultLoad.Stop] it and
// [FaultLoad.Check] that nothing acknowledged was lost.
type FaultLoad struct {
	store           LockingStore
	okays, failures atomic.Int64
	mu              sync.Mutex
	acked           map[string]int // increments reported done, per key
	wg              sync.WaitGroup
	stop            chan struct{}
	stopOnce        sync.Once
}

// StartFaultLoad starts goroutines that each increment their own key of s
// under s's lock (Lock, Read, Write, unlock) until [FaultLoad.Stop]. Every
// failure must surface as an error whose text starts with errPrefix (the
// store's own, "mystore: "), and a value that is not a whole number fails
// the test: nothing may be half-written.
func StartFaultLoad(t *testing.T, s LockingStore, goroutines int, errPrefix string) *FaultLoad {
	ctx := context.Background()
	l := &FaultLoad{store: s, acked: map[string]int{}, stop: make(chan struct{})}
	for g := range goroutines {
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			key := "counter-" + strconv.Itoa(g)
			for {
				select {
				case <-l.stop:
					return
				default:
				}
				err := func() error {
					unlock, err := s.Lock(ctx, key)
					if err != nil {
						return err
					}
					defer unlock()
					v, _, err := s.Read(ctx, key)
					if err != nil {
						return err
					}
					n := 0
					if v != nil {
						if n, err = strconv.Atoi(string(v)); err != nil {
							return errors.New("half-written value " + strconv.Quote(string(v)))
						}
					}
					if err := s.Write(ctx, key, []byte(strconv.Itoa(n+1))); err != nil {
						return err
					}
					l.mu.Lock()
					l.acked[key]++
					l.mu.Unlock()
					return nil
				}()
				if err != nil {
					assert.NotContains(t, err.Error(), "half-written")
					assert.True(t, strings.HasPrefix(err.Error(), errPrefix), "error %v is the store's", err)
					l.failures.Add(1)
					time.Sleep(5 * time.Millisecond) // a server that is down: do not spin
				} else {
					l.okays.Add(1)
				}
			}
		}()
	}
	return l
}

// Okays returns how many increments have succeeded so far.
func (l *FaultLoad) Okays() int64 { return l.okays.Load() }

// Failures returns how many increments have failed with an error so far.
func (l *FaultLoad) Failures() int64 { return l.failures.Load() }

// Stop stops the goroutines and waits for them.
func (l *FaultLoad) Stop() {
	l.stopOnce.Do(func() { close(l.stop) })
	l.wg.Wait()
}

// Check verifies, after [FaultLoad.Stop], that every acknowledged
// increment is stored (one whose reply was lost may or may not have
// landed), that every value is whole and that the store works.
func (l *FaultLoad) Check(t *testing.T) {
	t.Helper()
	l.mu.Lock()
	defer l.mu.Unlock()
	for key, n := range l.acked {
		v, found, err := l.store.Read(context.Background(), key)
		require.NoError(t, err, "the store works again")
		require.True(t, found)
		got, err := strconv.Atoi(string(v))
		require.NoError(t, err, "value %q is whole", v)
		assert.GreaterOrEqual(t, got, n, "%s: acknowledged increments lost", key)
	}
}
