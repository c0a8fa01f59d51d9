package session

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hookLog records what the hooks were told.
type hookLog struct {
	begun   []int // update ids
	reports []Report
	ctxs    []context.Context // given to End
}

type ctxKey struct{}

func (l *hookLog) hooks() *Hooks {
	return &Hooks{
		Begin: func(ctx context.Context, u Update) context.Context {
			l.begun = append(l.begun, u.UpdateID)
			return context.WithValue(ctx, ctxKey{}, u.UpdateID)
		},
		End: func(ctx context.Context, r *Report) {
			c := *r
			c.Parts = append([]PartReport(nil), r.Parts...) // r is valid during the call only
			l.reports = append(l.reports, c)
			l.ctxs = append(l.ctxs, ctx)
		},
	}
}

func (l *hookLog) last(t *testing.T) Report {
	t.Helper()
	require.NotEmpty(t, l.reports)
	return l.reports[len(l.reports)-1]
}

func update(id int, chat int64) tgbotapi.Update {
	u := msg(chat, chat)
	u.UpdateID = id
	return u
}

func TestHooksReportEachOutcome(t *testing.T) {
	log := &hookLog{}
	store := NewMemory()
	var fail error
	var seen []any
	h := with(t, Options[counter]{Storage: store, Hooks: log.hooks(), TTL: time.Hour}, func(c *Context[counter]) error {
		seen = append(seen, c.Value(ctxKey{}))
		s, err := c.Session()
		if err != nil {
			return err
		}
		if c.Update.Message.Text == "count" {
			s.Count++
		}
		if c.Update.Message.Text == "panic" {
			panic("boom")
		}
		return fail
	})
	do := func(id int, text string) error {
		u := update(id, 42)
		u.Message.Text = text
		return run(h, u)
	}

	before := time.Now()
	require.NoError(t, do(1, "count"))
	after := time.Now()
	r := log.last(t)
	assert.Equal(t, []int{1}, log.begun)
	assert.Equal(t, []any{1}, seen, "the handler runs with the context Begin returned")
	assert.Equal(t, 1, log.ctxs[0].Value(ctxKey{}), "End gets the context Begin returned")
	assert.Equal(t, 1, r.Update.UpdateID)
	assert.Equal(t, OutcomeWritten, r.Outcome)
	require.Len(t, r.Parts, 1)
	assert.Equal(t, PartReport{Key: "42", BytesRead: 0, BytesWritten: len(rawMust(t, store, "42")), Outcome: OutcomeWritten}, r.Parts[0])
	assert.False(t, r.Start.Before(before) || r.Start.After(after), "Start is when the update entered")
	for _, d := range []time.Duration{r.LockWait, r.Load, r.Handler, r.Commit} {
		assert.GreaterOrEqual(t, d, time.Duration(0))
	}
	assert.LessOrEqual(t, r.LockWait+r.Load+r.Handler+r.Commit, after.Sub(r.Start), "the phases follow each other within the update")

	require.NoError(t, do(2, "read"))
	r = log.last(t)
	assert.Equal(t, OutcomeTouched, r.Outcome, "read with a TTL: the expiry restarts")
	assert.Equal(t, len(rawMust(t, store, "42")), r.Parts[0].BytesRead)
	assert.Zero(t, r.Parts[0].BytesWritten)

	fail = errors.New("handler failed")
	require.ErrorIs(t, do(3, "count"), fail)
	r = log.last(t)
	assert.Equal(t, OutcomeError, r.Outcome)
	assert.Equal(t, OutcomeError, r.Parts[0].Outcome)
	assert.ErrorIs(t, r.Err, fail)
	fail = nil

	require.Panics(t, func() { _ = do(4, "panic") })
	r = log.last(t)
	assert.Equal(t, OutcomePanic, r.Outcome, "End is told of a panic, which goes on")
	assert.Equal(t, 4, r.Update.UpdateID)
	assert.Len(t, log.reports, 4, "one report per update")
}

func TestHooksReportConflictAndDuplicate(t *testing.T) {
	log := &hookLog{}
	ls := newLockStore()
	h := with(t, Options[counter]{Storage: ls, Hooks: log.hooks()}, func(c *Context[counter]) error {
		s, err := c.Session()
		if err == nil {
			s.Count++
		}
		return err
	})
	bot := &tgbotapi.BotAPI{Self: tgbotapi.User{ID: 7}}
	deliver := func(id int) error { return h(NewContext[counter](context.Background(), bot, update(id, 42))) }
	require.NoError(t, deliver(1))
	require.ErrorIs(t, deliver(1), ErrDuplicate)
	r := log.last(t)
	assert.Equal(t, OutcomeDuplicate, r.Outcome)
	assert.Equal(t, OutcomeDuplicate, r.Parts[0].Outcome)

	ls.commitErr = fmt.Errorf("fenced: %w", ErrConflict)
	require.ErrorIs(t, deliver(2), ErrConflict)
	r = log.last(t)
	assert.Equal(t, OutcomeConflict, r.Outcome)
	assert.Equal(t, OutcomeConflict, r.Parts[0].Outcome)
}

