package runner

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// handledLog counts, per update id, how many times a handler finished.
type handledLog struct {
	mu sync.Mutex
	n  map[int]int
}

func newHandledLog() *handledLog { return &handledLog{n: map[int]int{}} }

func (l *handledLog) add(id int) {
	l.mu.Lock()
	l.n[id]++
	l.mu.Unlock()
}

func (l *handledLog) count(id int) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.n[id]
}

func (l *handledLog) total() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.n)
}

// The polling scenario: 60 updates of one chat, 100 ms each, and a
// 1 s drain, with 20 quick updates of another chat in between. At the
// deadline the waiting ones are reported but not confirmed; the next
// start, with the same Polling, handles every one of them, and skips the
// quick ones handled already although they come again.
func TestPollingDrainDeadlineConfirmsOnlyHandled(t *testing.T) {
	srv, bot := fakeBot(t)
	var ids []int
	for i := range 60 {
		ids = append(ids, srv.SendMessage(1, 1, "slow"))
		if i%3 == 0 {
			ids = append(ids, srv.SendMessage(2, 2, "quick"))
		}
	}
	n := len(ids)
	handled := newHandledLog()
	first := make(chan struct{}, 1)
	h := func(c *session.Context[struct{}]) error {
		if c.Update.Message.Chat.ID == 1 {
			time.Sleep(100 * time.Millisecond) // ignores its context, like a slow call
		}
		handled.add(c.Update.UpdateID)
		select {
		case first <- struct{}{}:
		default:
		}
		return nil
	}
	errs := newErrorLog()
	p := NewPolling(bot, PollingOptions{})
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, bot, byChat(t), h, Options{Source: p, DrainTimeout: time.Second, OnError: errs.onError})
	receive(t, first, "the first update handled")
	eventually(t, func() bool { return handled.total() >= 21 }, "the quick chat handled")
	cancel()
	require.ErrorIs(t, result(t, done), context.DeadlineExceeded)

	// Ids are consecutive, so the confirmed ones are the first n-Pending.
	confirmed := n - srv.Pending()
	lost := 0
	for _, id := range ids[:confirmed] {
		if handled.count(id) == 0 {
			lost++
		}
	}
	t.Logf("after the stop: %d handled, %d confirmed, %d confirmed but not handled", handled.total(), confirmed, lost)
	assert.Zero(t, lost, "confirmed but not handled")
	stopped := map[int]bool{} // reported with ErrStopped: waiting, or a handler left behind
	for id, err := range errs.snapshot() {
		stopped[id] = errors.Is(err, ErrStopped)
	}
	for _, id := range ids {
		if handled.count(id) == 0 {
			assert.True(t, stopped[id], "update %d not handled is reported", id)
		}
	}

	// The restart takes what was left, and skips what was handled.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	done = startRun(ctx, bot, byChat(t), h, Options{Source: p})
	eventually(t, func() bool { return handled.total() == n && srv.Pending() == 0 }, "everything handled and confirmed")
	cancel()
	require.NoError(t, result(t, done))
	for _, id := range ids {
		if stopped[id] {
			// A handler left behind at the deadline (this one ignores its
			// context) is not acknowledged; if it finished after the
			// deadline, the restart handles its update again: the
			// documented limit of a handler that outlives the drain.
			assert.Contains(t, []int{1, 2}, handled.count(id), "update %d, given up at the stop, handled once or, if left behind, twice", id)
			continue
		}
		assert.Equal(t, 1, handled.count(id), "update %d handled once", id)
	}
}

// poster posts updates to a webhook URL as Telegram does: with several
// connections at once, and, when retry is set, sending again an update
// answered with anything but 2xx.
type poster struct {
	url   string
	chats int // the updates are spread over this many chats
	retry bool

	mu  sync.Mutex
	ok  map[int]int // 2xx answers by id
	bad int         // non-2xx answers
}

