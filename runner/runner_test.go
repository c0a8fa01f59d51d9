package runner

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"runtime"
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

// seqOf returns the ordering key and sequence number of an update built
// by chatMsg or inlineQuery.
func seqOf(u tgbotapi.Update) (string, int) {
	if u.Message != nil {
		return "chat " + strconv.FormatInt(u.Message.Chat.ID, 10), u.Message.MessageID
	}
	seq, _ := strconv.Atoi(u.InlineQuery.ID)
	return "user " + strconv.FormatInt(u.InlineQuery.From.ID, 10), seq
}

// Updates of one chat (the default session's key; without a chat, of one
// user) are handled one at a time, in arrival order, while many keys are
// interleaved; with few handler slots, every key still gets its turn.
func TestOrdersEachKey(t *testing.T) {
	const chats, users, perKey = 10, 3, 200
	var us []tgbotapi.Update
	for seq := range perKey {
		for c := range chats {
			us = append(us, chatMsg(len(us)+1, int64(100+c), seq))
		}
		for u := range users {
			// User IDs equal to chat IDs: a user's inline queries
			// must not be ordered with the chat of the same number.
			us = append(us, inlineQuery(len(us)+1, int64(100+u), seq))
		}
	}

	var (
		mu       sync.Mutex
		seen     = map[string][]int{}
		running  = map[string]int{}
		overlaps []string
		maxBusy  int
	)
	h := func(c *session.Context[struct{}]) error {
		key, seq := seqOf(c.Update)
		mu.Lock()
		running[key]++
		if running[key] > 1 {
			overlaps = append(overlaps, fmt.Sprintf("%s #%d", key, seq))
		}
		maxBusy = max(maxBusy, len(running))
		seen[key] = append(seen[key], seq)
		mu.Unlock()
		runtime.Gosched() // give an overlapping handler the chance to show up
		mu.Lock()
		if running[key]--; running[key] == 0 {
			delete(running, key)
		}
		mu.Unlock()
		return nil
	}
	src := newSliceSource(us...)
	errs := newErrorLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src, MaxInFlight: 4, QueueLimit: 3, OnError: errs.onError})
	receive(t, src.finished, "all updates taken")
	eventually(t, func() bool { _, d := src.counts(); return d == len(us) }, "all handled")
	cancel()
	require.NoError(t, result(t, done))

	assert.Empty(t, errs.snapshot())
	assert.Empty(t, overlaps, "handlers of one key overlapped")
	assert.LessOrEqual(t, maxBusy, 4, "MaxInFlight")
	want := make([]int, perKey)
	for i := range want {
		want[i] = i
	}
	require.Len(t, seen, chats+users)
	for key, got := range seen {
		assert.Equal(t, want, got, key)
	}
}

// Run orders by the session's own key: keyed by user, a user's messages
// in two chats are serialised, and different users are not. A multi
// session orders by its first fragment's key.
func TestOrdersBySessionKey(t *testing.T) {
	type multi struct{ User, Chat int }
	sessions := map[string]Session[multi]{
		"single": newSession(t, session.Options[multi]{Key: session.ByUser}),
		"multi": func() Session[multi] {
			sess, err := session.NewMulti(session.Options[multi]{Lazy: true},
				session.NewFragment("user", func(m *multi) *int { return &m.User }, session.Options[int]{Key: session.ByUser}),
				session.NewFragment("chat", func(m *multi) *int { return &m.Chat }, session.Options[int]{}))
			require.NoError(t, err)
			return sess
		}(),
	}
	for name, sess := range sessions {
		t.Run(name, func(t *testing.T) {
			started := make(chan int, 4)
			release := make(chan struct{})
			h := func(c *session.Context[multi]) error {
				started <- c.Update.UpdateID
				<-release
				return nil
			}
			msg := func(id int, chat, user int64) tgbotapi.Update {
				u := chatMsg(id, chat, id)
				u.Message.From = &tgbotapi.User{ID: user}
				return u
			}
			src := newSliceSource(msg(1, -1, 7), msg(2, -2, 7), msg(3, -1, 8))
			errs := newErrorLog()
			ctx, cancel := context.WithCancel(context.Background())
			done := startRun(ctx, nil, sess, h, Options{Source: src, OnError: errs.onError})
			first := []int{receive(t, started, "a handler"), receive(t, started, "another handler")}
			assert.ElementsMatch(t, []int{1, 3}, first, "user 7's second message waits although it is another chat")
			close(release)
			assert.Equal(t, 2, receive(t, started, "update 2"))
			cancel()
			require.NoError(t, result(t, done))
			assert.Empty(t, errs.snapshot())
		})
	}
}

