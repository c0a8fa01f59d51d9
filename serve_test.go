package session

import (
	"bytes"
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
)

// serveTimeout bounds every wait in these tests; it is only reached when
// a test fails.
const serveTimeout = 10 * time.Second

// serveChatMsg is a message with sequence number seq in private chat id.
func serveChatMsg(updateID int, id int64, seq int) tgbotapi.Update {
	return tgbotapi.Update{UpdateID: updateID, Message: &tgbotapi.Message{
		MessageID: seq,
		From:      &tgbotapi.User{ID: id},
		Chat:      &tgbotapi.Chat{ID: id, Type: "private"},
		Text:      strconv.Itoa(seq),
	}}
}

// serveInline is an inline query from user id: it has a user but no chat.
func serveInline(updateID int, id int64, seq int) tgbotapi.Update {
	return tgbotapi.Update{UpdateID: updateID, InlineQuery: &tgbotapi.InlineQuery{
		ID:    strconv.Itoa(seq),
		From:  &tgbotapi.User{ID: id},
		Query: strconv.Itoa(seq),
	}}
}

// serveOrderKey returns the ordering key and sequence number of an
// update built by serveChatMsg or serveInline.
func serveOrderKey(u tgbotapi.Update) (string, int) {
	if u.Message != nil {
		return "chat " + strconv.FormatInt(u.Message.Chat.ID, 10), u.Message.MessageID
	}
	seq, _ := strconv.Atoi(u.InlineQuery.ID)
	return "user " + strconv.FormatInt(u.InlineQuery.From.ID, 10), seq
}

// closedUpdates returns a closed channel holding us.
func closedUpdates(us ...tgbotapi.Update) <-chan tgbotapi.Update {
	ch := make(chan tgbotapi.Update, len(us))
	for _, u := range us {
		ch <- u
	}
	close(ch)
	return ch
}

// startServe runs Serve in a goroutine; the channel yields its result.
func startServe[S any](ctx context.Context, updates <-chan tgbotapi.Update, h Handler[S], onError func(*Context[S], error)) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, nil, updates, h, onError) }()
	return done
}

// serveResult waits for the result of startServe.
func serveResult(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(serveTimeout):
		t.Fatal("Serve did not return")
		return nil
	}
}

// notReturned checks that Serve has not returned yet. A short grace
// period lets a wrongly returning Serve get there.
func notReturned(t *testing.T, done <-chan error, why string) {
	t.Helper()
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) %s", err, why)
	case <-time.After(20 * time.Millisecond):
	}
}

// receive waits for a value on ch.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(serveTimeout):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// failOnError is an onError that fails the test.
func failOnError[S any](t *testing.T) func(*Context[S], error) {
	return func(c *Context[S], err error) {
		t.Errorf("update %d: unexpected error: %v", c.Update.UpdateID, err)
	}
}

