package session

import (
	"context"
	"sync"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// call is one storage call seen by a recorder.
type call[T any] struct {
	Op    string // "read", "write" or "delete"
	Key   string
	Value T // written value; zero for reads and deletes
}

// recorder is a StorageAdapter test double over a Memory store: it records
// every call, can delay each call (honouring ctx) and can fail calls.
type recorder[T any] struct {
	inner *Memory[T]
	delay time.Duration
	fail  func(op, key string) error // nil: never fail

	mu    sync.Mutex
	calls []call[T]
	ctxs  []context.Context // ctxs[i] is the context calls[i] was made with
}

func newRecorder[T any]() *recorder[T] { return &recorder[T]{inner: NewMemory[T]()} }

func (r *recorder[T]) do(ctx context.Context, op, key string, v T) error {
	r.mu.Lock()
	r.calls = append(r.calls, call[T]{op, key, v})
	r.ctxs = append(r.ctxs, ctx)
	fail := r.fail
	r.mu.Unlock()
	if r.delay > 0 {
		t := time.NewTimer(r.delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail(op, key)
	}
	return nil
}

func (r *recorder[T]) Read(ctx context.Context, key string) (T, bool, error) {
	var zero T
	if err := r.do(ctx, "read", key, zero); err != nil {
		return zero, false, err
	}
	return r.inner.Read(ctx, key)
}

func (r *recorder[T]) Write(ctx context.Context, key string, v T) error {
	if err := r.do(ctx, "write", key, v); err != nil {
		return err
	}
	return r.inner.Write(ctx, key, v)
}

func (r *recorder[T]) Delete(ctx context.Context, key string) error {
	var zero T
	if err := r.do(ctx, "delete", key, zero); err != nil {
		return err
	}
	return r.inner.Delete(ctx, key)
}

// take returns the calls recorded so far and forgets them.
func (r *recorder[T]) take() []call[T] {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls, r.ctxs = nil, nil
	return c
}

// ops lists the calls recorded so far as "op key", oldest first, without
// forgetting them.
func (r *recorder[T]) ops() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var ops []string
	for _, c := range r.calls {
		ops = append(ops, c.Op+" "+c.Key)
	}
	return ops
}

// contexts returns the contexts of the calls recorded so far, oldest
// first, without forgetting them.
func (r *recorder[T]) contexts() []context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]context.Context(nil), r.ctxs...)
}

// put stores v in the inner store without recording a call: it sets up
// what the code under test will find.
func (r *recorder[T]) put(key string, v T) {
	if err := r.inner.Write(context.Background(), key, v); err != nil {
		panic(err)
	}
}

// get reads key from the inner store without recording a call: it shows
// what the code under test left there.
func (r *recorder[T]) get(key string) (T, bool) {
	v, ok, err := r.inner.Read(context.Background(), key)
	if err != nil {
		panic(err)
	}
	return v, ok
}

// testClock is a fake clock for WithClock and EnhanceOptions.Clock: time
// moves only when told to. It starts at Unix millisecond 1_700_000_000_000,
// which the expiries in the Enhance tests' golden envelopes count from.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func newTestClock() *testClock { return &testClock{now: time.UnixMilli(1_700_000_000_000)} }

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

func rd[T any](key string) call[T]      { return call[T]{Op: "read", Key: key} }
func wr[T any](key string, v T) call[T] { return call[T]{Op: "write", Key: key, Value: v} }
func del[T any](key string) call[T]     { return call[T]{Op: "delete", Key: key} }
func msg(chatID, userID int64) tgbotapi.Update {
	return tgbotapi.Update{Message: &tgbotapi.Message{
		Chat: &tgbotapi.Chat{ID: chatID},
		From: &tgbotapi.User{ID: userID},
		Text: "hi",
	}}
}

// run passes one update through h with a fresh Context.
func run[S any](h Handler[S], u tgbotapi.Update) error {
	return h(NewContext[S](context.Background(), nil, u))
}

// newTTLMemory is a Memory with a TTL and a fake clock.
func newTTLMemory[T any](ttl time.Duration, clock func() time.Time) *Memory[T] {
	return NewMemory[T](MemoryOptions{TTL: ttl, Clock: clock})
}
