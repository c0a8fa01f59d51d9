package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

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
	Store
	read, write, del once
}

func (p *panicStore) Read(ctx context.Context, key string) ([]byte, bool, error) {
	p.read.fire()
	return p.Store.Read(ctx, key)
}

func (p *panicStore) Write(ctx context.Context, key string, v []byte) error {
	p.write.fire()
	return p.Store.Write(ctx, key, v)
}

func (p *panicStore) Delete(ctx context.Context, key string) error {
	p.del.fire()
	return p.Store.Delete(ctx, key)
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

// panicLocker is a store with a Locker of its own whose lease panics once
// in the armed operation: what a buggy adapter does.
type panicLocker struct {
	*lockStore
	commit, release once
}

func (p *panicLocker) Lock(ctx context.Context, key, mark string) (Lease, error) {
	l, err := p.lockStore.Lock(ctx, key, mark)
	if err != nil {
		return nil, err
	}
	return &panicLease{Lease: l, p: p}, nil
}

type panicLease struct {
	Lease
	p *panicLocker
}

func (l *panicLease) Commit(ctx context.Context, c Change) error {
	defer l.p.commit.fire() // after the commit, as a panic in a driver's reply would
	return l.Lease.Commit(ctx, c)
}

func (l *panicLease) Release() {
	l.Lease.Release()
	l.p.release.fire()
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

func newPanicSites() *panicSites {
	p := &panicSites{store: &panicStore{Store: NewMemory()}, codec: &panicCodec{}}
	// Version 1 migrates from version 0; old data is planted by the test.
	p.opts = Options[counter]{
		Storage: p.store,
		Initial: func() counter { p.initial.fire(); return counter{} },
		Migrations: map[float64]Migration{
			1: func(old json.RawMessage) (json.RawMessage, error) { p.migrate.fire(); return old, nil },
		},
	}
	return p
}

// withCodec switches the setup to the panicking codec, which the envelope
// of migrations cannot use.
func (p *panicSites) withCodec() { p.opts.Codec, p.opts.Migrations = p.codec, nil }

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
// encode) under strict, lazy, multi and lazy multi sessions; the next
// update of the same chat must run at once and see only the increments
// that succeeded. Before the fix, a panic in the strict load left the
// chat's lock held: the next update waited for ever.
func TestScenarioPanicAnywhereInAnUpdateLeavesTheChatUsable(t *testing.T) {
	sites := []struct {
		name  string
		codec bool // with the panicking codec
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
		build func(t *testing.T, p *panicSites) func(ctx context.Context, chat int64) error
	}{
		{"strict", "7", func(t *testing.T, p *panicSites) func(context.Context, int64) error {
			return runner(with(t, p.opts, p.handle))
		}},
		{"lazy", "7", func(t *testing.T, p *panicSites) func(context.Context, int64) error {
			return runner(with(t, lazy(p.opts), p.handle))
		}},
		{"multi", "-7", func(t *testing.T, p *panicSites) func(context.Context, int64) error { return multiOver(t, false, p) }},
		{"lazy multi", "-7", func(t *testing.T, p *panicSites) func(context.Context, int64) error { return multiOver(t, true, p) }},
	}
	for _, v := range variants {
		for _, site := range sites {
			t.Run(v.name+"/"+site.name, func(t *testing.T) {
				p := newPanicSites()
				if site.codec {
					p.withCodec()
				}
				h := v.build(t, p)
				const chat = 7
				want := 0
				if !site.fresh {
					require.NoError(t, within(h, chat))
					want++
					if !site.codec {
						// Stored as version 0, so the migration to 1 runs.
						require.NoError(t, p.store.Store.Write(context.Background(), v.key, []byte(`{"__d":{"Count":1}}`)))
					}
				}
				site.arm(p)
				assert.Panics(t, func() { _ = within(h, chat) }, "the injected panic reaches the caller")
				for range 3 {
					require.NoError(t, within(h, chat), "the chat is usable right after the panic")
					want++
				}
				assert.Equal(t, want, countIn(t, p.store.Store, v.key), "only the updates that succeeded counted")
				assert.Zero(t, heldIn(p.store), "no lock left held")
			})
		}
	}
}

// TestScenarioPanicInALeaseLeavesTheChatUsable: a store's own lease that
// panics in Commit or Release (a buggy adapter) still has every other
// lease of the update released, and the chat is usable at once.
func TestScenarioPanicInALeaseLeavesTheChatUsable(t *testing.T) {
	type both struct{ A, B counter }
	for _, site := range []string{"commit", "release"} {
		t.Run(site, func(t *testing.T) {
			ls := &panicLocker{lockStore: newLockStore()}
			other := NewMemory()
			a := NewFragment("a", func(b *both) *counter { return &b.A }, Options[counter]{Storage: ls})
			b := NewFragment("b", func(b *both) *counter { return &b.B }, Options[counter]{Storage: other})
			fail := false
			h := mustMulti(t, Options[both]{}, func(c *Context[both]) error {
				s, err := c.Session()
				if err != nil {
					return err
				}
				s.A.Count++
				s.B.Count++
				if fail {
					return errors.New("handler failed") // so the leases are released, not committed
				}
				return nil
			}, a, b)
			require.NoError(t, within(runnerOf(h), 7))
			if site == "commit" {
				ls.commit.arm()
			} else {
				ls.release.arm()
				fail = true
			}
			assert.Panics(t, func() { _ = within(runnerOf(h), 7) })
			fail = false
			require.NoError(t, within(runnerOf(h), 7), "the chat is usable right after the panic")
			assert.Zero(t, heldIn(other), "the other store's lock was released")
			assert.Empty(t, ls.heldKeys(), "the lease was ended")
		})
	}
}

func runner(h Handler[counter]) func(context.Context, int64) error { return runnerOf(h) }

func runnerOf[S any](h Handler[S]) func(context.Context, int64) error {
	return func(ctx context.Context, chat int64) error {
		return h(NewContext[S](ctx, nil, msg(chat, chat)))
	}
}

// multiOver is a multi session over the sites' storage: a fragment keyed
// by user (on a store of its own) and the chat's, which can panic.
func multiOver(t *testing.T, isLazy bool, p *panicSites) func(context.Context, int64) error {
	type both struct {
		User counter
		Chat counter
	}
	user := NewFragment("user", func(b *both) *counter { return &b.User }, Options[counter]{Key: ByUser})
	chat := NewFragment("chat", func(b *both) *counter { return &b.Chat }, Options[counter]{
		Storage: p.opts.Storage, Codec: p.opts.Codec, Initial: p.opts.Initial, Migrations: p.opts.Migrations, Prefix: "-",
	})
	h := mustMulti(t, Options[both]{Lazy: isLazy}, func(c *Context[both]) error {
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
	}, user, chat)
	return runnerOf(h)
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
	empty := func(Update) (string, bool) { return "", true }
	rec := newRecorder()
	for name, isLazy := range strictAndLazy {
		t.Run(name, func(t *testing.T) {
			sess := mustNew(t, Options[counter]{Storage: rec, Key: empty, Lazy: isLazy})
			var accessErr error
			h := sess.Middleware(func(c *Context[counter]) error {
				_, accessErr = c.Session()
				return accessErr
			})
			for chat := int64(1); chat <= 2; chat++ {
				err := run(h, msg(chat, chat))
				require.ErrorIs(t, err, ErrNoSessionKey)
				assert.Contains(t, err.Error(), "empty key")
				assert.ErrorIs(t, accessErr, ErrNoSessionKey)
				u := msg(chat, chat)
				_, ok := sess.Key(Update{Update: &u})
				assert.False(t, ok, "Session.Key reports no key either")
			}
			assert.Empty(t, rec.take(), "no storage call for an empty key")
		})
	}
	t.Run("multi fragment", func(t *testing.T) {
		type both struct{ A, B counter }
		a := NewFragment("a", func(b *both) *counter { return &b.A }, Options[counter]{Storage: rec})
		b := NewFragment("b", func(b *both) *counter { return &b.B }, Options[counter]{Storage: rec, Key: empty})
		for name, isLazy := range map[string]bool{"multi": false, "lazy multi": true} {
			var errA, errB error
			h := mustMulti(t, Options[both]{Lazy: isLazy}, func(c *Context[both]) error {
				s, err := a.Get(c)
				errA = err
				if err == nil {
					s.Count++
				}
				_, errB = b.Get(c)
				return nil
			}, a, b)
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
// Each is now an error wrapping ErrConfig from New or NewMulti, naming
// what is wrong; a nil handler, where Middleware has no error to return,
// is a panic with such an error.
func TestScenarioConfigurationMistakesFailWhenBuilt(t *testing.T) {
	one := func(c *counter) *counter { return c }
	ok := Migrate(func(c counter) (counter, error) { return c, nil })
	cases := []struct {
		name  string
		build func() error
		says  string
	}{
		{"typed nil Memory as Storage", func() error { _, err := New(Options[counter]{Storage: (*Memory)(nil)}); return err },
			"Options.Storage is a nil *session.Memory"},
		{"typed nil store in a fragment", func() error {
			_, err := NewMulti(Options[counter]{}, NewFragment("cart", one, Options[counter]{Storage: (*recorder)(nil)}))
			return err
		}, `fragment "cart": Options.Storage is a nil *session.recorder`},
		{"typed nil Codec", func() error { _, err := New(Options[counter]{Codec: (*panicCodec)(nil)}); return err },
			"Options.Codec is a nil *session.panicCodec"},
		{"pointer session without Initial", func() error { _, err := New(Options[*counter]{}); return err },
			"zero value of *session.counter is nil"},
		{"map session without Initial", func() error { _, err := New(Options[map[string]int]{}); return err },
			"zero value of map[string]int is nil"},
		{"channel in Memory", func() error { _, err := New(Options[withChan]{}); return err }, "withChan.Updates is a chan int"},
		{"channel in a byte store", func() error { _, err := New(Options[withChan]{Storage: newPlainStore()}); return err },
			"withChan.Updates is a chan int"},
		{"func deep inside, with a TTL", func() error {
			_, err := New(Options[withNestedFunc]{Storage: newPlainStore(), TTL: time.Hour})
			return err
		}, "withNestedFunc.Steps[].Do is a func()"},
		{"func in a fragment", func() error {
			type both struct{ W withNestedFunc }
			_, err := NewMulti(Options[both]{}, NewFragment("w", func(b *both) *withNestedFunc { return &b.W }, Options[withNestedFunc]{}))
			return err
		}, `fragment "w": sessions are stored as JSON: session.withNestedFunc.Steps[].Do is a func()`},
		{"negative TTL", func() error { _, err := New(Options[counter]{TTL: -time.Second}); return err }, "negative Options.TTL"},
		{"TTL below the envelope's millisecond", func() error {
			_, err := New(Options[counter]{Storage: newPlainStore(), TTL: time.Microsecond})
			return err
		}, "below the envelope's resolution of 1ms"},
		{"a codec of its own with Migrations", func() error {
			_, err := New(Options[counter]{Codec: &panicCodec{}, Migrations: map[float64]Migration{1: ok}})
			return err
		}, "needs the JSON codec, not *session.panicCodec"},
		{"a codec of its own with an envelope TTL", func() error {
			_, err := New(Options[counter]{Storage: newPlainStore(), Codec: &panicCodec{}, TTL: time.Hour})
			return err
		}, "needs the JSON codec"},
		{"empty migrations", func() error { _, err := New(Options[counter]{Migrations: map[float64]Migration{}}); return err },
			"Migrations is empty"},
		{"NewMulti with a Storage of its own", func() error {
			_, err := NewMulti(Options[counter]{Storage: NewMemory()}, NewFragment("a", one, Options[counter]{}))
			return err
		}, "belong to each fragment's options"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var err error
			require.NotPanics(t, func() { err = tc.build() })
			require.ErrorIs(t, err, ErrConfig)
			assert.Contains(t, err.Error(), tc.says)
		})
	}

	t.Run("a nil handler panics", func(t *testing.T) {
		for name, sess := range map[string]func() (*Session[counter], error){
			"strict": func() (*Session[counter], error) { return New(Options[counter]{}) },
			"lazy":   func() (*Session[counter], error) { return New(Options[counter]{Lazy: true}) },
			"multi": func() (*Session[counter], error) {
				return NewMulti(Options[counter]{}, NewFragment("a", one, Options[counter]{}))
			},
			"chat migration": func() (*Session[counter], error) { return New(Options[counter]{ChatMigration: true}) },
		} {
			s, err := sess()
			require.NoError(t, err, name)
			err = configPanic(func() { s.Middleware(nil) })
			require.ErrorIs(t, err, ErrConfig, name)
			assert.ErrorContains(t, err, "nil handler", name)
		}
	})

	t.Run("pointer session with Initial is fine", func(t *testing.T) {
		h := with(t, Options[*counter]{Initial: func() *counter { return &counter{} }}, func(c *Context[*counter]) error {
			s, err := c.Session()
			if err == nil {
				(*s).Count++
			}
			return err
		})
		assert.NoError(t, run(h, msg(1, 1)))
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