// Updates of one chat (and, without a chat, of one user) are handled one
// at a time, in arrival order, while many chats are interleaved.
func TestServeOrdersEachChat(t *testing.T) {
	const chats, users, perKey = 10, 3, 200
	var us []tgbotapi.Update
	id := 0
	for seq := range perKey {
		for c := range chats {
			id++
			us = append(us, serveChatMsg(id, int64(100+c), seq))
		}
		for u := range users {
			id++
			// User IDs equal to chat IDs: a user's inline queries
			// must not be ordered with the chat of the same number.
			us = append(us, serveInline(id, int64(100+u), seq))
		}
	}

	var (
		mu       sync.Mutex
		seen     = map[string][]int{}
		running  = map[string]int{}
		overlaps []string
		maxBusy  int // keys running at once, at most
	)
	h := func(c *Context[struct{}]) error {
		key, seq := serveOrderKey(c.Update)
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

	err := serveResult(t, startServe(context.Background(), closedUpdates(us...), h, failOnError[struct{}](t)))
	require.NoError(t, err)

	assert.Empty(t, overlaps, "handlers of one key overlapped")
	want := make([]int, perKey)
	for i := range want {
		want[i] = i
	}
	require.Len(t, seen, chats+users)
	for key, got := range seen {
		assert.Equal(t, want, got, key)
	}
	t.Logf("at most %d keys were handled at once", maxBusy)
}

// Handlers of different chats run at the same time: two handlers are
// blocked at once, while a later update of one of those chats waits. A
// user's updates without a chat are not ordered with the chat whose ID
// happens to be the same number.
func TestServeChatsRunConcurrently(t *testing.T) {
	started := make(chan int, 4) // update IDs
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()

	h := func(c *Context[struct{}]) error {
		started <- c.Update.UpdateID
		<-release
		return nil
	}
	done := startServe(context.Background(), closedUpdates(
		serveChatMsg(1, 1, 0),
		serveChatMsg(2, 1, 1), // behind update 1 in chat 1
		serveInline(3, 1, 0),  // user 1, no chat
		serveChatMsg(4, 2, 0),
	), h, failOnError[struct{}](t))

	var first []int
	for range 3 {
		first = append(first, receive(t, started, "a handler"))
	}
	assert.ElementsMatch(t, []int{1, 3, 4}, first, "the first update of each key runs at once")
	select {
	case id := <-started:
		t.Fatalf("update %d started while update 1 of its chat was running", id)
	default:
	}
	unblock()
	assert.Equal(t, 2, receive(t, started, "update 2"))
	require.NoError(t, serveResult(t, done))
}

// When the channel closes, Serve waits for the handlers still running,
// then returns nil.
func TestServeReturnsNilAfterHandlersWhenClosed(t *testing.T) {
	updates := make(chan tgbotapi.Update, 2)
	started := make(chan struct{})
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	var finished atomic.Int32
	h := func(c *Context[struct{}]) error {
		if c.Update.UpdateID == 1 {
			close(started)
			<-release
		}
		finished.Add(1)
		return nil
	}
	done := startServe(context.Background(), updates, h, failOnError[struct{}](t))

	updates <- serveChatMsg(1, 1, 0)
	updates <- serveChatMsg(2, 1, 1) // queued behind update 1
	receive(t, started, "the handler")
	close(updates)
	notReturned(t, done, "while a handler was still running")

	unblock()
	require.NoError(t, serveResult(t, done))
	assert.Equal(t, int32(2), finished.Load(), "every update was handled before Serve returned")
}

// Cancelling ctx makes Serve return ctx.Err(), but only after the running
// handlers are done; handlers see the cancellation through their Context.
func TestServeCancelWaitsForHandlers(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	updates := make(chan tgbotapi.Update, 2) // never closed

	started := make(chan int, 2)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()
	var finished atomic.Bool
	var mu sync.Mutex
	var errs []error
	h := func(c *Context[struct{}]) error {
		started <- c.Update.UpdateID
		if c.Update.UpdateID == 1 {
			<-release // ignores ctx: Serve must still wait for it
			finished.Store(true)
			return nil
		}
		<-c.Done()
		return c.Err()
	}
	done := startServe(ctx, updates, h, func(c *Context[struct{}], err error) {
		mu.Lock()
		defer mu.Unlock()
		errs = append(errs, err)
	})

	updates <- serveChatMsg(1, 1, 0)
	updates <- serveChatMsg(2, 2, 0)
	receive(t, started, "a handler")
	receive(t, started, "another handler")

	cancel()
	notReturned(t, done, "while a handler was still running")
	assert.False(t, finished.Load())

	unblock()
	err := serveResult(t, done)
	require.ErrorIs(t, err, context.Canceled)
	assert.True(t, finished.Load(), "Serve returned before the running handler finished")
	mu.Lock()
	defer mu.Unlock()
	require.Len(t, errs, 1)
	assert.ErrorIs(t, errs[0], context.Canceled, "the handler saw the cancellation")
}

// A handler's error and a handler's panic reach onError with the update,
// and Serve goes on with the next updates, of the same chat too.
func TestServeErrorsAndPanicsReachOnError(t *testing.T) {
	boom := errors.New("boom")
	var mu sync.Mutex
	handled := map[int]bool{}
	errs := map[int]error{}
	h := func(c *Context[struct{}]) error {
		switch c.Update.UpdateID {
		case 1:
			return boom
		case 2:
			panic("kaboom")
		case 4:
			panic(fmt.Errorf("wrapped %w", boom))
		}
		mu.Lock()
		handled[c.Update.UpdateID] = true
		mu.Unlock()
		return nil
	}
	onError := func(c *Context[struct{}], err error) {
		mu.Lock()
		defer mu.Unlock()
		errs[c.Update.UpdateID] = err
	}
	err := serveResult(t, startServe(context.Background(), closedUpdates(
		serveChatMsg(1, 1, 0),
		serveChatMsg(2, 1, 1),
		serveChatMsg(3, 1, 2), // after the error and the panic, same chat
		serveInline(4, 7, 0),
		serveInline(5, 7, 1), // after a panic, same user
		serveChatMsg(6, 2, 0),
	), h, onError))
	require.NoError(t, err)

	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[int]bool{3: true, 5: true, 6: true}, handled)
	require.Len(t, errs, 3)
	assert.ErrorIs(t, errs[1], boom)
	require.Error(t, errs[2])
	assert.Contains(t, errs[2].Error(), "panic")
	assert.Contains(t, errs[2].Error(), "kaboom")
	require.Error(t, errs[4])
	assert.Contains(t, errs[4].Error(), "wrapped boom")
}

