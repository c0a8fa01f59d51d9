package locallock

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLockMutualExclusion(t *testing.T) {
	var tab Table
	var inside, maxInside, total atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 16; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := 0; j < 50; j++ {
				unlock, err := tab.Lock(context.Background(), "k")
				if !assert.NoError(t, err) {
					return
				}
				n := inside.Add(1)
				for {
					m := maxInside.Load()
					if n <= m || maxInside.CompareAndSwap(m, n) {
						break
					}
				}
				total.Add(1)
				inside.Add(-1)
				unlock()
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, int32(1), maxInside.Load(), "two holders of one key at once")
	assert.Equal(t, int32(16*50), total.Load())
	assert.Zero(t, tab.Len(), "entries must go when nobody holds or waits")
}

func TestLockKeysIndependent(t *testing.T) {
	var tab Table
	ctx := context.Background()
	ua, err := tab.Lock(ctx, "a")
	require.NoError(t, err)
	ub, err := tab.Lock(ctx, "b") // must not wait for "a"
	require.NoError(t, err)
	assert.Equal(t, 2, tab.Len())
	ua()
	ub()
	assert.Zero(t, tab.Len())
}

func TestLockContextCancel(t *testing.T) {
	var tab Table
	unlock, err := tab.Lock(context.Background(), "k")
	require.NoError(t, err)

	// A waiter gives up when its context ends, and leaves no reference.
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	u2, err := tab.Lock(ctx, "k")
	assert.Nil(t, u2)
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 1, tab.Len())

	// An already ended context fails at once, even on a free key.
	done, cancel2 := context.WithCancel(context.Background())
	cancel2()
	_, err = tab.Lock(done, "free")
	assert.ErrorIs(t, err, context.Canceled)
	assert.Equal(t, 1, tab.Len(), "a failed Lock must not leave an entry")

	// A waiter blocked on the key is woken by a cancel.
	ctx3, cancel3 := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := tab.Lock(ctx3, "k")
		errc <- err
	}()
	time.Sleep(10 * time.Millisecond)
	cancel3()
	select {
	case err := <-errc:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("waiter not woken by cancel")
	}

	unlock()
	assert.Zero(t, tab.Len(), "entries removed at zero refs")

	// The key is free again.
	u3, err := tab.Lock(context.Background(), "k")
	require.NoError(t, err)
	u3()
	assert.Zero(t, tab.Len())
}

func TestLockHandsOverToWaiter(t *testing.T) {
	var tab Table
	unlock, err := tab.Lock(context.Background(), "k")
	require.NoError(t, err)
	got := make(chan func(), 1)
	go func() {
		u, err := tab.Lock(context.Background(), "k")
		assert.NoError(t, err)
		got <- u
	}()
	select {
	case <-got:
		t.Fatal("second holder got the lock while the first held it")
	case <-time.After(20 * time.Millisecond):
	}
	unlock()
	select {
	case u := <-got:
		assert.Equal(t, 1, tab.Len())
		u()
	case <-time.After(5 * time.Second):
		t.Fatal("waiter never got the lock")
	}
	assert.Zero(t, tab.Len())
}
