package runner

import (
	"context"
	"fmt"
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

// A panic while a strict session loads (here in Options.Initial, the
// first time it runs for chat 1) fails that one update only: it reaches
// OnError with the panic value, chat 1's later updates are handled, and
// the three other chats, busy at the same time, lose nothing. A chat lock
// left behind by the panic would stall chat 1 for good, then, once its
// queue is full, the intake of every chat: the wait for completion below
// then fails after waitLimit instead of hanging.
func TestScenarioPanicInSessionLoadDoesNotStallOtherChats(t *testing.T) {
	const chats, perChat = 4, 500
	const total = chats * perChat
	const panicValue = "Initial exploded for chat 1"

	// Update i is message #i/chats of chat 1+i%chats: the chats interleave.
	src := genSource(func(i int) (tgbotapi.Update, bool) {
		return chatMsg(i+1, int64(1+i%chats), i/chats), i < total
	})

	// Initial takes no argument, so it cannot tell which chat it is for.
	// The other chats are therefore held at their key until Initial has
	// run once, which makes its first call, the one that panics, chat 1's.
	// The runner orders by this same key function, so the hold is in its
	// intake: chat 2's first update waits there until chat 1's first
	// handler, taken already, has run Initial. The other chats are busy
	// from then on, while chat 1 recovers.
	firstInitial := make(chan struct{})
	var initialCalls atomic.Int32
	initial := func() tally {
		if initialCalls.Add(1) == 1 {
			close(firstInitial)
			panic(panicValue)
		}
		return tally{}
	}
	key := func(u session.Update) (string, bool) {
		k, ok := session.ByChat(u)
		if ok && k != "1" {
			select {
			case <-firstInitial:
			case <-time.After(waitLimit): // failure detector: the wait below reports it
			}
		}
		return k, ok
	}

	mem := session.NewMemory()
	sess := newSession(t, session.Options[tally]{Storage: mem, Key: key, Initial: initial})
	var (
		mu      sync.Mutex
		handled = map[int64]int{}
	)
	h := func(c *session.Context[tally]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		chat, seq := c.Update.Message.Chat.ID, c.Update.Message.MessageID
		// Each update sees the count of the updates of its chat saved
		// before it; chat 1's first one saved nothing.
		want := seq
		if chat == 1 {
			want = seq - 1
		}
		if s.N != want {
			return fmt.Errorf("chat %d: message #%d saw count %d, want %d", chat, seq, s.N, want)
		}
		s.N++
		mu.Lock()
		handled[chat]++
		mu.Unlock()
		return nil
	}
	progress := func() string {
		mu.Lock()
		defer mu.Unlock()
		_, done := src.counts()
		return fmt.Sprintf("%d of %d updates finished; handled per chat: %v; Initial called %d times", done, total, handled, initialCalls.Load())
	}

	errs := newErrorLog()
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, sess, h, Options{Source: src, QueueLimit: 10, DrainTimeout: 2 * time.Second, OnError: errs.onError})
	stopped := false
	stop := func() error {
		stopped = true
		cancel()
		return result(t, done)
	}
	defer func() {
		if !stopped {
			_ = stop() // after a failure: do not leave Run running
		}
	}()

	if !assert.Eventually(t, func() bool { _, d := src.counts(); return d == total }, waitLimit, time.Millisecond) {
		t.Fatalf("not every update finished within %v, so a panic in the session load stalled chats: %s", waitLimit, progress())
	}
	require.NoError(t, stop())

	mu.Lock()
	assert.Equal(t, map[int64]int{1: perChat - 1, 2: perChat, 3: perChat, 4: perChat}, handled,
		"every update handled but chat 1's first")
	mu.Unlock()
	assert.Equal(t, int32(chats+1), initialCalls.Load(), "Initial: once per chat, and once more for chat 1 after its panic")

	got := errs.snapshot()
	require.Len(t, got, 1, "one error, the panic: %v", got)
	require.Contains(t, got, 1, "reported for chat 1's first update (update 1)")
	assert.ErrorContains(t, got[1], panicValue, "the panic value is in the error")
	errs.mu.Lock()
	assert.Equal(t, "1", errs.keys[1], "chat 1's session key")
	errs.mu.Unlock()

	for c := 1; c <= chats; c++ {
		v, found := stored(t, mem, strconv.Itoa(c))
		require.True(t, found, "chat %d saved", c)
		want := perChat
		if c == 1 {
			want = perChat - 1
		}
		assert.Equal(t, want, v.N, "chat %d's saved count", c)
	}
}
