package session

import (
	"context"
	"fmt"
	"sync"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// seedsData is the shape of the seeds' multi-session example: a per-chat
// fragment in one storage, a per-user fragment in another, and a fragment
// with every default.
type seedsData struct {
	Foo string
	Bar struct{ Prop int }
	Baz struct{ Width, Height int }
}

type seedsFragments struct {
	foo *Fragment[seedsData, string]
	bar *Fragment[seedsData, struct{ Prop int }]
	baz *Fragment[seedsData, struct{ Width, Height int }]
}

func newSeedsFragments(fooStore StorageAdapter[string], barStore StorageAdapter[struct{ Prop int }]) seedsFragments {
	return seedsFragments{
		foo: NewFragment("foo", func(s *seedsData) *string { return &s.Foo }, Options[string]{Storage: fooStore}),
		bar: NewFragment("bar", func(s *seedsData) *struct{ Prop int } { return &s.Bar }, Options[struct{ Prop int }]{
			Storage: barStore, Key: ByUser, Initial: func() struct{ Prop int } { return struct{ Prop int }{Prop: 1} },
		}),
		baz: NewFragment("baz", func(s *seedsData) *struct{ Width, Height int } { return &s.Baz }, Options[struct{ Width, Height int }]{}),
	}
}

func TestMultiSeedsShape(t *testing.T) {
	fooStore, barStore := newRecorder[string](), newRecorder[struct{ Prop int }]()
	f := newSeedsFragments(fooStore, barStore)
	runs := 0
	h := Multi(f.foo, f.bar, f.baz)(func(c *Context[seedsData]) error {
		s, err := c.Session()
		require.NoError(t, err)
		runs++
		if runs == 1 {
			assert.Equal(t, 1, s.Bar.Prop, "fragment initial value")
		}
		s.Foo += "x"
		s.Bar.Prop *= 2
		bar, err := f.bar.Get(c)
		require.NoError(t, err)
		assert.Same(t, &s.Bar, bar, "the fragment accessor reaches the same field")
		key, ok := f.bar.Key(c)
		assert.True(t, ok)
		assert.Equal(t, "77", key)
		_, ok = c.SessionKey()
		assert.False(t, ok, "a multi session has a key per fragment, not one")
		return nil
	})
	require.NoError(t, run(h, msg(5, 77)))
	require.NoError(t, run(h, msg(5, 77)))
	assert.Equal(t, []call[string]{rd[string]("foo:5"), wr("foo:5", "x"), rd[string]("foo:5"), wr("foo:5", "xx")}, fooStore.take())
	assert.Equal(t, []call[struct{ Prop int }]{
		rd[struct{ Prop int }]("bar:77"), wr("bar:77", struct{ Prop int }{2}),
		rd[struct{ Prop int }]("bar:77"), wr("bar:77", struct{ Prop int }{4}),
	}, barStore.take())
}

func TestMultiFiveUpdateSequencePerFragment(t *testing.T) {
	type data struct {
		Chat cart
		User counter
	}
	chatStore, userStore := newRecorder[cart](), newRecorder[counter]()
	chat := NewFragment("chat", func(d *data) *cart { return &d.Chat }, Options[cart]{
		Storage: chatStore, Initial: func() cart { return cart{Items: map[string]int{}} },
	})
	user := NewFragment("user", func(d *data) *counter { return &d.User }, Options[counter]{Storage: userStore, Key: ByUser})
	steps := []struct {
		name string
		h    Handler[data]
		chat []call[cart]
		user []call[counter]
	}{
		{"read initial", func(c *Context[data]) error { _, err := c.Session(); return err },
			[]call[cart]{rd[cart]("chat:1")}, []call[counter]{rd[counter]("user:2")}},
		{"mutate chat only", func(c *Context[data]) error {
			s, _ := c.Session()
			s.Chat.Items["a"] = 1
			return nil
		}, []call[cart]{rd[cart]("chat:1"), wr("chat:1", cart{Items: map[string]int{"a": 1}})}, []call[counter]{rd[counter]("user:2")}},
		{"mutate both", func(c *Context[data]) error {
			s, _ := c.Session()
			s.Chat.Notes = []string{"n"}
			s.User.Count = 5
			return nil
		}, []call[cart]{rd[cart]("chat:1"), wr("chat:1", cart{Items: map[string]int{"a": 1}, Notes: []string{"n"}})},
			[]call[counter]{rd[counter]("user:2"), wr("user:2", counter{5})}},
		{"clear whole session deletes every fragment", func(c *Context[data]) error { return c.ClearSession() },
			[]call[cart]{rd[cart]("chat:1"), del[cart]("chat:1")}, []call[counter]{rd[counter]("user:2"), del[counter]("user:2")}},
		{"re-initialise one fragment", func(c *Context[data]) error {
			u, err := user.Get(c)
			require.NoError(t, err)
			assert.Zero(t, u.Count)
			u.Count = 1
			return nil
		}, []call[cart]{rd[cart]("chat:1")}, []call[counter]{rd[counter]("user:2"), wr("user:2", counter{1})}},
	}
	h := func(step Handler[data]) Handler[data] { return Multi(chat, user)(step) }
	for _, s := range steps {
		require.NoError(t, run(h(s.h), msg(1, 2)), s.name)
		assert.Equal(t, s.chat, chatStore.take(), s.name)
		assert.Equal(t, s.user, userStore.take(), s.name)
	}
}

func TestMultiSharedStorageKeepsBoth(t *testing.T) {
	type data struct{ A, B counter }
	shared := NewMemory[counter]()
	a := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{Storage: shared})
	b := NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{Storage: shared})
	h := Multi(a, b)(func(c *Context[data]) error {
		s, err := c.Session()
		require.NoError(t, err)
		s.A.Count += 1
		s.B.Count += 10
		return nil
	})
	require.NoError(t, run(h, msg(1, 1)))
	require.NoError(t, run(h, msg(1, 1)))
	got := map[string]int{}
	for e, err := range shared.Entries(context.Background()) {
		require.NoError(t, err)
		got[e.Key] = e.Value.Count
	}
	assert.Equal(t, map[string]int{"a:1": 2, "b:1": 20}, got)
}

