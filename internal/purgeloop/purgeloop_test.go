package purgeloop

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLoopPurgesAndReports(t *testing.T) {
	var runs atomic.Int32
	var mu sync.Mutex
	var errs []error
	boom := errors.New("boom")
	l := Start(5*time.Millisecond, func(ctx context.Context) error {
		if runs.Add(1)%2 == 0 {
			return boom
		}
		return nil
	}, func(err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	})
	require.Eventually(t, func() bool { return runs.Load() >= 4 }, 2*time.Second, time.Millisecond)
	l.Stop()
	l.Stop() // again: nothing
	n := runs.Load()
	time.Sleep(20 * time.Millisecond)
	assert.Equal(t, n, runs.Load(), "no purge after Stop")
	mu.Lock()
	defer mu.Unlock()
	require.NotEmpty(t, errs)
	for _, err := range errs {
		assert.ErrorIs(t, err, boom)
	}
}

func TestLoopStopCancelsPurge(t *testing.T) {
	started := make(chan struct{})
	var reported atomic.Int32
	l := Start(time.Millisecond, func(ctx context.Context) error {
		select {
		case started <- struct{}{}:
		default:
		}
		<-ctx.Done()
		return ctx.Err()
	}, func(error) { reported.Add(1) })
	<-started
	done := make(chan struct{})
	go func() { l.Stop(); close(done) }()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Stop waited for the purge to finish by itself")
	}
	assert.Zero(t, reported.Load(), "the cancel Stop caused is not an error")
}

func TestNilLoopStop(t *testing.T) {
	var l *Loop
	l.Stop()
}
