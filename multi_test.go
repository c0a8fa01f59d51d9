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

func newSeedsFragments(fooStore, barStore Store) seedsFragments {
	return seedsFragments{
		foo: NewFragment("foo", func(s *seedsData) *string { return &s.Foo }, Options[string]{Storage: fooStore}),
		bar: NewFragment("bar", func(s *seedsData) *struct{ Prop int } { return &s.Bar }, Options[struct{ Prop int }]{
			Storage: barStore, Key: ByUser, Initial: func() struct{ Prop int } { return struct{ Prop int }{Prop: 1} },
		}),
		baz: NewFragment("baz", func(s *seedsData) *struct{ Width, Height int } { return &s.Baz }, Options[struct{ Width, Height int }]{}),
	}
}

func TestMultiSeedsShape(t *testing.T) {
	fooStore, barStore := newRecorder(), newRecorder()
	f := newSeedsFragments(fooStore, barStore)
	runs := 0
	h := mustMulti(t, Options[seedsData]{}, func(c *Context[seedsData]) error {
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
	}, f.foo, f.bar, f.baz)
	require.NoError(t, run(h, msg(5, 77)))
	require.NoError(t, run(h, msg(5, 77)))
	assert.Equal(t, []call{rd("foo:5"), wr("foo:5", `"x"`), rd("foo:5"), wr("foo:5", `"xx"`)}, fooStore.take())
	assert.Equal(t, []call{
		rd("bar:77"), wr("bar:77", `{"Prop":2}`),
		rd("bar:77"), wr("bar:77", `{"Prop":4}`),
	}, barStore.take())
}

func TestMultiSessionKeyIsTheFirstFragments(t *testing.T) {
	type data struct{ User, Chat counter }
	user := NewFragment("user", func(d *data) *counter { return &d.User }, Options[counter]{Key: ByUser})
	chat := NewFragment("chat", func(d *data) *counter { return &d.Chat }, Options[counter]{Prefix: "c-"})
	sess, err := NewMulti(Options[data]{}, user, chat)
	require.NoError(t, err)
	u := msg(5, 77)
	k, ok := sess.Key(Update{Update: &u})
	assert.True(t, ok)
	assert.Equal(t, "77", k, "a runner orders a multi session by its first fragment's key")
	k, ok = mustNew(t, Options[counter]{Prefix: "p:"}).Key(Update{Update: &u})
	assert.True(t, ok)
	assert.Equal(t, "5", k, "before the prefix")
}

func TestMultiFiveUpdateSequencePerFragment(t *testing.T) {
	type data struct {
		Chat cart
		User counter
	}
	chatStore, userStore := newRecorder(), newRecorder()
	chat := NewFragment("chat", func(d *data) *cart { return &d.Chat }, Options[cart]{
		Storage: chatStore, Initial: func() cart { return cart{Items: map[string]int{}} },
	})
	user := NewFragment("user", func(d *data) *counter { return &d.User }, Options[counter]{Storage: userStore, Key: ByUser})
	steps := []struct {
		name string
		h    Handler[data]
		chat []call
		user []call
	}{
		{"read initial", func(c *Context[data]) error { _, err := c.Session(); return err },
			[]call{rd("chat:1")}, []call{rd("user:2")}},
		{"mutate chat only", func(c *Context[data]) error {
			s, _ := c.Session()
			s.Chat.Items["a"] = 1
			return nil
		}, []call{rd("chat:1"), wr("chat:1", `{"Items":{"a":1},"Notes":null}`)}, []call{rd("user:2")}},
		{"mutate both", func(c *Context[data]) error {
			s, _ := c.Session()
			s.Chat.Notes = []string{"n"}
			s.User.Count = 5
			return nil
		}, []call{rd("chat:1"), wr("chat:1", `{"Items":{"a":1},"Notes":["n"]}`)},
			[]call{rd("user:2"), wr("user:2", `{"Count":5}`)}},
		{"clear whole session deletes every fragment", func(c *Context[data]) error { return c.ClearSession() },
			[]call{rd("chat:1"), del("chat:1")}, []call{rd("user:2"), del("user:2")}},
		{"re-initialise one fragment", func(c *Context[data]) error {
			u, err := user.Get(c)
			require.NoError(t, err)
			assert.Zero(t, u.Count)
			u.Count = 1
			return nil
		}, []call{rd("chat:1")}, []call{rd("user:2"), wr("user:2", `{"Count":1}`)}},
	}
	for _, s := range steps {
		require.NoError(t, run(mustMulti(t, Options[data]{}, s.h, chat, user), msg(1, 2)), s.name)
		assert.Equal(t, s.chat, chatStore.take(), s.name)
		assert.Equal(t, s.user, userStore.take(), s.name)
	}
}

func TestMultiSharedStorageKeepsBoth(t *testing.T) {
	type data struct{ A, B counter }
	shared := NewMemory()
	a := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{Storage: shared})
	b := NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{Storage: shared})
	h := mustMulti(t, Options[data]{}, func(c *Context[data]) error {
		s, err := c.Session()
		require.NoError(t, err)
		s.A.Count += 1
		s.B.Count += 10
		return nil
	}, a, b)
	require.NoError(t, run(h, msg(1, 1)))
	require.NoError(t, run(h, msg(1, 1)))
	got := map[string]int{}
	for k, err := range shared.Keys(context.Background()) {
		require.NoError(t, err)
		got[k] = countIn(t, shared, k)
	}
	assert.Equal(t, map[string]int{"a:1": 2, "b:1": 20}, got)
}

