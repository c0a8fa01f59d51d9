package runner

import (
	"context"
	"errors"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// An update is confirmed only once it is finished: while the first
// update of chat 1 runs, the later ones of chat 2 are handled but nothing
// is confirmed, so a crash would have them all sent again.
func TestPollingConfirmsOnlyFinished(t *testing.T) {
	srv, bot := fakeBot(t)
	srv.SendMessage(1, 1, "slow")
	for range 4 {
		srv.SendMessage(2, 2, "fast")
	}
	release := make(chan struct{})
	var fast atomic.Int32
	h := func(c *session.Context[struct{}]) error {
		if c.Update.Message.Chat.ID == 1 {
			<-release
			return nil
		}
		fast.Add(1)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startRun(ctx, bot, byChat(t), h, Options{})
	eventually(t, func() bool { return fast.Load() == 4 }, "chat 2 handled")
	assert.Equal(t, 5, srv.Pending(), "update 1 is open: nothing is confirmed yet")

	close(release)
	eventually(t, func() bool { return srv.Pending() == 0 }, "all confirmed once update 1 is done")
	cancel()
	require.NoError(t, result(t, done))
}

// Rounds of start and graceful stop while updates keep arriving: in the
// end every update was handled exactly once.
func TestPollingStopAndRestart(t *testing.T) {
	srv, bot := fakeBot(t)
	var mu sync.Mutex
	seen := map[int]int{}
	var handled atomic.Int64
	h := func(c *session.Context[struct{}]) error {
		mu.Lock()
		seen[c.Update.UpdateID]++
		mu.Unlock()
		handled.Add(1)
		return nil
	}
	onError := func(_ context.Context, u *tgbotapi.Update, _ string, err error) {
		t.Errorf("update %v: %v", u, err)
	}
	const rounds, perRound = 5, 40
	for r := range rounds {
		ctx, cancel := context.WithCancel(context.Background())
		done := startRun(ctx, bot, byChat(t), h, Options{OnError: onError, MaxInFlight: 3})
		for i := range perRound {
			chat := int64(1 + i%4)
			srv.SendMessage(chat, chat, strconv.Itoa(r*perRound+i))
		}
		// Stop once some of this round's updates were handled, so some
		// are left for the next round.
		target := int64(r*perRound + perRound/2)
		eventually(t, func() bool { return handled.Load() >= target }, "half the round handled")
		cancel()
		require.NoError(t, result(t, done))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, bot, byChat(t), h, Options{OnError: onError})
	eventually(t, func() bool { return handled.Load() == rounds*perRound }, "the rest handled")
	cancel()
	require.NoError(t, result(t, done))

	assert.Zero(t, srv.Pending())
	mu.Lock()
	defer mu.Unlock()
	assert.Len(t, seen, rounds*perRound, "none missed")
	for id, n := range seen {
		assert.Equal(t, 1, n, "update %d repeated", id)
	}
}

// A handler left behind at the drain timeout is not confirmed: its
// update comes again at the next start (at least once), with a new
// source or with the same one reused.
func TestPollingLeftBehindComesAgain(t *testing.T) {
	srv, bot := fakeBot(t)
	stuck := make(chan struct{})
	defer close(stuck)
	entered := make(chan struct{}, 1)
	stuckHandler := func(c *session.Context[struct{}]) error {
		entered <- struct{}{}
		<-stuck // ignores its context
		return nil
	}
	for round, reuse := range []bool{false, true} {
		id := srv.SendMessage(1, 1, "stuck")
		errs := newErrorLog()
		p := NewPolling(bot, PollingOptions{})
		ctx, cancel := context.WithCancel(context.Background())
		done := startRun(ctx, bot, byChat(t), stuckHandler, Options{Source: p, DrainTimeout: 20 * time.Millisecond, OnError: errs.onError})
		receive(t, entered, "the handler")
		cancel()
		require.ErrorIs(t, result(t, done), context.DeadlineExceeded)
		assert.ErrorIs(t, errs.snapshot()[id], ErrStopped)
		assert.Equal(t, 1, srv.Pending(), "round %d: not confirmed", round)

		var src Source // a new polling source
		if reuse {
			src = p
		}
		var again atomic.Int32
		ctx, cancel = context.WithCancel(context.Background())
		done = startRun(ctx, bot, byChat(t), func(c *session.Context[struct{}]) error {
			again.Store(int32(c.Update.UpdateID))
			return nil
		}, Options{Source: src})
		eventually(t, func() bool { return int(again.Load()) == id }, "the update again")
		cancel()
		require.NoError(t, result(t, done))
		assert.Zero(t, srv.Pending(), "round %d", round)
	}
}

// Failed getUpdates calls are reported to OnError without an update and
// retried; an invalid token ends Run with the error.
func TestPollingErrors(t *testing.T) {
	srv, bot := fakeBot(t)
	srv.Fail("getUpdates", 429, "Too Many Requests: retry after 1", tgbotapi.ResponseParameters{RetryAfter: 1})
	srv.Fail("getUpdates", 500, "Internal Server Error")
	srv.SendMessage(1, 1, "after the failures")
	var got atomic.Bool
	errs := newErrorLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, bot, byChat(t), func(c *session.Context[struct{}]) error {
		got.Store(true)
		return nil
	}, Options{OnError: errs.onError})
	eventually(t, got.Load, "the update, after a retry")
	cancel()
	require.NoError(t, result(t, done))
	// Both failures were reported, with a nil update; the last one kept.
	var apiErr *tgbotapi.Error
	require.True(t, errors.As(errs.snapshot()[0], &apiErr), "the source error, reported with a nil update")
	assert.Equal(t, 500, apiErr.Code)
	waits := 0
	for _, r := range srv.Requests() {
		if r.Method == "getUpdates" {
			waits++
		}
	}
	assert.GreaterOrEqual(t, waits, 3, "retried after the 429 and the 500")

	srv.Fail("getUpdates", 401, "Unauthorized")
	err := result(t, startRun(context.Background(), bot, byChat(t), func(*session.Context[struct{}]) error { return nil }, Options{}))
	require.True(t, errors.As(err, &apiErr), "%v", err)
	assert.Equal(t, 401, apiErr.Code)
}

// The offset bookkeeping: confirmed = oldest open update, else one past
// the last taken.
func TestPollingOffsets(t *testing.T) {
	p := NewPolling(&tgbotapi.BotAPI{}, PollingOptions{}) // never polls
	off, busy := p.offset()
	assert.Equal(t, 0, off)
	assert.False(t, busy)
	for _, id := range []int{10, 11, 15} {
		require.True(t, p.take(id))
	}
	assert.False(t, p.take(11), "already taken")
	p.finish(11, true)
	off, busy = p.offset()
	assert.Equal(t, 10, off)
	assert.True(t, busy)
	p.finish(10, true)
	off, _ = p.offset()
	assert.Equal(t, 15, off)
	p.finish(15, true)
	off, busy = p.offset()
	assert.Equal(t, 16, off)
	assert.False(t, busy)
	require.True(t, p.take(16))
	p.untake(16)
	off, _ = p.offset()
	assert.Equal(t, 16, off)
	assert.True(t, p.take(16), "refused updates can be taken again")

	// An update the runner gave up stays open: the offset stays below it.
	p.finish(16, true)
	require.True(t, p.take(17))
	require.True(t, p.take(18))
	p.finish(18, true)
	p.finish(17, false)
	off, busy = p.offset()
	assert.Equal(t, 17, off, "17 was not handled")
	assert.True(t, busy)
	// The next Receive starts afresh: 17 is taken again, 18 is skipped
	// as handled, and forgotten once Telegram accepted an offset past it.
	p.open, p.next = nil, 0
	assert.True(t, p.take(17))
	assert.False(t, p.take(18), "handled in the earlier Run")
	p.finish(17, true)
	off, _ = p.offset()
	assert.Equal(t, 19, off)
	p.confirmed(19)
	assert.Empty(t, p.handled)
}

// An idle Run stops without waiting for its long poll: the last,
// short getUpdates of Close ends it (Telegram answers the older call 409).
func TestPollingIdleStopEndsLongPoll(t *testing.T) {
	srv, bot := fakeBot(t)
	p := NewPolling(bot, PollingOptions{Timeout: 60})
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, bot, byChat(t), func(*session.Context[struct{}]) error { return nil }, Options{Source: p})
	eventually(t, func() bool {
		for _, r := range srv.Requests() {
			if r.Method == "getUpdates" && r.Params.Get("timeout") == "60" {
				return true
			}
		}
		return false
	}, "the long poll on the wire")
	cancel()
	require.NoError(t, result(t, done))
	p.mu.Lock()
	calls := p.calls
	p.mu.Unlock()
	assert.Zero(t, calls, "Run returned after the long poll ended, well before its 60 seconds")
}

// Updates handled by an earlier Run on the same Polling and not
// confirmed (its last getUpdates failed, say) are skipped when they come
// again, even a full answer of them, and the intake goes on past them.
func TestPollingSkipsHandledWithoutStalling(t *testing.T) {
	srv, bot := fakeBot(t)
	var ids []int
	for range 5 {
		ids = append(ids, srv.SendMessage(1, 1, "x"))
	}
	p := NewPolling(bot, PollingOptions{Limit: 2})
	for _, id := range ids[:4] {
		p.handled[id] = struct{}{} // as an earlier Run left them
	}
	handled := newHandledLog()
	h := func(c *session.Context[struct{}]) error { handled.add(c.Update.UpdateID); return nil }
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startRun(ctx, bot, byChat(t), h, Options{Source: p})
	eventually(t, func() bool { return handled.count(ids[4]) == 1 && srv.Pending() == 0 }, "the new update handled and all confirmed")
	cancel()
	require.NoError(t, result(t, done))
	assert.Equal(t, 1, handled.total(), "only the one not handled before")
	assert.Empty(t, p.handled, "forgotten once confirmed")
}
