package runner

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// webhookDispatcher is the dispatcher of the Run receiving from w.
func webhookDispatcher(w *Webhook) *dispatcher {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.feed.d
}

// noAnswer fails the test if codes already holds an answer.
func noAnswer(t *testing.T, codes <-chan int, what string) {
	t.Helper()
	select {
	case c := <-codes:
		t.Fatalf("%s answered %d too early", what, c)
	default:
	}
}

// The same update posted 100 times to the webhook, one request after
// another, is handled once, and every request is answered 200.
func TestWebhookRedeliveredSequentially(t *testing.T) {
	var handled atomic.Int32
	w := &Webhook{Secret: secret}
	stop := runWebhook(t, w, func(*session.Context[struct{}]) error { handled.Add(1); return nil }, Options{})
	d := webhookDispatcher(w)
	body := updateJSON(t, chatMsg(7, 1, 0))
	ok := 0
	for range 100 {
		if serve(w, post(context.Background(), secret, body)) == http.StatusOK {
			ok++
		}
	}
	assert.Equal(t, 99, d.stats().duplicates, "the redeliveries counted")
	require.NoError(t, stop())
	t.Logf("handled %d times, answered 200 %d times", handled.Load(), ok)
	assert.Equal(t, int32(1), handled.Load(), "handled once")
	assert.Equal(t, 100, ok, "every request answered 200")
}

// The same update posted 100 times at once is handled once, and every
// request is answered 200.
func TestWebhookRedeliveredConcurrently(t *testing.T) {
	var handled atomic.Int32
	w := &Webhook{Secret: secret}
	stop := runWebhook(t, w, func(*session.Context[struct{}]) error { handled.Add(1); return nil }, Options{})
	d := webhookDispatcher(w)
	body := updateJSON(t, chatMsg(7, 1, 0))
	var ok atomic.Int32
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if serve(w, post(context.Background(), secret, body)) == http.StatusOK {
				ok.Add(1)
			}
		}()
	}
	wg.Wait()
	assert.Equal(t, 99, d.stats().duplicates, "the redeliveries counted")
	require.NoError(t, stop())
	t.Logf("handled %d times, answered 200 %d times", handled.Load(), ok.Load())
	assert.Equal(t, int32(1), handled.Load(), "handled once")
	assert.Equal(t, int32(100), ok.Load(), "every request answered 200")
}

// A redelivery that arrives while the first copy is running, or still
// queued, waits for its outcome and is answered 200 after it, without
// being handled a second time.
func TestWebhookRedeliveryWaitsForTheFirst(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan int, 2)
	var mu sync.Mutex
	handled := map[int]int{}
	h := func(c *session.Context[struct{}]) error {
		entered <- c.Update.UpdateID
		<-release
		mu.Lock()
		handled[c.Update.UpdateID]++
		mu.Unlock()
		return nil
	}
	w := &Webhook{Secret: secret}
	stop := runWebhook(t, w, h, Options{})
	d := webhookDispatcher(w)
	bg := context.Background()
	firsts, dups := make(chan int, 2), make(chan int, 2)
	go func() { firsts <- serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))) }()
	assert.Equal(t, 1, receive(t, entered, "the first handler"))
	go func() { firsts <- serve(w, post(bg, secret, updateJSON(t, chatMsg(2, 1, 1)))) }()
	eventually(t, func() bool { return d.stats().queued == 1 }, "update 2 queued behind 1")

	go func() { dups <- serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))) }()
	go func() { dups <- serve(w, post(bg, secret, updateJSON(t, chatMsg(2, 1, 1)))) }()
	eventually(t, func() bool { return d.stats().duplicates == 2 }, "both redeliveries taken")
	assert.Equal(t, 1, d.stats().queued, "the redeliveries take no room")
	noAnswer(t, dups, "a redelivery of a running or queued update")
	noAnswer(t, firsts, "an update not yet handled")

	close(release)
	for range 2 {
		assert.Equal(t, http.StatusOK, receive(t, firsts, "a first answer"))
		assert.Equal(t, http.StatusOK, receive(t, dups, "a redelivery's answer"))
	}
	assert.Equal(t, 2, receive(t, entered, "the second handler"))
	require.NoError(t, stop())
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[int]int{1: 1, 2: 1}, handled, "each handled once")
}

