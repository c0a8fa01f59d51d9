package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// once panics the first time it is armed and called, then never again.
type once struct{ armed atomic.Bool }

func (o *once) arm() { o.armed.Store(true) }
func (o *once) fire() {
	if o.armed.CompareAndSwap(true, false) {
		panic("injected panic")
	}
}

// panicStore wraps a byte store and panics once in the armed operation.
type panicStore struct {
	StorageAdapter[[]byte]
	read, write, del once
}

func (p *panicStore) Read(ctx context.Context, key string) ([]byte, bool, error) {
	p.read.fire()
	return p.StorageAdapter.Read(ctx, key)
}

func (p *panicStore) Write(ctx context.Context, key string, v []byte) error {
	p.write.fire()
	return p.StorageAdapter.Write(ctx, key, v)
}

func (p *panicStore) Delete(ctx context.Context, key string) error {
	p.del.fire()
	return p.StorageAdapter.Delete(ctx, key)
}

// panicCodec is JSON that panics once in the armed direction.
type panicCodec struct{ marshal, unmarshal once }

func (p *panicCodec) Marshal(v any) ([]byte, error) {
	p.marshal.fire()
	return json.Marshal(v)
}

func (p *panicCodec) Unmarshal(data []byte, v any) error {
	p.unmarshal.fire()
	return json.Unmarshal(data, v)
}

// panicSites is one session setup with a switch for every place a panic
// can come from while an update loads, handles or commits its session.
type panicSites struct {
	store   *panicStore
	codec   *panicCodec
	initial once
	migrate once
	handler once
	opts    Options[counter]
}

func newPanicSites(t *testing.T) *panicSites {
	p := &panicSites{store: &panicStore{StorageAdapter: NewMemory[[]byte]()}, codec: &panicCodec{}}
	// Version 1 migrates from version 0; old data is planted by the test.
	enhanced, err := Enhance[counter](p.store, EnhanceOptions{Migrations: map[float64]Migration{
		1: func(old json.RawMessage) (json.RawMessage, error) { p.migrate.fire(); return old, nil },
	}})
	require.NoError(t, err)
	p.opts = Options[counter]{
		Storage: enhanced,
		Initial: func() counter { p.initial.fire(); return counter{} },
	}
	return p
}

// withCodec switches the setup to Encoded with the panicking codec.
func (p *panicSites) withCodec() { p.opts.Storage = Encoded[counter](p.store, p.codec) }

func (p *panicSites) handle(c *Context[counter]) error {
	s, err := c.Session()
	if err != nil {
		return err
	}
	p.handler.fire()
	s.Count++
	return nil
}

// TestScenarioPanicAnywhereInAnUpdateLeavesTheChatUsable panics once at
// each site (store read, codec, Initial, migration, handler, store write,
// encode) under Strict, Lazy, Multi and LazyMulti; the next update of the
// same chat must run at once and see only the increments that succeeded.
// Before the fix, a panic in the strict load left the chat's lock held:
// the next update waited for ever.
func TestScenarioPanicAnywhereInAnUpdateLeavesTheChatUsable(t *testing.T) {
	sites := []struct {
		name  string
		codec bool // through Encoded with the panicking codec
		fresh bool // the panic needs a session that is not stored yet
		arm   func(p *panicSites)
	}{
		{name: "store read", arm: func(p *panicSites) { p.store.read.arm() }},
		{name: "codec unmarshal", codec: true, arm: func(p *panicSites) { p.codec.unmarshal.arm() }},
		{name: "initial", fresh: true, arm: func(p *panicSites) { p.initial.arm() }},
		{name: "migration", arm: func(p *panicSites) { p.migrate.arm() }},
		{name: "handler", arm: func(p *panicSites) { p.handler.arm() }},
		{name: "store write", arm: func(p *panicSites) { p.store.write.arm() }},
		{name: "codec marshal", codec: true, arm: func(p *panicSites) { p.codec.marshal.arm() }},
	}
	variants := []struct {
		name  string
		key   string // where the chat's count is stored
		build func(p *panicSites) func(ctx context.Context, chat int64) error
	}{
		{"strict", "7", func(p *panicSites) func(context.Context, int64) error { return runner(Strict(p.opts)(p.handle)) }},
		{"lazy", "7", func(p *panicSites) func(context.Context, int64) error { return runner(Lazy(p.opts)(p.handle)) }},
		{"multi", "-7", func(p *panicSites) func(context.Context, int64) error { return multiOver(false, p) }},
		{"lazy multi", "-7", func(p *panicSites) func(context.Context, int64) error { return multiOver(true, p) }},
	}
	for _, v := range variants {
		for _, site := range sites {
			t.Run(v.name+"/"+site.name, func(t *testing.T) {
				p := newPanicSites(t)
				if site.codec {
					p.withCodec()
				}
				h := v.build(p)
				const chat = 7
				want := 0
				if !site.fresh {
					require.NoError(t, within(h, chat))
					want++
					if !site.codec {
						// Stored as version 0, so the migration to 1 runs.
						require.NoError(t, p.store.StorageAdapter.Write(context.Background(), v.key, []byte(`{"__d":{"Count":1}}`)))
					}
				}
				site.arm(p)
				assert.Panics(t, func() { _ = within(h, chat) }, "the injected panic reaches the caller")
				for range 3 {
					require.NoError(t, within(h, chat), "the chat is usable right after the panic")
					want++
				}
				got, found, err := p.opts.Storage.Read(context.Background(), v.key)
				require.NoError(t, err)
				require.True(t, found)
				assert.Equal(t, want, got.Count, "only the updates that succeeded counted")
			})
		}
	}
}

