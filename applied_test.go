package session_test

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// Handled once: every session key keeps a record of the updates committed
// to it, so a second delivery of an update (Telegram's redelivery, to
// this process or another) does not apply it again. These tests deliver
// updates twice through the middleware, as a restarted process or a
// second replica would receive them.

type visits struct{ N int }

// botUpdate is update id of bot in chat, as the runner hands it over.
func botUpdate[S any](bot int64, id int, chat int64) *session.Context[S] {
	b := &tgbotapi.BotAPI{Self: tgbotapi.User{ID: bot, IsBot: true}}
	return session.NewContext[S](context.Background(), b, tgbotapi.Update{UpdateID: id, Message: &tgbotapi.Message{
		Chat: &tgbotapi.Chat{ID: chat}, From: &tgbotapi.User{ID: chat}, Text: "hi",
	}})
}

// count counts its runs in n and the update in the session.
func count(n *int) session.Handler[visits] {
	return func(c *session.Context[visits]) error {
		*n++
		v, err := c.Session()
		if err != nil {
			return err
		}
		v.N++
		return nil
	}
}

// countIn reads the count stored under key.
func countIn(t *testing.T, store session.Store, key string) int {
	t.Helper()
	raw, ok, err := store.Read(context.Background(), key)
	require.NoError(t, err)
	require.True(t, ok, "nothing stored under %q", key)
	var v visits
	require.NoError(t, json.Unmarshal(raw, &v), "stored %q", raw)
	return v.N
}

func TestRedeliveredUpdateIsAppliedOnce(t *testing.T) {
	store := session.NewMemory()
	var runs int
	h := mustMiddleware(t, session.Options[visits]{Storage: store}, count(&runs))

	require.NoError(t, h(botUpdate[visits](7, 100, 42)))
	err := h(botUpdate[visits](7, 100, 42)) // the same update again
	require.ErrorIs(t, err, session.ErrDuplicate)
	assert.ErrorContains(t, err, `"42"`, "the error names the key")
	assert.Equal(t, 1, runs, "the handler of a duplicate ran")

	require.NoError(t, h(botUpdate[visits](7, 101, 42)), "the next update")
	require.NoError(t, h(botUpdate[visits](8, 100, 42)), "update 100 of another bot sharing the store")
	require.NoError(t, h(botUpdate[visits](7, 100, 43)), "an update id is recorded per key")
	assert.Equal(t, 4, runs)
	assert.Equal(t, 3, countIn(t, store, "42"), "chat 42's count")

	// Without a bot (a Context built by hand, as in most tests) nothing
	// says which bot's update it is: no record, every delivery runs.
	for range 2 {
		require.NoError(t, h(session.NewContext[visits](context.Background(), nil, tgbotapi.Update{UpdateID: 100,
			Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 44}}})))
	}
	assert.Equal(t, 2, countIn(t, store, "44"))
}

func TestFailedUpdateIsNotRecorded(t *testing.T) {
	store := session.NewMemory()
	fail := true
	var runs int
	h := mustMiddleware(t, session.Options[visits]{Storage: store}, func(c *session.Context[visits]) error {
		if err := count(&runs)(c); err != nil {
			return err
		}
		if fail {
			return errors.New("handler failed")
		}
		return nil
	})
	require.Error(t, h(botUpdate[visits](7, 5, 42)))
	fail = false
	require.NoError(t, h(botUpdate[visits](7, 5, 42)), "a failed update is handled again when redelivered")
	assert.Equal(t, 2, runs)
	assert.Equal(t, 1, countIn(t, store, "42"), "only the second delivery was committed")
}

// A read-only update is recorded too: its redelivery does not run the
// handler (which may send a message) again.
func TestUnchangedUpdateIsRecorded(t *testing.T) {
	store := session.NewMemory()
	var runs int
	h := mustMiddleware(t, session.Options[visits]{Storage: store}, func(c *session.Context[visits]) error {
		runs++
		_, err := c.Session()
		return err
	})
	require.NoError(t, h(botUpdate[visits](7, 9, 42)))
	assert.ErrorIs(t, h(botUpdate[visits](7, 9, 42)), session.ErrDuplicate)
	assert.Equal(t, 1, runs)
}