func TestHooksLazyAndMulti(t *testing.T) {
	log := &hookLog{}
	h := with(t, Options[counter]{Lazy: true, Hooks: log.hooks()}, func(*Context[counter]) error { return nil })
	require.NoError(t, run(h, update(1, 42)))
	r := log.last(t)
	assert.Equal(t, OutcomeUntouched, r.Outcome, "a lazy update that never touched its session")
	assert.Zero(t, r.LockWait)

	type both struct{ A, B counter }
	log = &hookLog{}
	a := NewFragment("a", func(s *both) *counter { return &s.A }, Options[counter]{})
	b := NewFragment("b", func(s *both) *counter { return &s.B }, Options[counter]{Key: ByUser})
	mh := mustMulti(t, Options[both]{Hooks: log.hooks()}, func(c *Context[both]) error {
		v, err := b.Get(c)
		if err == nil {
			v.Count++
		}
		return err
	}, a, b)
	u := update(1, 42)
	u.Message.From.ID = 9
	require.NoError(t, run(mh, u))
	r = log.last(t)
	require.Len(t, r.Parts, 2)
	assert.Equal(t, "a", r.Parts[0].Fragment)
	assert.Equal(t, "42", r.Parts[0].Key)
	assert.Equal(t, OutcomeUnchanged, r.Parts[0].Outcome)
	assert.Equal(t, PartReport{Fragment: "b", Key: "9", BytesWritten: r.Parts[1].BytesWritten, Outcome: OutcomeWritten}, r.Parts[1])
	assert.Positive(t, r.Parts[1].BytesWritten)
	assert.Equal(t, OutcomeUnchanged, r.Outcome, "the first part's outcome when none failed")

	_, err := NewMulti(Options[both]{}, NewFragment("c", func(s *both) *counter { return &s.A }, Options[counter]{Hooks: &Hooks{}}))
	assert.ErrorIs(t, err, ErrConfig, "Hooks on a fragment")
}

// Unset hooks cost nothing: an update allocates the same with no Hooks,
// and with Hooks whose funcs are nil.
func TestUnsetHooksAllocateNothing(t *testing.T) {
	allocs := func(hooks *Hooks) float64 {
		h := with(t, Options[counter]{Hooks: hooks}, func(c *Context[counter]) error {
			s, err := c.Session()
			if err == nil {
				s.Count++
			}
			return err
		})
		u := update(1, 42)
		return testing.AllocsPerRun(200, func() { _ = run(h, u) })
	}
	none := allocs(nil)
	assert.Equal(t, none, allocs(&Hooks{}), "allocations per update with empty Hooks")
	var ends int
	set := allocs(&Hooks{End: func(context.Context, *Report) { ends++ }})
	assert.Positive(t, ends)
	t.Logf("allocations per update: %v without hooks, %v with End set", none, set)
}

func rawMust(t *testing.T, store Store, key string) []byte {
	t.Helper()
	v, ok, err := store.Read(context.Background(), key)
	require.NoError(t, err)
	require.True(t, ok)
	return v
}

// failWrites is a Memory whose writes fail while fail is set.
type failWrites struct {
	*Memory
	fail bool
}

func (f *failWrites) Write(ctx context.Context, k string, v []byte) error {
	if f.fail {
		return errors.New("write failed")
	}
	return f.Memory.Write(ctx, k, v)
}

// A redelivery of a multi-session update whose first delivery committed
// one fragment only: the update ran and wrote the other, so its outcome
// is that part's, not duplicate; the applied part says duplicate.
func TestHooksPartlyAppliedUpdate(t *testing.T) {
	type both struct{ A, B counter }
	log := &hookLog{}
	bStore := &failWrites{Memory: NewMemory(), fail: true}
	a := NewFragment("a", func(s *both) *counter { return &s.A }, Options[counter]{})
	b := NewFragment("b", func(s *both) *counter { return &s.B }, Options[counter]{Storage: bStore})
	h := mustMulti(t, Options[both]{Hooks: log.hooks()}, func(c *Context[both]) error {
		for _, f := range []*Fragment[both, counter]{a, b} {
			v, err := f.Get(c)
			if err != nil {
				return err
			}
			v.Count++
		}
		return nil
	}, a, b)
	bot := &tgbotapi.BotAPI{Self: tgbotapi.User{ID: 7}}
	deliver := func() error { return h(NewContext[both](context.Background(), bot, update(1, 42))) }
	require.Error(t, deliver(), "b's commit fails")
	assert.Equal(t, OutcomeError, log.last(t).Outcome)
	bStore.fail = false
	require.NoError(t, deliver())
	r := log.last(t)
	require.Len(t, r.Parts, 2)
	assert.Equal(t, OutcomeDuplicate, r.Parts[0].Outcome, "a was committed by the first delivery")
	assert.Equal(t, OutcomeWritten, r.Parts[1].Outcome)
	assert.Equal(t, OutcomeWritten, r.Outcome, "the update ran and wrote b")
	require.ErrorIs(t, deliver(), ErrDuplicate)
	assert.Equal(t, OutcomeDuplicate, log.last(t).Outcome)
}