func runner(h Handler[counter]) func(context.Context, int64) error {
	return func(ctx context.Context, chat int64) error {
		return h(NewContext[counter](ctx, nil, msg(chat, chat)))
	}
}

// multiOver is a multi session over the sites' storage: a fragment keyed
// by user (on a store of its own) and the chat's, which can panic.
func multiOver(lazy bool, p *panicSites) func(context.Context, int64) error {
	type both struct {
		User counter
		Chat counter
	}
	user := NewFragment("user", func(b *both) *counter { return &b.User }, Options[counter]{Key: ByUser})
	chat := NewFragment("chat", func(b *both) *counter { return &b.Chat }, Options[counter]{
		Storage: p.opts.Storage, Initial: p.opts.Initial, Prefix: "-",
	})
	mw := Multi[both]
	if lazy {
		mw = LazyMulti[both]
	}
	h := mw(user, chat)(func(c *Context[both]) error {
		u, err := user.Get(c)
		if err != nil {
			return err
		}
		s, err := chat.Get(c)
		if err != nil {
			return err
		}
		p.handler.fire()
		u.Count++
		s.Count++
		return nil
	})
	return func(ctx context.Context, id int64) error {
		return h(NewContext[both](ctx, nil, msg(id, id)))
	}
}

// within runs one update of chat; waiting for the chat's lock for longer
// than 10 s counts as wedged.
func within(h func(context.Context, int64) error, chat int64) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	err := h(ctx, chat)
	if errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("wedged: %w", err)
	}
	return err
}

// TestScenarioEmptyKeyIsNoSession: a key function that returns ("", true)
// used to put every chat into one session (Memory key "", Redis key
// "prefix{}"), leaking one user's data to all others. Now it is no key:
// the access fails with ErrNoSessionKey saying why, and nothing is read or
// written, under every variant and for each fragment of a multi session.
func TestScenarioEmptyKeyIsNoSession(t *testing.T) {
	empty := func(*tgbotapi.Update) (string, bool) { return "", true }
	rec := newRecorder[counter]()
	opts := Options[counter]{Storage: rec, Key: empty}
	for name, mw := range map[string]Middleware[counter]{"strict": Strict(opts), "lazy": Lazy(opts)} {
		t.Run(name, func(t *testing.T) {
			var accessErr error
			h := mw(func(c *Context[counter]) error {
				_, accessErr = c.Session()
				return accessErr
			})
			for chat := int64(1); chat <= 2; chat++ {
				err := run(h, msg(chat, chat))
				require.ErrorIs(t, err, ErrNoSessionKey)
				assert.Contains(t, err.Error(), "empty key")
				assert.ErrorIs(t, accessErr, ErrNoSessionKey)
			}
			assert.Empty(t, rec.take(), "no storage call for an empty key")
		})
	}
	t.Run("multi fragment", func(t *testing.T) {
		type both struct{ A, B counter }
		a := NewFragment("a", func(b *both) *counter { return &b.A }, Options[counter]{Storage: rec})
		b := NewFragment("b", func(b *both) *counter { return &b.B }, Options[counter]{Storage: rec, Key: empty})
		for name, mw := range map[string]Middleware[both]{"multi": Multi(a, b), "lazy multi": LazyMulti(a, b)} {
			var errA, errB error
			h := mw(func(c *Context[both]) error {
				s, err := a.Get(c)
				errA = err
				if err == nil {
					s.Count++
				}
				_, errB = b.Get(c)
				return nil
			})
			require.NoError(t, run(h, msg(1, 1)), name)
			assert.NoError(t, errA, name)
			require.ErrorIs(t, errB, ErrNoSessionKey, name)
			assert.Contains(t, errB.Error(), `fragment "b"`, name)
			assert.Contains(t, errB.Error(), "empty key", name)
			for _, c := range rec.take() {
				assert.NotEqual(t, "b:", c.Key, "%s: nothing under the empty key", name)
			}
		}
		_, found := rec.get("b:")
		assert.False(t, found)
	})
}

