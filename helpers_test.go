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
}

func newRecorder[T any]() *recorder[T] { return &recorder[T]{inner: NewMemory[T]()} }

func (r *recorder[T]) do(ctx context.Context, op, key string, v T) error {
	r.mu.Lock()
	r.calls = append(r.calls, call[T]{op, key, v})
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
	r.calls = nil
	return c
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