// With a nil onError, errors are logged through slog.Default.
func TestServeNilOnErrorLogs(t *testing.T) {
	var buf syncBuffer
	oldSlog, oldOut, oldFlags := slog.Default(), log.Writer(), log.Flags()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() {
		slog.SetDefault(oldSlog)
		log.SetOutput(oldOut) // SetDefault redirected the log package
		log.SetFlags(oldFlags)
	})

	h := func(c *Context[struct{}]) error {
		if c.Update.UpdateID == 7 {
			return errors.New("boom")
		}
		panic("kaboom")
	}
	err := serveResult(t, startServe(context.Background(), closedUpdates(
		serveChatMsg(7, 1, 0),
		serveChatMsg(8, 2, 0),
	), h, nil))
	require.NoError(t, err)
	out := buf.String()
	assert.Contains(t, out, "update_id=7")
	assert.Contains(t, out, "boom")
	assert.Contains(t, out, "update_id=8")
	assert.Contains(t, out, "kaboom")
}

// syncBuffer is a bytes.Buffer safe for concurrent writers.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// Updates with neither a chat nor a user still run, and they are not
// ordered with each other: two of them are blocked at once.
func TestServeUpdatesWithoutChatOrUser(t *testing.T) {
	started := make(chan int, 4)
	release := make(chan struct{})
	var once sync.Once
	unblock := func() { once.Do(func() { close(release) }) }
	defer unblock()

	h := func(c *Context[struct{}]) error {
		started <- c.Update.UpdateID
		if c.Update.UpdateID <= 2 {
			<-release
		}
		return nil
	}
	done := startServe(context.Background(), closedUpdates(
		tgbotapi.Update{UpdateID: 1}, // nothing at all
		tgbotapi.Update{UpdateID: 2, Poll: &tgbotapi.Poll{ID: "p"}},
		tgbotapi.Update{UpdateID: 3, InlineQuery: &tgbotapi.InlineQuery{ID: "q"}}, // no From
		tgbotapi.Update{UpdateID: 4, CallbackQuery: &tgbotapi.CallbackQuery{ID: "cb", InlineMessageID: "m"}},
	), h, failOnError[struct{}](t))

	var got []int
	for range 4 {
		got = append(got, receive(t, started, "a handler"))
	}
	assert.ElementsMatch(t, []int{1, 2, 3, 4}, got, "all ran, 1 and 2 at the same time")
	unblock()
	require.NoError(t, serveResult(t, done))
}

// The Context given to handlers carries Serve's bot and context.
func TestServePassesBotAndContext(t *testing.T) {
	type ctxKey struct{}
	ctx := context.WithValue(context.Background(), ctxKey{}, "v")
	bot := &tgbotapi.BotAPI{}
	var ok atomic.Bool
	h := func(c *Context[struct{}]) error {
		ok.Store(c.Bot == bot && c.Value(ctxKey{}) == "v" && c.Update.UpdateID == 9)
		return nil
	}
	err := Serve(ctx, bot, closedUpdates(serveChatMsg(9, 1, 0)), h, failOnError[struct{}](t))
	require.NoError(t, err)
	assert.True(t, ok.Load())
}

// serveTally is the session of the Serve + Strict test.
type serveTally struct{ N int }

// Serve and Strict sessions together: 1000 updates over 10 chats, each
// update seeing exactly the count of the updates of its chat before it.
func TestServeStrictExactCounts(t *testing.T) {
	const chats, perChat = 10, 100
	var us []tgbotapi.Update
	for seq := range perChat {
		for c := range chats {
			us = append(us, serveChatMsg(len(us)+1, int64(1+c), seq))
		}
	}
	mem := NewMemory[serveTally]()
	h := Strict(Options[serveTally]{Storage: mem})(func(c *Context[serveTally]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		if seq := c.Update.Message.MessageID; s.N != seq {
			return fmt.Errorf("chat %d: message #%d saw count %d", c.Update.Message.Chat.ID, seq, s.N)
		}
		s.N++
		return nil
	})

	err := serveResult(t, startServe(context.Background(), closedUpdates(us...), h, failOnError[serveTally](t)))
	require.NoError(t, err)

	for c := range chats {
		v, found, err := mem.Read(context.Background(), strconv.Itoa(1+c))
		require.NoError(t, err)
		require.True(t, found, "chat %d", 1+c)
		assert.Equal(t, perChat, v.N, "chat %d", 1+c)
	}
}
