package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"strconv"
	"sync"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/telegramtest"
)

// waitLimit bounds every wait in these tests; it is reached only when a
// test fails.
const waitLimit = 20 * time.Second

// chatMsg is message seq from user id in their private chat id.
func chatMsg(updateID int, id int64, seq int) tgbotapi.Update {
	return tgbotapi.Update{UpdateID: updateID, Message: &tgbotapi.Message{
		MessageID: seq,
		From:      &tgbotapi.User{ID: id},
		Chat:      &tgbotapi.Chat{ID: id, Type: "private"},
		Text:      strconv.Itoa(seq),
	}}
}

// inlineQuery is an inline query from user id: a user but no chat.
func inlineQuery(updateID int, id int64, seq int) tgbotapi.Update {
	return tgbotapi.Update{UpdateID: updateID, InlineQuery: &tgbotapi.InlineQuery{
		ID:    strconv.Itoa(seq),
		From:  &tgbotapi.User{ID: id},
		Query: strconv.Itoa(seq),
	}}
}

// sliceSource puts its updates in order, then waits for the stop. It
// counts what the runner took and remembers what it refused.
type sliceSource struct {
	next func(i int) (tgbotapi.Update, bool) // the i-th update, if any

	mu       sync.Mutex
	taken    int
	done     int
	refused  error
	finished chan struct{} // closed when every update was put
	closed   bool
	// dispatchers yields the dispatcher of the Run the source serves, so
	// bound tests can read its counters.
	dispatchers chan *dispatcher
}

func newSliceSource(us ...tgbotapi.Update) *sliceSource {
	return genSource(func(i int) (tgbotapi.Update, bool) {
		if i >= len(us) {
			return tgbotapi.Update{}, false
		}
		return us[i], true
	})
}

// genSource makes updates on demand, so a test can offer many without
// holding them all.
func genSource(next func(i int) (tgbotapi.Update, bool)) *sliceSource {
	return &sliceSource{next: next, finished: make(chan struct{}), dispatchers: make(chan *dispatcher, 1)}
}

func (s *sliceSource) Receive(ctx context.Context, feed *Feed) error {
	select {
	case s.dispatchers <- feed.d:
	default:
	}
	for i := 0; ; i++ {
		u, ok := s.next(i)
		if !ok {
			break
		}
		if err := feed.Put(ctx, &u, nil, func(bool) {
			s.mu.Lock()
			s.done++
			s.mu.Unlock()
		}); err != nil {
			s.mu.Lock()
			s.refused = err
			s.mu.Unlock()
			return nil
		}
		s.mu.Lock()
		s.taken++
		s.mu.Unlock()
	}
	close(s.finished)
	<-ctx.Done()
	return nil
}

func (s *sliceSource) Close(context.Context) error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	return nil
}

func (s *sliceSource) counts() (taken, done int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.taken, s.done
}

// startRun runs Run in a goroutine; the channel yields its result.
func startRun[S any](ctx context.Context, bot *tgbotapi.BotAPI, sess Session[S], h session.Handler[S], opts Options) <-chan error {
	done := make(chan error, 1)
	go func() { done <- Run(ctx, bot, sess, h, opts) }()
	return done
}

// newSession builds a session from opts, failing the test on an error.
func newSession[S any](t testing.TB, opts session.Options[S]) *session.Session[S] {
	t.Helper()
	sess, err := session.New(opts)
	require.NoError(t, err)
	return sess
}

// byChat is the default session: per chat, in a Memory of its own.
func byChat(t testing.TB) *session.Session[struct{}] {
	return newSession(t, session.Options[struct{}]{})
}

// tally is the session of the load tests.
type tally struct{ N int }

// stored reads the tally saved under key in mem; found is false if none.
func stored(t testing.TB, mem *session.Memory, key string) (v tally, found bool) {
	t.Helper()
	data, found, err := mem.Read(context.Background(), key)
	require.NoError(t, err)
	if found {
		require.NoError(t, json.Unmarshal(data, &v), "stored %q", data)
	}
	return v, found
}

// result waits for the result of startRun.
func result(t *testing.T, done <-chan error) error {
	t.Helper()
	select {
	case err := <-done:
		return err
	case <-time.After(waitLimit):
		t.Fatal("Run did not return")
		return nil
	}
}

// receive waits for a value on ch.
func receive[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(waitLimit):
		t.Fatalf("timed out waiting for %s", what)
		var zero T
		return zero
	}
}

// eventually waits until cond holds; it fails the test after waitLimit.
// It is a wait, not a timing assertion.
func eventually(t *testing.T, cond func() bool, what string) {
	t.Helper()
	require.Eventually(t, cond, waitLimit, time.Millisecond, what)
}

// fakeBot starts a fake Telegram and a real client for it.
func fakeBot(t *testing.T) (*telegramtest.Server, *tgbotapi.BotAPI) {
	t.Helper()
	srv := telegramtest.NewServer()
	t.Cleanup(srv.Close)
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	require.NoError(t, err)
	return srv, bot
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

// errorLog collects OnError calls.
type errorLog struct {
	mu   sync.Mutex
	errs map[int]error // by update id; source errors under 0
	keys map[int]string
}

func newErrorLog() *errorLog {
	return &errorLog{errs: map[int]error{}, keys: map[int]string{}}
}

func (l *errorLog) onError(_ context.Context, u *tgbotapi.Update, key string, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	id := 0
	if u != nil {
		id = u.UpdateID
	}
	l.errs[id] = err
	l.keys[id] = key
}

func (l *errorLog) snapshot() map[int]error {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := make(map[int]error, len(l.errs))
	for k, v := range l.errs {
		out[k] = v
	}
	return out
}