// The fallback keys of updates without a session key (chat, then user)
// never share a queue with a session key, even one spelled the same.
func TestFallbackKeysApartFromSessionKeys(t *testing.T) {
	// A session key that reads like the runner's fallback for user 7.
	key := func(u session.Update) (string, bool) {
		if u.Message == nil {
			return "", false
		}
		return "user 7", true
	}
	sess := newSession(t, session.Options[struct{}]{Key: key})
	started := make(chan int, 2)
	release := make(chan struct{})
	h := func(c *session.Context[struct{}]) error {
		started <- c.Update.UpdateID
		<-release
		return nil
	}
	src := newSliceSource(chatMsg(1, 5, 0), inlineQuery(2, 7, 0))
	errs := newErrorLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, sess, h, Options{Source: src, OnError: errs.onError})
	got := []int{receive(t, started, "a handler"), receive(t, started, "another handler")}
	assert.ElementsMatch(t, []int{1, 2}, got, "both run at once")
	close(release)
	cancel()
	require.NoError(t, result(t, done))
	assert.Empty(t, errs.snapshot())
}

// A session key function that panics, run by the runner to order the
// update, fails that update only: it is reported to OnError with the
// panic and its stack, unhandled, and the other updates run.
func TestKeyFunctionPanicIsReported(t *testing.T) {
	boom := errors.New("no key today")
	key := func(u session.Update) (string, bool) {
		if u.UpdateID == 2 {
			panic(boom)
		}
		return session.ByChat(u)
	}
	sess := newSession(t, session.Options[struct{}]{Key: key})
	var handled sync.Map
	h := func(c *session.Context[struct{}]) error {
		handled.Store(c.Update.UpdateID, true)
		return nil
	}
	src := newSliceSource(chatMsg(1, 1, 0), chatMsg(2, 1, 1), chatMsg(3, 1, 2))
	errs := newErrorLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, sess, h, Options{Source: src, OnError: errs.onError})
	eventually(t, func() bool { _, d := src.counts(); return d == 3 }, "all finished")
	cancel()
	require.NoError(t, result(t, done))

	for id, want := range map[int]bool{1: true, 2: false, 3: true} {
		_, ok := handled.Load(id)
		assert.Equal(t, want, ok, "update %d handled", id)
	}
	got := errs.snapshot()
	require.Len(t, got, 1)
	assert.ErrorIs(t, got[2], boom)
	assert.ErrorContains(t, got[2], "the session's key function panicked")
	assert.Contains(t, got[2].Error(), "runtime/debug.Stack", "the stack is in the error")
	errs.mu.Lock()
	assert.Equal(t, "", errs.keys[2], "run unordered")
	errs.mu.Unlock()
}

// A handler's error and panic reach OnError with the update and key, the
// panic with its stack, and later updates of the same key still run.
func TestErrorsAndPanicsReachOnError(t *testing.T) {
	boom := errors.New("boom")
	var handled sync.Map
	h := func(c *session.Context[struct{}]) error {
		switch c.Update.UpdateID {
		case 1:
			return boom
		case 2:
			panic("kaboom")
		case 4:
			panic(fmt.Errorf("wrapped %w", boom))
		}
		handled.Store(c.Update.UpdateID, true)
		return nil
	}
	src := newSliceSource(chatMsg(1, 1, 0), chatMsg(2, 1, 1), chatMsg(3, 1, 2), inlineQuery(4, 7, 0), inlineQuery(5, 7, 1), chatMsg(6, 2, 0))
	errs := newErrorLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src, OnError: errs.onError})
	eventually(t, func() bool { _, d := src.counts(); return d == 6 }, "all finished")
	cancel()
	require.NoError(t, result(t, done))

	for _, id := range []int{3, 5, 6} {
		_, ok := handled.Load(id)
		assert.True(t, ok, "update %d handled", id)
	}
	got := errs.snapshot()
	require.Len(t, got, 3)
	assert.ErrorIs(t, got[1], boom)
	assert.Contains(t, got[2].Error(), "kaboom")
	assert.Contains(t, got[2].Error(), "runtime/debug.Stack", "the stack is in the error")
	assert.ErrorIs(t, got[4], boom, "a panicked error is wrapped")
	errs.mu.Lock()
	assert.Equal(t, "1", errs.keys[1], "the session key")
	assert.Equal(t, "user 7", errs.keys[4], "no session key: the fallback")
	errs.mu.Unlock()
}

