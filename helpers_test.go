package session

import (
	"context"
	"encoding/json"
	"iter"
	"sync"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/require"
)

// call is one storage call seen by a recorder.
type call struct {
	Op    string // "read", "write", "delete"; "writettl", "touch" on an Expirer
	Key   string
	Value string        // written bytes; "" for reads, deletes and touches
	TTL   time.Duration // for writettl and touch
}

func rd(key string) call        { return call{Op: "read", Key: key} }
func wr(key, value string) call { return call{Op: "write", Key: key, Value: value} }
func del(key string) call       { return call{Op: "delete", Key: key} }
func touch(key string, ttl time.Duration) call {
	return call{Op: "touch", Key: key, TTL: ttl}
}
func wrTTL(key, value string, ttl time.Duration) call {
	return call{Op: "writettl", Key: key, Value: value, TTL: ttl}
}

// recorder is a byte Store test double with no capabilities at all (no
// Locker, Expirer or Lister: the three methods only) over a Memory store:
// it records every call, can delay each call (honouring ctx) and can fail
// calls.
type recorder struct {
	inner *Memory
	delay time.Duration
	fail  func(op, key string) error // nil: never fail

	mu    sync.Mutex
	calls []call
	ctxs  []context.Context // ctxs[i] is the context calls[i] was made with
}

func newRecorder(opts ...MemoryOptions) *recorder { return &recorder{inner: NewMemory(opts...)} }

func (r *recorder) do(ctx context.Context, c call) error {
	r.mu.Lock()
	r.calls = append(r.calls, c)
	r.ctxs = append(r.ctxs, ctx)
	fail, delay := r.fail, r.delay
	r.mu.Unlock()
	if delay > 0 {
		t := time.NewTimer(delay)
		defer t.Stop()
		select {
		case <-t.C:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if fail != nil {
		return fail(c.Op, c.Key)
	}
	return nil
}

func (r *recorder) Read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := r.do(ctx, rd(key)); err != nil {
		return nil, false, err
	}
	return r.inner.Read(ctx, key)
}

func (r *recorder) Write(ctx context.Context, key string, v []byte) error {
	if err := r.do(ctx, wr(key, string(v))); err != nil {
		return err
	}
	return r.inner.Write(ctx, key, v)
}

func (r *recorder) Delete(ctx context.Context, key string) error {
	if err := r.do(ctx, del(key)); err != nil {
		return err
	}
	return r.inner.Delete(ctx, key)
}

// take returns the calls recorded so far and forgets them.
func (r *recorder) take() []call {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls
	r.calls, r.ctxs = nil, nil
	return c
}

// ops lists the calls recorded so far as "op key", oldest first, without
// forgetting them.
func (r *recorder) ops() []string {
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
func (r *recorder) contexts() []context.Context {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]context.Context(nil), r.ctxs...)
}

// put stores raw bytes in the inner store without recording a call: it
// sets up what the code under test will find.
func (r *recorder) put(key, raw string) {
	if err := r.inner.Write(context.Background(), key, []byte(raw)); err != nil {
		panic(err)
	}
}

// get reads key from the inner store without recording a call: it shows
// what the code under test left there.
func (r *recorder) get(key string) (string, bool) {
	v, ok, err := r.inner.Read(context.Background(), key)
	if err != nil {
		panic(err)
	}
	return string(v), ok
}

// expRecorder is a recorder that is also an Expirer, as Redis or
// PostgreSQL are: it records WriteTTL and Touch, and its inner Memory
// expires them.
type expRecorder struct{ *recorder }

func newExpRecorder(clock func() time.Time) expRecorder {
	return expRecorder{newRecorder(MemoryOptions{Clock: clock})}
}

func (r expRecorder) WriteTTL(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	if err := r.do(ctx, wrTTL(key, string(v), ttl)); err != nil {
		return err
	}
	return r.inner.WriteTTL(ctx, key, v, ttl)
}

func (r expRecorder) Touch(ctx context.Context, key string, ttl time.Duration) error {
	if err := r.do(ctx, touch(key, ttl)); err != nil {
		return err
	}
	return r.inner.Touch(ctx, key, ttl)
}