func (p *poster) run(t *testing.T, ids <-chan int, conns int) *sync.WaitGroup {
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range ids {
				body := updateJSON(t, chatMsg(id, int64(1+id%p.chats), id))
				for {
					req, err := http.NewRequest(http.MethodPost, p.url, bytesReader(body))
					if !assert.NoError(t, err) {
						return
					}
					req.Header.Set(SecretHeader, secret)
					resp, err := http.DefaultClient.Do(req)
					code := 0
					if err == nil {
						code = resp.StatusCode
						resp.Body.Close()
					}
					p.mu.Lock()
					if code/100 == 2 {
						p.ok[id]++
					} else {
						p.bad++
					}
					p.mu.Unlock()
					if code/100 == 2 || !p.retry {
						break
					}
					time.Sleep(5 * time.Millisecond) // Telegram waits before a retry
				}
			}
		}()
	}
	return &wg
}

// The webhook scenario: a burst of 600 updates of 5 chats over 50
// connections, 150 ms handlers, and a stop with a short drain that cuts
// the queued ones. No update answered 2xx goes unhandled; those cut are
// reported and answered 503.
func TestWebhookBurstStopAcksOnlyHandled(t *testing.T) {
	handled := newHandledLog()
	var calls atomic.Int32
	h := func(c *session.Context[struct{}]) error {
		calls.Add(1)
		time.Sleep(150 * time.Millisecond)
		handled.add(c.Update.UpdateID)
		return nil
	}
	w := &Webhook{Secret: secret, OnError: func(error) {}}
	errs := newErrorLog()
	stop := runWebhook(t, w, h, Options{DrainTimeout: 500 * time.Millisecond, OnError: errs.onError})
	w.mu.Lock()
	d := w.feed.d
	w.mu.Unlock()
	hs := httptest.NewServer(w)
	defer hs.Close()

	const n = 600
	ids := make(chan int, n)
	for id := 1; id <= n; id++ {
		ids <- id
	}
	close(ids)
	p := &poster{url: hs.URL, chats: 5, ok: map[int]int{}}
	wg := p.run(t, ids, 50)
	// 40 queued over 5 chats: one has 8 or more, 1.2 s of handling, past
	// the drain deadline.
	eventually(t, func() bool { return d.stats().queued >= 40 }, "updates queued")
	require.ErrorIs(t, stop(), context.DeadlineExceeded)
	wg.Wait()
	// Handlers left behind finish in the background; wait for them so
	// the count is final.
	eventually(t, func() bool { return int(calls.Load()) == handled.total() }, "running handlers finished")

	p.mu.Lock()
	defer p.mu.Unlock()
	lost := 0
	for id := range p.ok {
		if handled.count(id) == 0 {
			lost++
		}
	}
	stopped := 0
	for id, err := range errs.snapshot() {
		if assert.ErrorIs(t, err, ErrStopped, "update %d", id) {
			stopped++
			assert.Zero(t, p.ok[id], "update %d reported as not handled, and answered 2xx", id)
		}
	}
	t.Logf("answered 2xx: %d, non-2xx: %d, handled: %d, cut by the drain deadline: %d, answered 2xx but not handled: %d", len(p.ok), p.bad, handled.total(), stopped, lost)
	assert.Zero(t, lost, "answered 2xx but not handled")
	assert.NotZero(t, stopped, "the deadline cut some")
}

func bytesReader(b []byte) *bytes.Reader { return bytes.NewReader(b) }

// Telegram sends again every update not answered 2xx. With a poster that
// does so, a stop in the middle of a burst and a restart, every update is
// handled exactly once and acknowledged exactly once.
func TestWebhookRetriedAcrossRestartHandledOnce(t *testing.T) {
	handled := newHandledLog()
	h := func(c *session.Context[struct{}]) error {
		time.Sleep(150 * time.Millisecond)
		handled.add(c.Update.UpdateID)
		return nil
	}
	var reports atomic.Int32
	w := &Webhook{Secret: secret, OnError: func(error) { reports.Add(1) }}
	stop := runWebhook(t, w, h, Options{})
	hs := httptest.NewServer(w)
	defer hs.Close()

	const n = 600
	ids := make(chan int, n)
	for id := 1; id <= n; id++ {
		ids <- id
	}
	close(ids)
	p := &poster{url: hs.URL, chats: 50, ok: map[int]int{}, retry: true}
	wg := p.run(t, ids, 50)
	eventually(t, func() bool { return handled.total() >= 100 }, "a part handled")
	require.NoError(t, stop())
	bad := func() int { p.mu.Lock(); defer p.mu.Unlock(); return p.bad }
	before := bad()
	eventually(t, func() bool { return bad() >= before+50 }, "requests refused while stopped")
	assert.NotZero(t, reports.Load(), "reported to Webhook.OnError")

	stop = runWebhook(t, w, h, Options{})
	wg.Wait()
	require.NoError(t, stop())

	p.mu.Lock()
	defer p.mu.Unlock()
	t.Logf("answered 2xx: %d, non-2xx: %d, handled: %d", len(p.ok), p.bad, handled.total())
	for id := 1; id <= n; id++ {
		assert.Equal(t, 1, handled.count(id), "update %d handled once", id)
		assert.Equal(t, 1, p.ok[id], "update %d acknowledged once", id)
	}
}

