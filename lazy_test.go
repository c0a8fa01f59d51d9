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
	rec := newRecorder()
	h := with(t, Options[counter]{Storage: rec, Lazy: true}, func(c *Context[counter]) error {
		for range 5 {
			s, err := c.Session()
			require.NoError(t, err)
			s.Count++
		}
		return nil
	})
	require.NoError(t, run(h, msg(1, 1)))
	assert.Equal(t, []call{rd("1"), wr("1", `{"Count":5}`)}, rec.take())
}

func TestLazyUntouchedCostsNothing(t *testing.T) {
	rec := newRecorder()
	ran := false
	require.NoError(t, run(with(t, Options[counter]{Storage: rec, Lazy: true}, func(c *Context[counter]) error {
		ran = true
		key, ok := c.SessionKey()
		assert.True(t, ok, "the key is resolved up front")
		assert.Equal(t, "1", key)
		assert.Zero(t, heldIn(rec), "no lock taken for an untouched session")
		return nil
	}), msg(1, 1)))
	assert.True(t, ran)
	assert.Empty(t, rec.take())
}

// TestLazySetAndClearNeedNoDecoding: SetSession and ClearSession replace
// what is stored whatever it is, so they never decode it (data a newer
// release wrote, or corrupt data, is no obstacle). The lease still reads
// the key as it locks it: the lock and the read are one step.
func TestLazySetAndClearNeedNoDecoding(t *testing.T) {
	rec := newRecorder()
	rec.put("1", `{"Count":"not a number"}`)
	opts := Options[counter]{Storage: rec, Lazy: true}
	require.NoError(t, run(with(t, opts, func(c *Context[counter]) error {
		return c.SetSession(counter{42})
	}), msg(1, 1)))
	assert.Equal(t, []call{rd("1"), wr("1", `{"Count":42}`)}, rec.take(), "set: the lease's read, one write, no decoding")

	rec.put("1", `{"Count":"not a number"}`)
	require.NoError(t, run(with(t, opts, func(c *Context[counter]) error {
		return c.ClearSession()
	}), msg(1, 1)))
	assert.Equal(t, []call{rd("1"), del("1")}, rec.take(), "clear: the lease's read, one delete, no decoding")

	// A set value is what later accesses in the same update see, without decoding.
	rec.put("1", `{"Count":"not a number"}`)
	require.NoError(t, run(with(t, opts, func(c *Context[counter]) error {
		require.NoError(t, c.SetSession(counter{3}))
		s, err := c.Session()
		require.NoError(t, err)
		assert.Equal(t, 3, s.Count)
		s.Count++
		return nil
	}), msg(1, 1)))
	assert.Equal(t, []call{rd("1"), wr("1", `{"Count":4}`)}, rec.take())

	// Setting the value that is stored is still a write: without
	// decoding, nothing tells it is the same.
	require.NoError(t, run(with(t, opts, func(c *Context[counter]) error {
		return c.SetSession(counter{4})
	}), msg(1, 1)))
	assert.Equal(t, []call{rd("1"), wr("1", `{"Count":4}`)}, rec.take())

	// A cleared session that was not stored: nothing to delete.
	require.NoError(t, run(with(t, opts, func(c *Context[counter]) error {
		return c.ClearSession()
	}), msg(2, 1)))
	assert.Equal(t, []call{rd("2")}, rec.take(), "nothing stored, nothing deleted")

	// Strict: the session was decoded before the handler, so a set to the
	// stored value is no change.
	require.NoError(t, run(with(t, Options[counter]{Storage: rec}, func(c *Context[counter]) error {
		return c.SetSession(counter{4})
	}), msg(1, 1)))
	assert.Equal(t, []call{rd("1")}, rec.take())
}

func TestLazyReadErrorSurfacesAtAccess(t *testing.T) {
	rec := newRecorder()
	broken := errors.New("unreachable")
	rec.fail = func(op, _ string) error {
		if op == "read" {
			return broken
		}
		return nil
	}
	var accessErr error
	require.NoError(t, run(with(t, Options[counter]{Storage: rec, Lazy: true}, func(c *Context[counter]) error {
		_, accessErr = c.Session()
		return nil // the handler chose to go on without its session
	}), msg(9, 1)))
	assert.ErrorIs(t, accessErr, broken)
	assert.ErrorContains(t, accessErr, `"9"`)
	assert.Equal(t, []call{rd("9")}, rec.take(), "nothing written after a failed read")
	assert.Zero(t, heldIn(rec), "the failed read released the key")
}

