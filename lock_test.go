package session

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestKeyLocksIdleStateIsBounded(t *testing.T) {
	l := newKeyLocks[string]()
	ctx := context.Background()
	for i := range 10_000 {
		unlock, err := l.lock(ctx, fmt.Sprint("chat-", i), fmt.Sprint("chat-", i))
		require.NoError(t, err)
		unlock.unlock()
	}
	entries, held := l.size()
	assert.Zero(t, held)
	assert.LessOrEqual(t, entries, len(l.shards)*(maxIdle+1), "idle entries do not grow with the number of keys")
}

func TestKeyLocksMutualExclusionWithCancellation(t *testing.T) {
	l := newKeyLocks[string]()
	var inside [3]atomic.Int32
	var acquired, gaveUp atomic.Int64
	var wg sync.WaitGroup
	for g := range 40 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				k := (g + i) % len(inside)
				// Some waiters give up at random moments, racing the handover.
				ctx, cancel := context.WithTimeout(context.Background(), time.Duration(rand.IntN(200))*time.Microsecond)
				unlock, err := l.lock(ctx, fmt.Sprint(k), fmt.Sprint(k))
				if err != nil {
					cancel()
					assert.ErrorIs(t, err, context.DeadlineExceeded)
					gaveUp.Add(1)
					continue
				}
				if n := inside[k].Add(1); n != 1 {
					t.Errorf("key %d held %d times at once", k, n)
				}
				time.Sleep(time.Duration(rand.IntN(20)) * time.Microsecond)
				inside[k].Add(-1)
				unlock.unlock()
				cancel()
				acquired.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int64(40*200), acquired.Load()+gaveUp.Load())
	assert.Positive(t, acquired.Load())
	_, held := l.size()
	assert.Zero(t, held, "no lock leaked by a cancelled waiter")
}

func TestKeyLocksHandOverInArrivalOrder(t *testing.T) {
	l := newKeyLocks[string]()
	ctx := context.Background()
	first, err := l.lock(ctx, "k", "k")
	require.NoError(t, err)
	var order []int
	var mu sync.Mutex
	done := make(chan struct{})
	for i := range 5 {
		go func() {
			unlock, err := l.lock(ctx, "k", "k")
			assert.NoError(t, err)
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			unlock.unlock()
			done <- struct{}{}
		}()
		// Wait until goroutine i is queued before starting the next.
		require.True(t, settles(func() bool {
			return l.waiting("k") == i+1
		}))
	}
	first.unlock()
	for range 5 {
		<-done
	}
	assert.Equal(t, []int{0, 1, 2, 3, 4}, order)
}

// waiting reports how many are waiting for key k.
func (l *keyLocks[K]) waiting(k K) int {
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		kl := s.locks[k]
		s.mu.Unlock()
		if kl != nil {
			s.mu.Lock()
			defer s.mu.Unlock()
			return len(kl.waiters)
		}
	}
	return 0
}