func TestMultiFragmentWithoutKeyFailsOnlyWhenAccessed(t *testing.T) {
	type data struct{ Chat, User counter }
	userStore := newRecorder[counter]()
	chat := NewFragment("chat", func(d *data) *counter { return &d.Chat }, Options[counter]{})
	user := NewFragment("user", func(d *data) *counter { return &d.User }, Options[counter]{Storage: userStore, Key: ByUser})
	channelPost := tgbotapi.Update{ChannelPost: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: -100}}}
	for name, mw := range map[string]func(...Part[data]) Middleware[data]{"strict": Multi[data], "lazy": LazyMulti[data]} {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, run(mw(chat, user)(func(c *Context[data]) error {
				ch, err := chat.Get(c)
				require.NoError(t, err)
				ch.Count++
				_, err = user.Get(c)
				assert.ErrorIs(t, err, ErrNoSessionKey)
				assert.ErrorContains(t, err, `fragment "user"`)
				assert.ErrorContains(t, err, "custom key function")
				_, err = c.Session()
				assert.ErrorIs(t, err, ErrNoSessionKey, "the whole session needs every key")
				return nil
			}), channelPost))
			assert.Empty(t, userStore.take())
		})
	}
}

func TestLazyMultiUntouchedFragmentsCostNothing(t *testing.T) {
	type data struct{ Chat, User counter }
	chatStore, userStore := newRecorder[counter](), newRecorder[counter]()
	chat := NewFragment("chat", func(d *data) *counter { return &d.Chat }, Options[counter]{Storage: chatStore})
	user := NewFragment("user", func(d *data) *counter { return &d.User }, Options[counter]{Storage: userStore, Key: ByUser})
	h := LazyMulti(chat, user)(func(c *Context[data]) error {
		if c.Update.Message.Text == "chat" {
			ch, err := chat.Get(c)
			if err != nil {
				return err
			}
			ch.Count++
		}
		return nil
	})
	require.NoError(t, run(h, msg(1, 2)))
	assert.Empty(t, chatStore.take())
	assert.Empty(t, userStore.take())

	u := msg(1, 2)
	u.Message.Text = "chat"
	require.NoError(t, run(h, u))
	assert.Equal(t, []call[counter]{rd[counter]("chat:1"), wr("chat:1", counter{1})}, chatStore.take())
	assert.Empty(t, userStore.take(), "the untouched fragment is neither read nor written")

	// Set and Clear on a fragment need no read either.
	require.NoError(t, run(LazyMulti(chat, user)(func(c *Context[data]) error {
		if err := user.Set(c, counter{9}); err != nil {
			return err
		}
		return chat.Clear(c)
	}), msg(1, 2)))
	assert.Equal(t, []call[counter]{del[counter]("chat:1")}, chatStore.take())
	assert.Equal(t, []call[counter]{wr("user:2", counter{9})}, userStore.take())
}

