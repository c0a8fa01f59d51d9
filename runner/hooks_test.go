package runner

import (
	"context"
	"errors"
	"net/http"
	"sync"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// eventLog records the runner's events.
type eventLog struct {
	mu     sync.Mutex
	events []Event
}

func (l *eventLog) hooks() *Hooks {
	return &Hooks{Event: func(_ context.Context, e Event) {
		l.mu.Lock()
		defer l.mu.Unlock()
		e.Update = nil // valid during the call only
		l.events = append(l.events, e)
	}}
}

// kinds counts the events by kind.
func (l *eventLog) kinds() map[EventKind]int {
	l.mu.Lock()
	defer l.mu.Unlock()
	n := map[EventKind]int{}
	for _, e := range l.events {
		n[e.Kind]++
	}
	return n
}

func TestHooksTellEveryUpdate(t *testing.T) {
	log := &eventLog{}
	fail := errors.New("handler failed")
	src := newSliceSource(chatMsg(1, 10, 0), chatMsg(2, 10, 1), chatMsg(3, 11, 0), chatMsg(1, 10, 0))
	h := func(c *session.Context[struct{}]) error {
		if c.Update.UpdateID == 2 {
			return fail
		}
		return nil
	}
	errs := newErrorLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src, Hooks: log.hooks(), OnError: errs.onError})
	eventually(t, func() bool { _, n := src.counts(); return n == 4 }, "every update acknowledged")
	cancel()
	require.NoError(t, result(t, done))
	assert.Equal(t, map[EventKind]int{Taken: 3, Handled: 2, Failed: 1, Deduplicated: 1}, log.kinds(),
		"update 1 twice (the second deduplicated), 2 failing, 3 handled")
	log.mu.Lock()
	defer log.mu.Unlock()
	for _, e := range log.events {
		assert.GreaterOrEqual(t, e.Queued, 0)
		assert.GreaterOrEqual(t, e.InFlight, 0)
		if e.Kind == Failed {
			assert.ErrorIs(t, e.Err, fail)
			assert.Equal(t, "10", e.Key)
		}
	}
	last := log.events[len(log.events)-1]
	assert.Zero(t, last.Queued, "nothing waits at the end")
}

// An update the session's record says was applied (another replica, or
// a restart) is Deduplicated and acknowledged, not reported.
func TestHooksStoreDuplicate(t *testing.T) {
	log := &eventLog{}
	mem := session.NewMemory()
	sess := newSession(t, session.Options[tally]{Storage: mem})
	h := func(c *session.Context[tally]) error {
		s, err := c.Session()
		if err == nil {
			s.N++
		}
		return err
	}
	bot := &tgbotapi.BotAPI{Self: tgbotapi.User{ID: 7}}
	errs := newErrorLog()
	for range 2 { // two Runs: the second remembers nothing, the store does
		w := &Webhook{Secret: secret}
		ctx, cancel := context.WithCancel(context.Background())
		done := startRun(ctx, bot, sess, h, Options{Source: w, Hooks: log.hooks(), OnError: errs.onError})
		eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.feed != nil }, "the webhook receiving")
		assert.Equal(t, http.StatusOK, serve(w, post(context.Background(), secret, updateJSON(t, chatMsg(5, 42, 0)))))
		cancel()
		require.NoError(t, result(t, done))
	}
	assert.Equal(t, map[EventKind]int{Taken: 2, Handled: 1, Deduplicated: 1}, log.kinds())
	assert.Empty(t, errs.snapshot(), "a duplicate is not an error")
	v, _ := stored(t, mem, "42")
	assert.Equal(t, 1, v.N)
}
