package runner

import (
	"context"
	"errors"
	"runtime"
	"sync/atomic"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// goroutineSlack covers the goroutines of the test itself and of Run
// that are not handlers: the Run goroutine, a context.AfterFunc, the
// race detector's and the runtime's helpers.
const goroutineSlack = 10

// heapInUse returns the live heap after a full collection.
func heapInUse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// 50,000 chats whose handlers are slow: goroutines stay at or below
// MaxInFlight plus a constant, however many chats wait, and the map of
// queues is empty again once they are done.
func TestBoundsManySlowChats(t *testing.T) {
	const chats, maxInFlight = 50_000, 64
	base := runtime.NumGoroutine()
	heapBefore := heapInUse()

	release := make(chan struct{})
	var maxG, handled atomic.Int64
	h := func(c *session.Context[struct{}]) error {
		if g := int64(runtime.NumGoroutine()); g > maxG.Load() {
			maxG.Store(g) // racy max, good enough: it only grows
		}
		<-release
		handled.Add(1)
		return nil
	}
	src := genSource(func(i int) (tgbotapi.Update, bool) {
		return chatMsg(i+1, int64(i+1), 0), i < chats
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src, MaxInFlight: maxInFlight, MaxQueued: chats})
	d := receive(t, src.dispatchers, "the dispatcher")
	receive(t, src.finished, "every chat's update taken")
	eventually(t, func() bool { return d.stats().inFlight == maxInFlight }, "handler slots full")

	st := d.stats()
	g := runtime.NumGoroutine()
	heapHeld := int64(heapInUse()) - int64(heapBefore)
	assert.Equal(t, chats-maxInFlight, st.queued)
	assert.LessOrEqual(t, g, base+maxInFlight+goroutineSlack, "goroutines with %d chats waiting", chats)
	t.Logf("%d slow chats: %d goroutines (base %d, MaxInFlight %d), %d updates queued in %d key queues, heap +%.1f MiB (%.0f B per waiting update)",
		chats, g, base, maxInFlight, st.queued, st.keys, float64(heapHeld)/(1<<20), float64(heapHeld)/float64(st.queued))

	close(release)
	eventually(t, func() bool { return handled.Load() == chats }, "all handled")
	eventually(t, func() bool { s := d.stats(); return s.inFlight == 0 && s.keys == 0 }, "workers gone, queue map empty")
	assert.LessOrEqual(t, int(maxG.Load()), base+maxInFlight+goroutineSlack, "goroutines while handling")
	cancel()
	require.NoError(t, result(t, done))
	t.Logf("most goroutines seen by a handler: %d", maxG.Load())
}

// 200,000 updates for one blocked chat: the runner takes the running one
// and QueueLimit more, then the source waits (backpressure), so memory
// does not grow with the flood. On stop, the queued ones are handled and
// the rest stays with the source.
func TestBoundsOneBlockedChat(t *testing.T) {
	const flood, queueLimit = 200_000, DefaultQueueLimit
	heapBefore := heapInUse()

	release := make(chan struct{})
	var handled atomic.Int64
	h := func(c *session.Context[struct{}]) error {
		<-release
		handled.Add(1)
		return nil
	}
	src := genSource(func(i int) (tgbotapi.Update, bool) {
		return chatMsg(i+1, 1, i), i < flood
	})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src})
	d := receive(t, src.dispatchers, "the dispatcher")
	eventually(t, func() bool { return d.stats().blocked == 1 }, "the source waits")

	st := d.stats()
	taken, _ := src.counts()
	heapHeld := int64(heapInUse()) - int64(heapBefore)
	assert.Equal(t, 1+queueLimit, taken, "one running, QueueLimit waiting")
	assert.Equal(t, queueLimit, st.queued)
	assert.Equal(t, 1, st.inFlight)
	assert.Less(t, heapHeld, int64(4<<20), "heap held with %d updates offered", flood)
	t.Logf("one blocked chat, %d updates offered: %d taken, %d queued, source blocked, heap +%.1f KiB",
		flood, taken, st.queued, float64(heapHeld)/(1<<10))

	cancel()
	close(release)
	require.NoError(t, result(t, done))
	_, finished := src.counts()
	assert.Equal(t, 1+queueLimit, finished, "what was taken was handled in the drain")
	assert.Equal(t, int64(1+queueLimit), handled.Load())
	// The waiting Put ends with the stop: ctx's error or ErrStopped.
	assert.True(t, errors.Is(src.refused, context.Canceled) || errors.Is(src.refused, ErrStopped), "%v", src.refused)
}

// The total bound: with MaxQueued reached across keys, the source waits
// even though each key has room.
func TestBoundsMaxQueued(t *testing.T) {
	release := make(chan struct{})
	h := func(c *session.Context[struct{}]) error { <-release; return nil }
	src := genSource(func(i int) (tgbotapi.Update, bool) {
		return chatMsg(i+1, int64(i+1), 0), i < 100
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src, MaxInFlight: 2, MaxQueued: 5})
	d := receive(t, src.dispatchers, "the dispatcher")
	eventually(t, func() bool { return d.stats().blocked == 1 }, "the source waits")
	taken, _ := src.counts()
	assert.Equal(t, 7, taken, "2 running and 5 queued")
	cancel()
	close(release)
	require.NoError(t, result(t, done))
}

func TestFIFOGivesMemoryBack(t *testing.T) {
	var f fifo[int]
	for i := range 1000 {
		f.push(i)
	}
	for i := range 1000 {
		require.Equal(t, i, f.pop())
	}
	assert.Nil(t, f.buf, "an emptied queue drops its array")
	// Interleaved use stays compact: the array never grows past twice
	// the largest length.
	for i := range 10_000 {
		f.push(i)
		f.push(i)
		f.pop()
		if f.len() > 50 {
			f.pop()
		}
	}
	assert.LessOrEqual(t, cap(f.buf), 256)
}