func TestLazyDuplicateIsReportedAtFirstAccess(t *testing.T) {
	store := session.NewMemory()
	var before, after int
	h := mustMiddleware(t, session.Options[visits]{Storage: store, Lazy: true}, func(c *session.Context[visits]) error {
		before++ // a lazy handler runs until it first touches its session
		v, err := c.Session()
		if err != nil {
			return err
		}
		after++
		v.N++
		return nil
	})
	require.NoError(t, h(botUpdate[visits](7, 1, 42)))
	assert.ErrorIs(t, h(botUpdate[visits](7, 1, 42)), session.ErrDuplicate)
	assert.Equal(t, 2, before)
	assert.Equal(t, 1, after)
	assert.Equal(t, 1, countIn(t, store, "42"))

	// An update that never touches its session takes no lock and leaves
	// no record: its redelivery runs again (the runner's in-process
	// window is all that stops it).
	var untouched int
	h = mustMiddleware(t, session.Options[visits]{Storage: store, Lazy: true}, func(*session.Context[visits]) error {
		untouched++
		return nil
	})
	require.NoError(t, h(botUpdate[visits](7, 2, 42)))
	require.NoError(t, h(botUpdate[visits](7, 2, 42)))
	assert.Equal(t, 2, untouched)
}

type twoParts struct {
	Chat visits
	User visits
}

// failingStore is a Memory whose writes fail while fail is set: the crash
// of a process between the commits of two fragments.
type failingStore struct {
	*session.Memory
	fail bool
}

func (f *failingStore) Write(ctx context.Context, k string, v []byte) error {
	if f.fail {
		return errors.New("write failed")
	}
	return f.Memory.Write(ctx, k, v)
}

func (f *failingStore) WriteTTL(ctx context.Context, k string, v []byte, ttl time.Duration) error {
	if f.fail {
		return errors.New("write failed")
	}
	return f.Memory.WriteTTL(ctx, k, v, ttl)
}

// A multi session whose first delivery committed one fragment and not the
// other: the redelivery runs and commits the other, and leaves the
// committed one as it was.
func TestMultiPartlyAppliedUpdate(t *testing.T) {
	chatStore, userStore := session.NewMemory(), &failingStore{Memory: session.NewMemory(), fail: true}
	chat := session.NewFragment("chat", func(s *twoParts) *visits { return &s.Chat }, session.Options[visits]{Storage: chatStore})
	user := session.NewFragment("user", func(s *twoParts) *visits { return &s.User }, session.Options[visits]{Storage: userStore, Key: session.ByUser})
	sess, err := session.NewMulti(session.Options[twoParts]{}, chat, user)
	require.NoError(t, err)
	var runs int
	h := sess.Middleware(func(c *session.Context[twoParts]) error {
		runs++
		for _, f := range []*session.Fragment[twoParts, visits]{chat, user} {
			v, err := f.Get(c)
			if err != nil {
				return err
			}
			v.N++
		}
		return nil
	})
	require.Error(t, h(botUpdate[twoParts](7, 3, 42)), "the user fragment's commit fails")
	userStore.fail = false
	require.NoError(t, h(botUpdate[twoParts](7, 3, 42)), "the redelivery")
	assert.Equal(t, 2, runs)
	assert.Equal(t, 1, countIn(t, chatStore, "chat:42"), "the chat fragment, committed the first time, not applied again")
	assert.Equal(t, 1, countIn(t, userStore, "user:42"), "the user fragment, committed by the redelivery")
	assert.ErrorIs(t, h(botUpdate[twoParts](7, 3, 42)), session.ErrDuplicate, "now applied to both")
}

// The record lives beside the session, not in it: listings skip it.
func TestRecordsAreNotListed(t *testing.T) {
	store := session.NewMemory()
	sess, err := session.New(session.Options[visits]{Storage: store})
	require.NoError(t, err)
	var runs int
	h := sess.Middleware(count(&runs))
	require.NoError(t, h(botUpdate[visits](7, 1, 42)))
	require.NoError(t, h(botUpdate[visits](7, 2, 43)))
	var keys []string
	for e, err := range sess.Entries(context.Background()) {
		require.NoError(t, err)
		keys = append(keys, e.Key)
	}
	assert.ElementsMatch(t, []string{"42", "43"}, keys)
	var stored int
	for k, err := range store.Keys(context.Background()) {
		require.NoError(t, err)
		if !strings.ContainsRune(k, 0x1f) {
			stored++
		}
	}
	assert.Equal(t, 2, stored)
}