// With a nil OnError, errors are logged through slog.Default at error level.
func TestNilOnErrorLogs(t *testing.T) {
	var buf syncBuffer
	oldSlog, oldOut, oldFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() {
		slog.SetDefault(oldSlog)
		log.SetOutput(oldOut) // SetDefault redirected the log package
		log.SetFlags(oldFlags)
	})
	h := func(c *session.Context[struct{}]) error {
		if c.Update.UpdateID == 7 {
			return errors.New("boom")
		}
		panic("kaboom")
	}
	src := newSliceSource(chatMsg(7, 1, 0), chatMsg(8, 2, 0))
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src})
	eventually(t, func() bool { _, d := src.counts(); return d == 2 }, "both finished")
	cancel()
	require.NoError(t, result(t, done))
	out := buf.String()
	assert.Contains(t, out, "level=ERROR")
	assert.Contains(t, out, "update_id=7")
	assert.Contains(t, out, "key=1 ")
	assert.Contains(t, out, "boom")
	assert.Contains(t, out, "update_id=8")
	assert.Contains(t, out, "kaboom")
}

// Updates without a key run, unordered: two of them block at once.
func TestUpdatesWithoutKey(t *testing.T) {
	started := make(chan int, 4)
	release := make(chan struct{})
	h := func(c *session.Context[struct{}]) error {
		started <- c.Update.UpdateID
		if c.Update.UpdateID <= 2 {
			<-release
		}
		return nil
	}
	src := newSliceSource(
		tgbotapi.Update{UpdateID: 1},
		tgbotapi.Update{UpdateID: 2, Poll: &tgbotapi.Poll{ID: "p"}},
		tgbotapi.Update{UpdateID: 3, InlineQuery: &tgbotapi.InlineQuery{ID: "q"}},
		tgbotapi.Update{UpdateID: 4, CallbackQuery: &tgbotapi.CallbackQuery{ID: "cb", InlineMessageID: "m"}},
	)
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src})
	var got []int
	for range 4 {
		got = append(got, receive(t, started, "a handler"))
	}
	assert.ElementsMatch(t, []int{1, 2, 3, 4}, got)
	close(release)
	cancel()
	require.NoError(t, result(t, done))
}

// Handlers get Run's bot and ctx's values, in a context that the stop
// does not cancel.
func TestHandlerContext(t *testing.T) {
	type ctxKey struct{}
	ctx, cancel := context.WithCancel(context.WithValue(context.Background(), ctxKey{}, "v"))
	bot := &tgbotapi.BotAPI{}
	entered := make(chan struct{})
	stopped := make(chan struct{})
	var ok, liveAfterStop atomic.Bool
	h := func(c *session.Context[struct{}]) error {
		ok.Store(c.Bot == bot && c.Value(ctxKey{}) == "v")
		close(entered)
		<-stopped
		liveAfterStop.Store(c.Err() == nil)
		return nil
	}
	done := startRun(ctx, bot, byChat(t), h, Options{Source: newSliceSource(chatMsg(9, 1, 0))})
	receive(t, entered, "the handler")
	cancel()
	close(stopped)
	require.NoError(t, result(t, done))
	assert.True(t, ok.Load())
	assert.True(t, liveAfterStop.Load(), "the handler's context outlives the stop")
}