func TestMultiFragmentWithoutKeyFailsOnlyWhenAccessed(t *testing.T) {
	type data struct{ Chat, User counter }
	userStore := newRecorder()
	chat := NewFragment("chat", func(d *data) *counter { return &d.Chat }, Options[counter]{})
	user := NewFragment("user", func(d *data) *counter { return &d.User }, Options[counter]{Storage: userStore, Key: ByUser})
	channelPost := tgbotapi.Update{ChannelPost: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: -100}}}
	for name, isLazy := range strictAndLazy {
		t.Run(name, func(t *testing.T) {
			require.NoError(t, run(mustMulti(t, Options[data]{Lazy: isLazy}, func(c *Context[data]) error {
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
			}, chat, user), channelPost))
			assert.Empty(t, userStore.take())
		})
	}
}

func TestLazyMultiUntouchedSessionCostsNothing(t *testing.T) {
	type data struct{ Chat, User counter }
	chatStore, userStore := newRecorder(), newRecorder()
	chat := NewFragment("chat", func(d *data) *counter { return &d.Chat }, Options[counter]{Storage: chatStore})
	user := NewFragment("user", func(d *data) *counter { return &d.User }, Options[counter]{Storage: userStore, Key: ByUser})
	sess, err := NewMulti(Options[data]{Lazy: true}, chat, user)
	require.NoError(t, err)
	h := sess.Middleware(func(c *Context[data]) error {
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
	assert.Equal(t, []call{rd("chat:1"), wr("chat:1", `{"Count":1}`)}, chatStore.take())
	assert.Equal(t, []call{rd("user:2")}, userStore.take(),
		"a touched lazy multi session locks (and so reads) every keyed fragment, but writes only what changed")

	// Set and Clear on a fragment need no decoding: what they write does
	// not depend on what is stored.
	require.NoError(t, run(sess.Middleware(func(c *Context[data]) error {
		if err := user.Set(c, counter{9}); err != nil {
			return err
		}
		return chat.Clear(c)
	}), msg(1, 2)))
	assert.Equal(t, []call{rd("chat:1"), del("chat:1")}, chatStore.take())
	assert.Equal(t, []call{rd("user:2"), wr("user:2", `{"Count":9}`)}, userStore.take())
}

func TestFragmentOfAnotherSession(t *testing.T) {
	type data struct{ A, B counter }
	a := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{})
	b := NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{})
	require.NoError(t, run(mustMulti(t, Options[data]{}, func(c *Context[data]) error {
		_, err := b.Get(c)
		assert.ErrorContains(t, err, `fragment "b" is not part`)
		_, ok := b.Key(c)
		assert.False(t, ok)
		return nil
	}, a), msg(1, 1)))
}

func TestMultiRejectsBadFragments(t *testing.T) {
	type data struct{ A, B counter }
	a := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{})
	shared := NewMemory()
	for name, tc := range map[string]struct {
		opts      Options[data]
		fragments []Part[data]
		says      string
	}{
		"no fragments":    {says: "at least one fragment"},
		"same name twice": {fragments: []Part[data]{a, a}, says: `"a" is empty or used twice`},
		"nil fragment":    {fragments: []Part[data]{nil}, says: "fragment 0 is nil"},
		"typed nil fragment": {
			fragments: []Part[data]{(*Fragment[data, counter])(nil)}, says: "fragment 0 is nil",
		},
		"no accessor": {
			fragments: []Part[data]{NewFragment[data, counter]("b", nil, Options[counter]{})}, says: `fragment "b" has no field accessor`,
		},
		"empty name": {
			fragments: []Part[data]{NewFragment("", func(d *data) *counter { return &d.A }, Options[counter]{})}, says: "empty or used twice",
		},
		"fragment options on the multi session": {
			opts: Options[data]{Prefix: "x"}, fragments: []Part[data]{a}, says: "belong to each fragment's options",
		},
		"multi options on a fragment": {
			fragments: []Part[data]{NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{Lazy: true})},
			says:      `fragment "b": Lazy, ChatMigration, Clock and Hooks are set on the multi session`,
		},
		"two fragments on one store under one prefix": {
			fragments: []Part[data]{
				NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{Storage: shared, Prefix: "p:"}),
				NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{Storage: shared, Prefix: "p:"}),
			},
			says: `fragments "a" and "b" share one store and the prefix "p:"`,
		},
		"a fragment's own mistake": {
			fragments: []Part[data]{NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{TTL: -1})},
			says:      `fragment "b": negative Options.TTL`,
		},
	} {
		t.Run(name, func(t *testing.T) {
			var sess *Session[data]
			var err error
			require.NotPanics(t, func() { sess, err = NewMulti(tc.opts, tc.fragments...) })
			require.ErrorIs(t, err, ErrConfig)
			assert.ErrorContains(t, err, tc.says)
			assert.Nil(t, sess)
		})
	}
}

func TestMultiConcurrentChatAndUserExactTotals(t *testing.T) {
	type data struct{ Chat, User counter }
	for name, isLazy := range strictAndLazy {
		t.Run(name, func(t *testing.T) {
			chatStore, userStore := NewMemory(), NewMemory()
			chat := NewFragment("chat", func(d *data) *counter { return &d.Chat }, Options[counter]{Storage: chatStore})
			user := NewFragment("user", func(d *data) *counter { return &d.User }, Options[counter]{Storage: userStore, Key: ByUser})
			h := mustMulti(t, Options[data]{Lazy: isLazy}, func(c *Context[data]) error {
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
			}, chat, user)
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
				assert.Equal(t, total/5, countIn(t, chatStore, fmt.Sprintf("chat:%d", i)))
				assert.Equal(t, total/5, countIn(t, userStore, fmt.Sprintf("user:%d", i+100)))
			}
		})
	}
}