func TestFragmentOfAnotherSession(t *testing.T) {
	type data struct{ A, B counter }
	a := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{})
	b := NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{})
	require.NoError(t, run(Multi(a)(func(c *Context[data]) error {
		_, err := b.Get(c)
		assert.ErrorContains(t, err, `fragment "b" is not part`)
		return nil
	}), msg(1, 1)))
}

func TestMultiRejectsBadFragments(t *testing.T) {
	type data struct{ A counter }
	a := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{})
	for name, build := range map[string]func(){
		"no fragments":    func() { Multi[data]() },
		"same name twice": func() { Multi(a, a) },
		"nil fragment":    func() { Multi[data](nil) },
		"no accessor":     func() { NewFragment[data, counter]("b", nil, Options[counter]{}) },
		"empty name":      func() { Multi(NewFragment("", func(d *data) *counter { return &d.A }, Options[counter]{})) },
	} {
		var recovered any
		func() {
			defer func() { recovered = recover() }()
			build()
		}()
		err, ok := recovered.(error)
		if assert.True(t, ok, "%s: panics with an error, got %v", name, recovered) {
			assert.ErrorIs(t, err, ErrConfig, name)
		}
	}
}

func TestMultiConcurrentChatAndUserExactTotals(t *testing.T) {
	type data struct{ Chat, User counter }
	for name, mw := range map[string]func(...Part[data]) Middleware[data]{"strict": Multi[data], "lazy": LazyMulti[data]} {
		t.Run(name, func(t *testing.T) {
			chatStore, userStore := NewMemory[counter](), NewMemory[counter]()
			chat := NewFragment("chat", func(d *data) *counter { return &d.Chat }, Options[counter]{Storage: chatStore})
			user := NewFragment("user", func(d *data) *counter { return &d.User }, Options[counter]{Storage: userStore, Key: ByUser})
			h := mw(chat, user)(func(c *Context[data]) error {
				// Lazy: touch the fragments in an order that depends on the
				// update, so a naive lock order would deadlock.
				first, second := Part[data](chat), Part[data](user)
				if c.Update.Message.From.ID%2 == 0 {
					first, second = second, first
				}
				for _, p := range []Part[data]{first, second} {
					switch p {
					case chat:
						ch, err := chat.Get(c)
						if err != nil {
							return err
						}
						ch.Count++
					case user:
						u, err := user.Get(c)
						if err != nil {
							return err
						}
						u.Count++
					}
				}
				return nil
			})
			const goroutines, perGoroutine = 100, 50
			var wg sync.WaitGroup
			for g := range goroutines {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range perGoroutine {
						n := g*perGoroutine + i
						assert.NoError(t, run(h, msg(int64(n%5+1), int64(n/5%5+101))))
					}
				}()
			}
			wg.Wait()
			total := goroutines * perGoroutine
			for i := 1; i <= 5; i++ {
				ch, _, err := chatStore.Read(context.Background(), fmt.Sprintf("chat:%d", i))
				require.NoError(t, err)
				assert.Equal(t, total/5, ch.Count)
				u, _, err := userStore.Read(context.Background(), fmt.Sprintf("user:%d", i+100))
				require.NoError(t, err)
				assert.Equal(t, total/5, u.Count)
			}
		})
	}
}
