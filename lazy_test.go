package session

import (
	"context"
	"errors"
	"fmt"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLazyManyAccessesOneRead(t *testing.T) {
	rec := newRecorder[counter]()
	h := Lazy(Options[counter]{Storage: rec})(func(c *Context[counter]) error {
		for range 5 {
			s, err := c.Session()
			require.NoError(t, err)
			s.Count++
		}
		return nil
	})
	require.NoError(t, run(h, msg(1, 1)))
	assert.Equal(t, []call[counter]{rd[counter]("1"), wr("1", counter{5})}, rec.take())
}

func TestLazyUntouchedCostsNothing(t *testing.T) {
	rec := newRecorder[counter]()
	eng := newEngine(true, single(Options[counter]{Storage: rec}))
	ran := false
	require.NoError(t, run(eng.middleware(func(c *Context[counter]) error {
		ran = true
		key, ok := c.SessionKey()
		assert.True(t, ok, "the key is resolved up front")
		assert.Equal(t, "1", key)
		_, held := processLocks.size()
		assert.Zero(t, held, "no lock taken for an untouched session")
		return nil
	}), msg(1, 1)))
	assert.True(t, ran)
	assert.Empty(t, rec.take())
}

func TestLazySetAndClearNeedNoRead(t *testing.T) {
	rec := newRecorder[counter]()
	require.NoError(t, rec.inner.Write(context.Background(), "1", counter{7}))
	require.NoError(t, run(Lazy(Options[counter]{Storage: rec})(func(c *Context[counter]) error {
		return c.SetSession(counter{42})
	}), msg(1, 1)))
	assert.Equal(t, []call[counter]{wr("1", counter{42})}, rec.take(), "set without read: one write, no read")

	require.NoError(t, run(Lazy(Options[counter]{Storage: rec})(func(c *Context[counter]) error {
		return c.ClearSession()
	}), msg(1, 1)))
	assert.Equal(t, []call[counter]{del[counter]("1")}, rec.take(), "clear without read: one delete, no read")

	// A set value is what later accesses in the same update see, still without a read.
	require.NoError(t, run(Lazy(Options[counter]{Storage: rec})(func(c *Context[counter]) error {
		require.NoError(t, c.SetSession(counter{3}))
		s, err := c.Session()
		require.NoError(t, err)
		assert.Equal(t, 3, s.Count)
		s.Count++
		return nil
	}), msg(1, 1)))
	assert.Equal(t, []call[counter]{wr("1", counter{4})}, rec.take())
}

func TestLazyReadErrorSurfacesAtAccess(t *testing.T) {
	rec := newRecorder[counter]()
	broken := errors.New("unreachable")
	rec.fail = func(op, _ string) error {
		if op == "read" {
			return broken
		}
		return nil
	}
	var accessErr error
	require.NoError(t, run(Lazy(Options[counter]{Storage: rec})(func(c *Context[counter]) error {
		_, accessErr = c.Session()
		return nil // the handler chose to go on without its session
	}), msg(9, 1)))
	assert.ErrorIs(t, accessErr, broken)
	assert.ErrorContains(t, accessErr, `"9"`)
	assert.Equal(t, []call[counter]{rd[counter]("9")}, rec.take(), "nothing written after a failed read")
}

func TestLazyHandlerErrorWritesNothing(t *testing.T) {
	rec := newRecorder[counter]()
	err := run(Lazy(Options[counter]{Storage: rec})(func(c *Context[counter]) error {
		if err := increment(c); err != nil {
			return err
		}
		return errors.New("later failure")
	}), msg(1, 1))
	assert.Error(t, err)
	assert.Equal(t, []call[counter]{rd[counter]("1")}, rec.take())
}

// wizard is handler code written once, against the accessors that both
// strict and lazy sessions offer.
func wizard(c *Context[cart]) error {
	switch text := c.Update.Message.Text; text {
	case "/reset":
		return c.ClearSession()
	case "/peek":
		return nil
	default:
		s, err := c.Session()
		if err != nil {
			return err
		}
		if s.Items == nil {
			s.Items = map[string]int{}
		}
		s.Items[text]++
		s.Notes = append(s.Notes, text)
		return nil
	}
}

func TestSameHandlerStrictAndLazy(t *testing.T) {
	script := []struct {
		chat int64
		text string
	}{{1, "tea"}, {2, "pizza"}, {1, "tea"}, {1, "/peek"}, {2, "/reset"}, {1, "cake"}, {2, "cola"}, {3, "/peek"}}
	final := map[string]map[string]cart{}
	for name, mw := range map[string]func(Options[cart]) Middleware[cart]{"strict": Strict[cart], "lazy": Lazy[cart]} {
		store := NewMemory[cart]()
		h := mw(Options[cart]{Storage: store})(wizard)
		for _, step := range script {
			u := msg(step.chat, 1)
			u.Message.Text = step.text
			require.NoError(t, run(h, u), "%s %v", name, step)
		}
		final[name] = map[string]cart{}
		for e, err := range store.Entries(context.Background()) {
			require.NoError(t, err)
			final[name][e.Key] = e.Value
		}
	}
	assert.Equal(t, map[string]cart{
		"1": {Items: map[string]int{"tea": 2, "cake": 1}, Notes: []string{"tea", "tea", "cake"}},
		"2": {Items: map[string]int{"cola": 1}, Notes: []string{"cola"}},
	}, final["strict"])
	assert.Equal(t, final["strict"], final["lazy"], "the same handler gives the same results")
}

func TestLazyConcurrentIncrementsExact(t *testing.T) {
	store := NewMemory[counter]()
	h := Lazy(Options[counter]{Storage: store})(increment)
	errs := make(chan error, 1000)
	for i := range 1000 {
		go func() { errs <- run(h, msg(int64(i%4+1), 1)) }()
	}
	for range 1000 {
		require.NoError(t, <-errs)
	}
	for k := 1; k <= 4; k++ {
		v, ok, err := store.Read(context.Background(), fmt.Sprint(k))
		require.NoError(t, err)
		require.True(t, ok)
		assert.Equal(t, 250, v.Count)
	}
}

func TestLazyAccessAfterCancelledWaitRetriesTheLock(t *testing.T) {
	type data struct{ A, B counter }
	a := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{})
	b := NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{Key: ByUser})
	eng := newEngine(true, Part[data](a), Part[data](b))

	// Another update holds b's key, so this one waits on it and gives up.
	bStore := b.store.(*Memory[counter])
	held, err := bStore.Lock(context.Background(), "b:2")
	require.NoError(t, err)
	heldIn := func() int {
		_, ha := a.store.(*Memory[counter]).locks.size()
		_, hb := bStore.locks.size()
		return ha + hb
	}
	ctx, cancel := context.WithCancel(context.Background())
	err = eng.middleware(func(c *Context[data]) error {
		cancel()
		_, err := a.Get(c)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, heldIn(), "the partly taken locks were released")
		_, err = a.Get(c)
		assert.ErrorIs(t, err, context.Canceled, "a second access tries the locks again")
		return nil
	})(NewContext[data](ctx, nil, msg(1, 2)))
	require.NoError(t, err)
	held()
	assert.Zero(t, heldIn())
}