// An update given up at the drain deadline (its handler left behind, or
// still queued) is answered 503, and so are its redeliveries waiting for
// it; its id leaves the window, and the update posted again to the next
// Run is handled.
func TestWebhookRedeliveryOfAnUpdateGivenUp(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	entered := make(chan struct{}, 1)
	stuck := func(*session.Context[struct{}]) error { entered <- struct{}{}; <-release; return nil } // ignores its context
	w := &Webhook{Secret: secret}
	errs := newErrorLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), stuck, Options{Source: w, DrainTimeout: 50 * time.Millisecond, OnError: errs.onError})
	eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.feed != nil }, "the webhook receiving")
	d := webhookDispatcher(w)
	bg := context.Background()
	codes := make(chan int, 4)
	go func() { codes <- serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))) }()
	receive(t, entered, "the first handler")
	go func() { codes <- serve(w, post(bg, secret, updateJSON(t, chatMsg(2, 1, 1)))) }()
	eventually(t, func() bool { return d.stats().queued == 1 }, "update 2 queued behind 1")
	go func() { codes <- serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))) }()
	go func() { codes <- serve(w, post(bg, secret, updateJSON(t, chatMsg(2, 1, 1)))) }()
	eventually(t, func() bool { return d.stats().duplicates == 2 }, "both redeliveries taken")

	cancel()
	require.ErrorIs(t, result(t, done), context.DeadlineExceeded)
	for range 4 {
		assert.Equal(t, http.StatusServiceUnavailable, receive(t, codes, "an answer"), "not handled: sent again")
	}
	got := errs.snapshot()
	assert.ErrorIs(t, got[1], ErrStopped, "left behind")
	assert.ErrorIs(t, got[2], ErrStopped, "still queued")
	assert.Len(t, got, 2, "no error for a redelivery")
	st := d.stats()
	assert.Zero(t, st.pending, "the ids given up left the window")
	assert.Zero(t, st.recent, "nothing was handled")

	var handled atomic.Int32
	stop := runWebhook(t, w, func(*session.Context[struct{}]) error { handled.Add(1); return nil }, Options{})
	assert.Equal(t, http.StatusOK, serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))))
	assert.Equal(t, http.StatusOK, serve(w, post(bg, secret, updateJSON(t, chatMsg(2, 1, 1)))))
	require.NoError(t, stop())
	assert.Equal(t, int32(2), handled.Load(), "both handled at the next Run")
}

// However many updates pass, the window holds at most RecentUpdates
// handled ids (the oldest evicted) and gives its memory back: after
// 50,000 distinct updates, a redelivery of the last one is skipped and
// one of the first, evicted long ago, is handled again.
func TestRecentUpdatesBounded(t *testing.T) {
	const total, window = 50_000, 1_000
	var handled atomic.Int32
	h := func(*session.Context[struct{}]) error { handled.Add(1); return nil }
	var src *sliceSource
	src = genSource(func(i int) (tgbotapi.Update, bool) {
		switch {
		case i < total:
			return chatMsg(i+1, 1, i), true // one chat: handled in id order
		case i == total:
			// Once all are handled, so that which are evicted is known.
			eventually(t, func() bool { _, done := src.counts(); return done == total }, "all handled")
			return chatMsg(total, 1, total-1), true // in the window
		case i == total+1:
			return chatMsg(1, 1, 0), true // evicted
		}
		return tgbotapi.Update{}, false
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src, RecentUpdates: window})
	d := receive(t, src.dispatchers, "the dispatcher")
	receive(t, src.finished, "all taken")
	eventually(t, func() bool { _, n := src.counts(); return n == total+2 }, "all done")
	st := d.stats()
	cancel()
	require.NoError(t, result(t, done))

	assert.Equal(t, int32(total+1), handled.Load(), "the evicted one handled again, the recent one not")
	assert.Equal(t, 1, st.duplicates)
	assert.Equal(t, window, st.recent, "at most RecentUpdates handled ids")
	assert.Zero(t, st.pending)
	assert.LessOrEqual(t, st.recentCap, 4*window, "the eviction queue's memory stays bounded")
}

// The window remembers only positive ids, forgets an id whose update was
// not handled, and evicts the oldest handled id beyond its size.
func TestRecentIDs(t *testing.T) {
	r := newRecentIDs(2)
	assert.Nil(t, r.start(0), "not a Telegram id")
	assert.Nil(t, r.finish(0, nil, true))
	handled, dups := r.lookup(0)
	assert.False(t, handled)
	assert.Nil(t, dups)

	first := r.start(1)
	require.NotNil(t, first)
	handled, dups = r.lookup(1)
	assert.False(t, handled)
	assert.Same(t, first, dups, "queued or running")
	var got []bool
	first.dones = append(first.dones, func(ok bool) { got = append(got, ok) })
	callAll(r.finish(1, first, false), false)
	assert.Equal(t, []bool{false}, got, "the redelivery gets the outcome")
	handled, dups = r.lookup(1)
	assert.False(t, handled, "given up: forgotten")
	assert.Nil(t, dups)

	for id := 1; id <= 3; id++ {
		r.finish(id, r.start(id), true)
	}
	for id, want := range map[int]bool{1: false, 2: true, 3: true} {
		handled, _ := r.lookup(id)
		assert.Equal(t, want, handled, "id %d", id)
	}
	assert.Len(t, r.handled, 2)
}