// plainStore is a byte store of a user's own with no capabilities: the
// middleware locks it in the process-wide table and keeps a TTL in
// grammY's envelope.
type plainStore struct{ m *Memory }

func newPlainStore(opts ...MemoryOptions) plainStore { return plainStore{NewMemory(opts...)} }

func (p plainStore) Read(ctx context.Context, k string) ([]byte, bool, error) {
	return p.m.Read(ctx, k)
}
func (p plainStore) Write(ctx context.Context, k string, v []byte) error { return p.m.Write(ctx, k, v) }
func (p plainStore) Delete(ctx context.Context, k string) error          { return p.m.Delete(ctx, k) }

// listStore is a plainStore that can list its keys, for Session.Entries.
type listStore struct{ plainStore }

func (l listStore) Keys(ctx context.Context) iter.Seq2[string, error] { return l.m.Keys(ctx) }

// testClock is a fake clock for Options.Clock and MemoryOptions.Clock:
// time moves only when told to. It starts at Unix millisecond
// 1_700_000_000_000, which the expiries in the golden envelopes count
// from.
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

// mustNew builds a session from opts, failing t on a configuration error.
func mustNew[S any](t testing.TB, opts Options[S]) *Session[S] {
	t.Helper()
	s, err := New(opts)
	require.NoError(t, err)
	return s
}

// with builds a session from opts and wraps h with it.
func with[S any](t testing.TB, opts Options[S], h Handler[S]) Handler[S] {
	t.Helper()
	return mustNew(t, opts).Middleware(h)
}

// lazy returns opts with Lazy set.
func lazy[S any](opts Options[S]) Options[S] {
	opts.Lazy = true
	return opts
}

// mustMulti builds a multi session of fragments and wraps h with it.
func mustMulti[S any](t testing.TB, opts Options[S], h Handler[S], fragments ...Part[S]) Handler[S] {
	t.Helper()
	s, err := NewMulti(opts, fragments...)
	require.NoError(t, err)
	return s.Middleware(h)
}

// strictAndLazy names the two loading modes, for table tests.
var strictAndLazy = map[string]bool{"strict": false, "lazy": true}

// rawOf reads the stored bytes of key from store without going through a
// session.
func rawOf(t testing.TB, store Store, key string) (string, bool) {
	t.Helper()
	v, ok, err := store.Read(context.Background(), key)
	require.NoError(t, err)
	return string(v), ok
}

// decodeStored decodes stored bytes, bare or in grammY's envelope, into
// a value of T.
func decodeStored[T any](t testing.TB, raw string) T {
	t.Helper()
	env, err := unwrap([]byte(raw))
	require.NoError(t, err, "stored %q", raw)
	var v T
	require.NoError(t, json.Unmarshal(env.data, &v), "stored %q", raw)
	return v
}

// countIn returns the count stored under key in store (0 if missing).
func countIn(t testing.TB, store Store, key string) int {
	t.Helper()
	raw, ok := rawOf(t, store, key)
	if !ok {
		return 0
	}
	return decodeStored[counter](t, raw).Count
}

// readCount is countIn as a function, for hammer.
func readCount(t testing.TB, store Store, key string) func() int {
	return func() int { return countIn(t, store, key) }
}

// Set moves the clock to t.
func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

// tableOf returns the lock table the middleware locks store's keys in
// when store has no Locker: its own for Memory, else the table of the
// store at the bottom of its Unwrap chain.
func tableOf(store Store) *keyLocks[string] {
	r := root(store)
	return tableFor(r, storeIdentity(r))
}

// heldIn counts the keys of store held in its lock table.
func heldIn(store Store) int {
	_, held := tableOf(store).size()
	return held
}

// waitingIn counts the updates waiting for a key of store's lock table.
func waitingIn(store Store) int {
	l := tableOf(store)
	n := 0
	for i := range l.shards {
		s := &l.shards[i]
		s.mu.Lock()
		for _, kl := range s.locks {
			n += len(kl.waiters)
		}
		s.mu.Unlock()
	}
	return n
}