// Requests while no Run receives are answered 503 and reported at most
// once per interval, with the count, to Webhook.OnError, or else to the
// OnError of the last Run.
func TestWebhookReportsRequestsWhileNotRunning(t *testing.T) {
	now := time.Unix(1000, 0)
	var mu sync.Mutex
	var got []error
	w := &Webhook{Secret: secret, OnError: func(err error) { mu.Lock(); got = append(got, err); mu.Unlock() }}
	w.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	reports := func() []error { mu.Lock(); defer mu.Unlock(); return append([]error(nil), got...) }
	bg := context.Background()
	req := func() int { return serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))) }

	assert.Equal(t, http.StatusServiceUnavailable, req())
	require.Len(t, reports(), 1, "the first at once")
	assert.ErrorIs(t, reports()[0], ErrStopped)
	assert.Contains(t, reports()[0].Error(), "1 request(s)")
	for range 5 {
		assert.Equal(t, http.StatusServiceUnavailable, req())
	}
	advance(notRunningReportInterval - time.Nanosecond)
	assert.Equal(t, http.StatusServiceUnavailable, req())
	assert.Len(t, reports(), 1, "not twice within the interval")
	advance(time.Nanosecond)
	assert.Equal(t, http.StatusServiceUnavailable, req())
	require.Len(t, reports(), 2)
	assert.Contains(t, reports()[1].Error(), "7 request(s)", "counting the unreported ones")

	// Without Webhook.OnError, the last Run's OnError gets them.
	w.OnError = nil
	errs := newErrorLog()
	stop := runWebhook(t, w, func(*session.Context[struct{}]) error { return nil }, Options{OnError: errs.onError})
	require.NoError(t, stop())
	advance(notRunningReportInterval)
	assert.Equal(t, http.StatusServiceUnavailable, req())
	assert.ErrorIs(t, errs.snapshot()[0], ErrStopped, "a source error of the last Run")
}

// A request whose update was taken but that Telegram gave up on before
// the update was handled is not answered 200 (the update is still
// handled, and Telegram sends it again).
func TestWebhookRequestGivenUp(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	var handled atomic.Int32
	h := func(*session.Context[struct{}]) error { close(entered); <-release; handled.Add(1); return nil }
	w := &Webhook{Secret: secret}
	stop := runWebhook(t, w, h, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() { code <- serve(w, post(ctx, secret, updateJSON(t, chatMsg(1, 1, 0)))) }()
	receive(t, entered, "the handler")
	cancel()
	assert.Equal(t, http.StatusServiceUnavailable, receive(t, code, "the answer"))
	close(release)
	require.NoError(t, stop())
	assert.Equal(t, int32(1), handled.Load())
}

// With InsecureNoSecret and no Secret, Run starts and requests without
// the header are taken.
func TestWebhookInsecureNoSecret(t *testing.T) {
	var handled atomic.Int32
	w := &Webhook{InsecureNoSecret: true}
	stop := runWebhook(t, w, func(*session.Context[struct{}]) error { handled.Add(1); return nil }, Options{})
	assert.Equal(t, http.StatusOK, serve(w, post(context.Background(), "", updateJSON(t, chatMsg(1, 1, 0)))))
	assert.Equal(t, int32(1), handled.Load(), "answered 200 once handled")
	require.NoError(t, stop())
}