// Stop under load: 1,000 updates over 10 chats through the polling
// source, stopped after 300 were handled. Every update taken is handled
// and saved or reported; the rest stay with Telegram; a restart handles
// them, and in the end every chat counted exactly 100: none lost, none
// twice.
func TestStopUnderLoadLosesNothing(t *testing.T) {
	srv, bot := fakeBot(t)
	const chats, perChat, stopAt = 10, 100, 300
	for i := range chats * perChat {
		c := int64(1 + i%chats)
		srv.SendMessage(c, c, "+1")
	}

	mem := session.NewMemory()
	sess := newSession(t, session.Options[tally]{Storage: mem})
	var (
		handled atomic.Int64
		seenMu  sync.Mutex
		seen    = map[int]int{} // update id -> times handled
		cancel  context.CancelFunc
	)
	h := func(c *session.Context[tally]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.N++
		seenMu.Lock()
		seen[c.Update.UpdateID]++
		seenMu.Unlock()
		// A real reply before the save, as bots do.
		if _, err := c.Bot.Send(tgbotapi.NewMessage(c.Update.Message.Chat.ID, "ok")); err != nil {
			return err
		}
		if handled.Add(1) == stopAt {
			cancel()
		}
		return nil
	}
	saved := func() int {
		n := 0
		for c := range chats {
			v, _ := stored(t, mem, strconv.Itoa(1+c))
			n += v.N
		}
		return n
	}

	var stoppedReports atomic.Int64
	onError := func(_ context.Context, u *tgbotapi.Update, _ string, err error) {
		if errors.Is(err, ErrStopped) {
			stoppedReports.Add(1)
			return
		}
		t.Errorf("update %v: %v", u, err)
	}

	var ctx context.Context
	ctx, cancel = context.WithCancel(context.Background())
	err := result(t, startRun(ctx, bot, sess, h, Options{OnError: onError, MaxInFlight: 8}))
	require.NoError(t, err)

	first, reported, pending := int(handled.Load()), int(stoppedReports.Load()), srv.Pending()
	assert.GreaterOrEqual(t, first, stopAt)
	assert.Equal(t, first, saved(), "every handled update was saved, after the stop too")
	assert.Equal(t, chats*perChat, first+reported+pending, "every update is handled, reported, or still with Telegram")
	t.Logf("first run: %d handled and saved, %d reported, %d left with Telegram, 0 lost", first, reported, pending)

	// Restart: the rest comes, and nothing that was handled comes again.
	ctx, cancel = context.WithCancel(context.Background())
	defer cancel()
	done := startRun(ctx, bot, sess, h, Options{OnError: onError})
	eventually(t, func() bool { return int(handled.Load()) == chats*perChat-reported }, "the rest handled")
	cancel()
	require.NoError(t, result(t, done))
	assert.Zero(t, srv.Pending())

	seenMu.Lock()
	defer seenMu.Unlock()
	for id, n := range seen {
		assert.Equal(t, 1, n, "update %d handled %d times", id, n)
	}
	assert.Len(t, seen, chats*perChat-reported)
	if reported == 0 {
		for c := range chats {
			v, _ := stored(t, mem, strconv.Itoa(1+c))
			assert.Equal(t, perChat, v.N, "chat %d", 1+c)
		}
	}
}

// When the drain times out, nothing more starts, the running handlers
// see their context end and are reported with their error, the waiting
// updates are reported with ErrStopped, and Run returns with
// context.DeadlineExceeded.
func TestDrainTimeout(t *testing.T) {
	entered := make(chan struct{}, 4)
	var sawCancel atomic.Int32
	h := func(c *session.Context[struct{}]) error {
		entered <- struct{}{}
		<-c.Done() // ignores the stop, ends with the drain
		sawCancel.Add(1)
		return c.Err()
	}
	// Chat 1: one running, two waiting; chat 2: one running.
	src := newSliceSource(chatMsg(1, 1, 0), chatMsg(2, 1, 1), chatMsg(3, 1, 2), chatMsg(4, 2, 0))
	errs := newErrorLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src, DrainTimeout: 50 * time.Millisecond, OnError: errs.onError})
	receive(t, entered, "a handler")
	receive(t, entered, "another handler")
	receive(t, src.finished, "all taken")
	cancel()
	err := result(t, done)
	require.ErrorIs(t, err, context.DeadlineExceeded)

	got := errs.snapshot()
	require.Len(t, got, 4, "every taken update is reported")
	assert.ErrorIs(t, got[1], context.Canceled, "running, returned its context's error")
	assert.ErrorIs(t, got[4], context.Canceled, "running, returned its context's error")
	assert.ErrorIs(t, got[2], ErrStopped, "waiting")
	assert.ErrorIs(t, got[3], ErrStopped, "waiting")
	_, doneCount := src.counts()
	assert.Equal(t, 4, doneCount, "all finished: handled with an error, or reported")
	assert.Equal(t, int32(2), sawCancel.Load(), "nothing started after the deadline")
}