// configPanic runs build and returns the error it panicked with.
func configPanic(build func()) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err, _ = r.(error)
			if err == nil {
				err = fmt.Errorf("panicked with %v", r)
			}
		}
	}()
	build()
	return nil
}

type withChan struct {
	Name    string
	Updates chan int
}

type withNestedFunc struct {
	Steps []struct{ Do func() }
}

// TestScenarioConfigurationMistakesFailWhenBuilt: each of these used to
// build fine and then fail on the first update (a bare nil dereference, or
// an error on every update, even updates that never touched the session).
// Each is now a panic with an error wrapping ErrConfig when the middleware
// or store is built, naming what is wrong.
func TestScenarioConfigurationMistakesFailWhenBuilt(t *testing.T) {
	cases := []struct {
		name  string
		build func()
		says  string
	}{
		{"Encoded over nil", func() { Encoded[counter](nil, nil) }, "Encoded: nil store"},
		{"Encoded over a typed nil", func() { Encoded[counter]((*Memory[[]byte])(nil), nil) }, "Encoded: nil store"},
		{"typed nil Memory as Storage", func() { Strict(Options[counter]{Storage: (*Memory[counter])(nil)}) }, "Options.Storage is a nil *session.Memory"},
		{"typed nil store in a fragment", func() {
			NewFragment("cart", func(c *counter) *counter { return c }, Options[counter]{Storage: (*Memory[counter])(nil)})
		}, `fragment "cart": Options.Storage`},
		{"Strict with a nil handler", func() { Strict(Options[counter]{})(nil) }, "nil handler"},
		{"Lazy with a nil handler", func() { Lazy(Options[counter]{})(nil) }, "nil handler"},
		{"Multi with a nil handler", func() {
			Multi(NewFragment("a", func(c *counter) *counter { return c }, Options[counter]{}))(nil)
		}, "nil handler"},
		{"ChatMigration with a nil handler", func() { ChatMigration(Options[counter]{Storage: NewMemory[counter]()})(nil) }, "nil handler"},
		{"pointer session without Initial", func() { Strict(Options[*counter]{}) }, "zero value of *session.counter is nil"},
		{"map session without Initial", func() { Strict(Options[map[string]int]{}) }, "zero value of map[string]int is nil"},
		{"channel in Memory", func() { Strict(Options[withChan]{}) }, "Updates"},
		{"channel through JSON", func() { Strict(Options[withChan]{Storage: Encoded[withChan](NewMemory[[]byte](), nil)}) }, "withChan.Updates is a chan int"},
		{"func deep inside, through Enhance", func() {
			s, err := Enhance[withNestedFunc](NewMemory[[]byte](), EnhanceOptions{TTL: time.Hour})
			require.NoError(t, err)
			Strict(Options[withNestedFunc]{Storage: s})
		}, "withNestedFunc.Steps[].Do is a func()"},
		{"negative Memory TTL", func() { NewMemory[counter](MemoryOptions{TTL: -time.Second}) }, "negative TTL"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := configPanic(tc.build)
			require.ErrorIs(t, err, ErrConfig)
			assert.Contains(t, err.Error(), tc.says)
		})
	}
	t.Run("Enhance over a typed nil", func(t *testing.T) {
		_, err := Enhance[counter]((*Memory[[]byte])(nil), EnhanceOptions{TTL: time.Hour})
		require.ErrorIs(t, err, ErrConfig)
	})
	t.Run("pointer session with Initial is fine", func(t *testing.T) {
		h := Strict(Options[*counter]{Initial: func() *counter { return &counter{} }})(func(c *Context[*counter]) error {
			s, err := c.Session()
			if err == nil {
				(*s).Count++
			}
			return err
		})
		assert.NoError(t, run(h, msg(1, 1)))
	})
}