func TestLazyHandlerErrorWritesNothing(t *testing.T) {
	rec := newRecorder()
	err := run(with(t, Options[counter]{Storage: rec, Lazy: true}, func(c *Context[counter]) error {
		if err := increment(c); err != nil {
			return err
		}
		return errors.New("later failure")
	}), msg(1, 1))
	assert.Error(t, err)
	assert.Equal(t, []call{rd("1")}, rec.take())
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
	for name, isLazy := range strictAndLazy {
		sess := mustNew(t, Options[cart]{Lazy: isLazy})
		h := sess.Middleware(wizard)
		for _, step := range script {
			u := msg(step.chat, 1)
			u.Message.Text = step.text
			require.NoError(t, run(h, u), "%s %v", name, step)
		}
		final[name] = map[string]cart{}
		for e, err := range sess.Entries(context.Background()) {
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
	store := NewMemory()
	h := with(t, Options[counter]{Storage: store, Lazy: true}, increment)
	errs := make(chan error, 1000)
	for i := range 1000 {
		go func() { errs <- run(h, msg(int64(i%4+1), 1)) }()
	}
	for range 1000 {
		require.NoError(t, <-errs)
	}
	for k := 1; k <= 4; k++ {
		assert.Equal(t, 250, countIn(t, store, fmt.Sprint(k)))
	}
}

func TestLazyAccessAfterCancelledWaitRetriesTheLock(t *testing.T) {
	type data struct{ A, B counter }
	aStore, bStore := NewMemory(), NewMemory()
	a := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{Storage: aStore})
	b := NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{Storage: bStore, Key: ByUser})
	sess, err := NewMulti(Options[data]{Lazy: true}, a, b)
	require.NoError(t, err)

	// Another update holds b's key, so this one waits on it and gives up.
	held, err := tableOf(bStore).lock(context.Background(), "b:2", "b:2")
	require.NoError(t, err)
	heldNow := func() int { return heldIn(aStore) + heldIn(bStore) }
	require.Equal(t, 1, heldNow())
	ctx, cancel := context.WithCancel(context.Background())
	err = sess.Middleware(func(c *Context[data]) error {
		cancel()
		_, err := a.Get(c)
		assert.ErrorIs(t, err, context.Canceled)
		assert.Equal(t, 1, heldNow(), "the partly taken locks were released")
		_, err = a.Get(c)
		assert.ErrorIs(t, err, context.Canceled, "a second access tries the locks again")
		return nil
	})(NewContext[data](ctx, nil, msg(1, 2)))
	require.NoError(t, err)
	held.unlock()
	assert.Zero(t, heldNow())

	// With the key free, the same session works.
	require.NoError(t, run(sess.Middleware(func(c *Context[data]) error {
		v, err := b.Get(c)
		if err == nil {
			v.Count++
		}
		return err
	}), msg(1, 2)))
	assert.Equal(t, 1, countIn(t, bStore, "b:2"))
}

// TestLockingIsAllOrNothingAcrossStores: a multi session whose second
// key cannot be had releases the first, whether the first is a store's
// own lease or a lock of the process's table, and an access after that
// tries again.
func TestLockingIsAllOrNothingAcrossStores(t *testing.T) {
	type data struct{ A, B counter }
	ls, mem := newLockStore(), NewMemory()
	a := NewFragment("a", func(d *data) *counter { return &d.A }, Options[counter]{Storage: ls})
	b := NewFragment("b", func(d *data) *counter { return &d.B }, Options[counter]{Storage: mem, Key: ByUser})
	for name, isLazy := range strictAndLazy {
		t.Run(name, func(t *testing.T) {
			held, err := tableOf(mem).lock(context.Background(), "b:2", "b:2") // another update has b:2
			require.NoError(t, err)
			ctx, cancel := context.WithCancel(context.Background())
			h := mustMulti(t, Options[data]{Lazy: isLazy}, func(c *Context[data]) error {
				_, err := c.Session()
				return err
			}, a, b)
			done := make(chan error, 1)
			go func() { done <- h(NewContext[data](ctx, nil, msg(1, 2))) }()
			require.True(t, settles(func() bool { return waitingIn(mem) == 1 }), "waiting for b:2 while holding a:1")
			assert.Equal(t, []string{"a:1"}, ls.heldKeys())
			cancel()
			err = <-done
			require.ErrorIs(t, err, context.Canceled)
			assert.ErrorContains(t, err, `fragment "b"`)
			assert.Empty(t, ls.heldKeys(), "a's lease was released")
			assert.Equal(t, []string{"lock a:1", "release a:1"}, ls.take())
			held.unlock()
			assert.Zero(t, heldIn(mem))
		})
	}
}