// Stopped before anything came, Run returns nil at once and closes the
// source.
func TestStopIdle(t *testing.T) {
	src := newSliceSource()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), func(*session.Context[struct{}]) error { return nil }, Options{Source: src})
	receive(t, src.finished, "the source")
	cancel()
	require.NoError(t, result(t, done))
	src.mu.Lock()
	assert.True(t, src.closed)
	src.mu.Unlock()
}

// Configuration mistakes that would otherwise fail later (a nil
// dereference in a goroutine, a silent default, a source that never
// delivers) make Run return an error wrapping session.ErrConfig that
// names the mistake, before it starts anything: the source is not
// received from, nor closed.
func TestRunRefusesConfigurationMistakes(t *testing.T) {
	nop := func(*session.Context[struct{}]) error { return nil }
	bot := &tgbotapi.BotAPI{}
	sess := byChat(t)
	cases := []struct {
		name string
		bot  *tgbotapi.BotAPI
		sess Session[struct{}]
		h    session.Handler[struct{}]
		opts Options
		want string // in the message
	}{
		{"nil session", bot, nil, nop, Options{}, "nil session sess"},
		{"nil *session.Session", bot, (*session.Session[struct{}])(nil), nop, Options{}, "nil session sess"},
		{"session not built by New", bot, &session.Session[struct{}]{}, nop, Options{}, "sess.Middleware panicked"},
		{"nil handler", bot, sess, nil, Options{}, "nil handler h"},
		{"nil bot without a source", nil, sess, nop, Options{}, "nil bot and no Options.Source"},
		{"negative MaxInFlight", bot, sess, nop, Options{MaxInFlight: -1}, "Options.MaxInFlight -1 is negative"},
		{"negative QueueLimit", bot, sess, nop, Options{QueueLimit: -1}, "Options.QueueLimit -1 is negative"},
		{"negative MaxQueued", bot, sess, nop, Options{MaxQueued: -5}, "Options.MaxQueued -5 is negative"},
		{"negative DrainTimeout", bot, sess, nop, Options{DrainTimeout: -time.Second}, "Options.DrainTimeout -1s is negative"},
		{"negative RecentUpdates", bot, sess, nop, Options{RecentUpdates: -1}, "Options.RecentUpdates -1 is negative"},
		{"nil *Polling source", bot, sess, nop, Options{Source: (*Polling)(nil)}, "Options.Source is a nil *Polling"},
		{"Polling literal as source", bot, sess, nop, Options{Source: &Polling{}}, "Polling not made by NewPolling"},
		{"nil *Webhook source", nil, sess, nop, Options{Source: (*Webhook)(nil)}, "Options.Source is a nil *Webhook"},
		{"negative Webhook.MaxBodyBytes", nil, sess, nop, Options{Source: &Webhook{Secret: secret, MaxBodyBytes: -1}}, "Webhook.MaxBodyBytes -1 is negative"},
		{"empty Webhook.Secret", nil, sess, nop, Options{Source: &Webhook{}}, "Webhook.Secret is empty"},
		{"malformed Webhook.Secret", nil, sess, nop, Options{Source: &Webhook{Secret: "a b", InsecureNoSecret: true}}, "Webhook.Secret: secret has ' '"},
		{"negative Webhook.AckTimeout", nil, sess, nop, Options{Source: &Webhook{Secret: secret, AckTimeout: -time.Second}}, "Webhook.AckTimeout -1s is negative"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := Run(context.Background(), tc.bot, tc.sess, tc.h, tc.opts)
			require.Error(t, err)
			assert.ErrorIs(t, err, session.ErrConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	t.Run("several mistakes at once, the source untouched", func(t *testing.T) {
		src := newSliceSource(chatMsg(1, 1, 0))
		err := Run[struct{}](context.Background(), nil, nil, nil, Options{Source: src, MaxInFlight: -1, QueueLimit: -2})
		require.Error(t, err)
		assert.ErrorIs(t, err, session.ErrConfig)
		for _, want := range []string{"nil session sess", "nil handler h", "Options.MaxInFlight -1", "Options.QueueLimit -2"} {
			assert.Contains(t, err.Error(), want)
		}
		taken, _ := src.counts()
		assert.Zero(t, taken, "nothing was received")
		src.mu.Lock()
		assert.False(t, src.closed, "the source was not closed")
		src.mu.Unlock()
	})
}

// A Polling literal used as a Source of its own (say, wrapped in another
// Source) refuses to receive or close instead of polling a nil bot.
func TestPollingLiteralRefusesToRun(t *testing.T) {
	p := &Polling{}
	err := p.Receive(context.Background(), nil)
	assert.ErrorIs(t, err, session.ErrConfig)
	assert.ErrorContains(t, err, "Polling not made by NewPolling")
	err = p.Close(context.Background())
	assert.ErrorIs(t, err, session.ErrConfig)
	assert.ErrorContains(t, err, "Polling not made by NewPolling")
}

// NewPolling panics with session.ErrConfig, naming the field, on a nil
// bot and on values outside the documented ranges; the zero
// PollingOptions and the range ends are fine.
func TestNewPollingRefusesConfigurationMistakes(t *testing.T) {
	bot := &tgbotapi.BotAPI{}
	cases := []struct {
		name string
		bot  *tgbotapi.BotAPI
		opts PollingOptions
		want string
	}{
		{"nil bot", nil, PollingOptions{}, "NewPolling: nil bot"},
		{"negative Timeout", bot, PollingOptions{Timeout: -1}, "PollingOptions.Timeout -1 is negative"},
		{"negative Limit", bot, PollingOptions{Limit: -1}, "PollingOptions.Limit -1 is outside 1 to 100"},
		{"Limit above 100", bot, PollingOptions{Limit: 101}, "PollingOptions.Limit 101 is outside 1 to 100"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := configPanic(t, func() { NewPolling(tc.bot, tc.opts) })
			assert.ErrorIs(t, err, session.ErrConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	for _, opts := range []PollingOptions{{}, {Timeout: 1, Limit: 1}, {Limit: 100}} {
		p := NewPolling(bot, opts)
		assert.NoError(t, p.check(), "%+v", opts)
		assert.Positive(t, p.opts.Timeout, "%+v", opts)
		assert.Positive(t, p.opts.Limit, "%+v", opts)
	}
}

// configPanic runs f, which must panic with an error, and returns it.
func configPanic(t *testing.T, f func()) (err error) {
	t.Helper()
	defer func() {
		r := recover()
		require.NotNil(t, r, "no panic")
		e, ok := r.(error)
		require.True(t, ok, "panicked with %T %v, not an error", r, r)
		err = e
	}()
	f()
	return nil
}

// Run and sessions together, strict and lazy: 1,000 updates over 10
// chats, each update seeing exactly the count of the updates of its chat
// before it.
func TestExactCounts(t *testing.T) {
	for _, lazy := range []bool{false, true} {
		t.Run(fmt.Sprintf("lazy=%v", lazy), func(t *testing.T) {
			const chats, perChat = 10, 100
			var us []tgbotapi.Update
			for seq := range perChat {
				for c := range chats {
					us = append(us, chatMsg(len(us)+1, int64(1+c), seq))
				}
			}
			mem := session.NewMemory()
			sess := newSession(t, session.Options[tally]{Storage: mem, Lazy: lazy})
			h := func(c *session.Context[tally]) error {
				s, err := c.Session()
				if err != nil {
					return err
				}
				if seq := c.Update.Message.MessageID; s.N != seq {
					return fmt.Errorf("chat %d: message #%d saw count %d", c.Update.Message.Chat.ID, seq, s.N)
				}
				s.N++
				return nil
			}
			src := newSliceSource(us...)
			errs := newErrorLog()
			ctx, cancel := context.WithCancel(context.Background())
			done := startRun(ctx, nil, sess, h, Options{Source: src, MaxInFlight: 4, OnError: errs.onError})
			eventually(t, func() bool { _, d := src.counts(); return d == len(us) }, "all handled")
			cancel()
			require.NoError(t, result(t, done))
			assert.Empty(t, errs.snapshot())
			for c := range chats {
				v, found := stored(t, mem, strconv.Itoa(1+c))
				require.True(t, found, "chat %d", 1+c)
				assert.Equal(t, perChat, v.N, "chat %d", 1+c)
			}
		})
	}
}
