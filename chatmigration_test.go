package session_test

import (
	"context"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/telegramtest"
)

const (
	oldGroup   = int64(-100)
	superGroup = int64(-1001234)
)

type tally struct{ Count int }

// migrateTo is the service message Telegram sends in the old group.
func migrateTo() tgbotapi.Update {
	return tgbotapi.Update{Message: &tgbotapi.Message{
		Chat: &tgbotapi.Chat{ID: oldGroup, Type: "group"}, From: &tgbotapi.User{ID: 7}, MigrateToChatID: superGroup,
	}}
}

// migrateFrom is the service message Telegram sends in the new supergroup.
func migrateFrom() tgbotapi.Update {
	return tgbotapi.Update{Message: &tgbotapi.Message{
		Chat: &tgbotapi.Chat{ID: superGroup, Type: "supergroup"}, From: &tgbotapi.User{ID: 7}, MigrateFromChatID: oldGroup,
	}}
}

func read[T any](t *testing.T, s session.StorageAdapter[T], key string) (T, bool) {
	t.Helper()
	v, ok, err := s.Read(context.Background(), key)
	require.NoError(t, err)
	return v, ok
}

// countingBot counts every message in its chat's session and records the
// count each handler saw.
func countingBot(opts session.Options[tally], seen *[]int, mu *sync.Mutex) session.Handler[tally] {
	return session.ChatMigration(opts)(session.Strict(opts)(func(c *session.Context[tally]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count++
		mu.Lock()
		*seen = append(*seen, s.Count)
		mu.Unlock()
		return nil
	}))
}

func TestChatMigrationThroughARealBot(t *testing.T) {
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("TOKEN", srv.Endpoint())
	require.NoError(t, err)

	store := session.NewMemory[tally]()
	var seen []int
	h := countingBot(session.Options[tally]{Storage: store}, &seen, new(sync.Mutex))

	srv.SendMessage(oldGroup, 7, "one")
	srv.SendMessage(oldGroup, 7, "two")
	srv.AddUpdate(migrateTo())
	srv.AddUpdate(migrateFrom())
	srv.SendMessage(superGroup, 7, "three")

	var got []tgbotapi.Update
	for offset := 0; len(got) < 5; {
		us, err := bot.GetUpdates(tgbotapi.UpdateConfig{Offset: offset, Timeout: 1})
		require.NoError(t, err)
		for _, u := range us {
			got = append(got, u)
			offset = u.UpdateID + 1
		}
	}
	for _, u := range got {
		require.NoError(t, h(session.NewContext[tally](context.Background(), bot, u)))
	}
	assert.Equal(t, []int{1, 2, 3, 4}, seen, "the old chat's service message is consumed; the new chat goes on counting")
	_, oldLeft := read(t, store, "-100")
	assert.False(t, oldLeft, "the old key is not recreated")
	v, ok := read(t, store, "-1001234")
	assert.True(t, ok)
	assert.Equal(t, 4, v.Count)
}

func TestChatMigrationIsIdempotentInEitherOrder(t *testing.T) {
	for name, order := range map[string][]tgbotapi.Update{
		"to, then from": {migrateTo(), migrateFrom()},
		"from, then to": {migrateFrom(), migrateTo()},
		"from twice":    {migrateFrom(), migrateFrom()},
	} {
		t.Run(name, func(t *testing.T) {
			store := session.NewMemory[tally]()
			require.NoError(t, store.Write(context.Background(), "-100", tally{5}))
			h := session.ChatMigration(session.Options[tally]{Storage: store})(func(*session.Context[tally]) error { return nil })
			for _, u := range order {
				require.NoError(t, h(session.NewContext[tally](context.Background(), nil, u)))
			}
			_, oldLeft := read(t, store, "-100")
			assert.False(t, oldLeft)
			v, _ := read(t, store, "-1001234")
			assert.Equal(t, tally{5}, v)
		})
	}
}

func TestChatMigrationNeverOverwritesTheNewChat(t *testing.T) {
	store := session.NewMemory[tally]()
	require.NoError(t, store.Write(context.Background(), "-100", tally{5}))
	require.NoError(t, store.Write(context.Background(), "-1001234", tally{9}))
	h := session.ChatMigration(session.Options[tally]{Storage: store})(func(*session.Context[tally]) error { return nil })
	require.NoError(t, h(session.NewContext[tally](context.Background(), nil, migrateFrom())))
	v, _ := read(t, store, "-1001234")
	assert.Equal(t, tally{9}, v)
	v, _ = read(t, store, "-100")
	assert.Equal(t, tally{5}, v, "the old session is left, not lost")
}

func TestMultiChatMigrationMovesOnlyChatKeyedFragments(t *testing.T) {
	type data struct{ Chat, User tally }
	shared := session.Encoded[tally](session.NewMemory[[]byte](), nil)
	chat := session.NewFragment("chat", func(d *data) *tally { return &d.Chat }, session.Options[tally]{Storage: shared})
	user := session.NewFragment("user", func(d *data) *tally { return &d.User }, session.Options[tally]{Storage: shared, Key: session.ByUser})
	require.NoError(t, shared.Write(context.Background(), "chat:-100", tally{3}))
	require.NoError(t, shared.Write(context.Background(), "user:7", tally{4}))

	var got data
	h := session.MultiChatMigration(session.Part[data](chat), session.Part[data](user))(
		session.Multi(session.Part[data](chat), session.Part[data](user))(func(c *session.Context[data]) error {
			s, err := c.Session()
			if err == nil {
				got = *s
			}
			return err
		}))
	require.NoError(t, h(session.NewContext[data](context.Background(), nil, migrateFrom())))
	assert.Equal(t, data{Chat: tally{3}, User: tally{4}}, got)
	_, oldLeft := read(t, shared, "chat:-100")
	assert.False(t, oldLeft)
	v, _ := read(t, shared, "user:7")
	assert.Equal(t, tally{4}, v, "the per-user fragment stays where it was")
}

func TestChatMigrationWaitsForBothChats(t *testing.T) {
	store := session.NewMemory[tally]()
	require.NoError(t, store.Write(context.Background(), "-100", tally{5}))
	unlock, err := store.Lock(context.Background(), "-1001234") // an update of the new chat is running
	require.NoError(t, err)
	h := session.ChatMigration(session.Options[tally]{Storage: store})(func(*session.Context[tally]) error { return nil })
	done := make(chan error, 1)
	go func() { done <- h(session.NewContext[tally](context.Background(), nil, migrateTo())) }()
	select {
	case <-done:
		t.Fatal("moved while the new chat's key was held")
	case <-time.After(50 * time.Millisecond):
	}
	_, stillOld := read(t, store, "-100")
	assert.True(t, stillOld)
	unlock()
	require.NoError(t, <-done)
	v, _ := read(t, store, "-1001234")
	assert.Equal(t, tally{5}, v)
}

func TestChatMigrationNeedsTheSessionsStorage(t *testing.T) {
	assert.PanicsWithError(t, "session: invalid configuration: ChatMigration needs the Storage of the session it migrates", func() {
		session.ChatMigration(session.Options[tally]{})
	})
}

// TestScenarioChatMigrationStrandsNoUpdate: a group becomes a supergroup
// while updates of the old chat are still queued. The runner orders by
// chat, so the new chat's migrate_from message runs beside the old chat's
// remaining updates, and those used to start from Initial under the old
// key, which nothing reads again (7 of 23 increments lost). Now the move
// leaves a forward at the old key: 23 increments, the migration messages
// interleaved at random points, end with 23 in the new chat's session and
// nothing under the old key, sequentially in any order and with the two
// chats running side by side.
func TestScenarioChatMigrationStrandsNoUpdate(t *testing.T) {
	increment := func(chat int64) tgbotapi.Update {
		return tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: chat}, From: &tgbotapi.User{ID: 7}, Text: "+1"}}
	}
	stores := map[string]func() (session.StorageAdapter[tally], func(key string) bool){
		"memory": func() (session.StorageAdapter[tally], func(string) bool) {
			m := session.NewMemory[tally]()
			return m, func(k string) bool { ok, err := m.Has(context.Background(), k); require.NoError(t, err); return ok }
		},
		"bytes": func() (session.StorageAdapter[tally], func(string) bool) {
			raw := session.NewMemory[[]byte]()
			return session.Encoded[tally](raw, nil), func(k string) bool {
				ok, err := raw.Has(context.Background(), k)
				require.NoError(t, err)
				return ok
			}
		},
	}
	for name, newStore := range stores {
		for run := range 40 {
			rng := rand.New(rand.NewPCG(uint64(run), 23))
			store, has := newStore()
			opts := session.Options[tally]{Storage: store}
			mw := session.Strict(opts)
			if run%4 >= 2 {
				mw = session.Lazy(opts)
			}
			h := session.ChatMigration(opts)(mw(func(c *session.Context[tally]) error {
				s, err := c.Session()
				if err == nil && c.Update.Message.Text == "+1" {
					s.Count++
				}
				return err
			}))
			// The old chat's updates: n increments with migrate_to at a
			// random place (Telegram sends it last; a redelivery need not);
			// the new chat's: migrate_from first, then the rest.
			n := rng.IntN(24)
			oldQueue := make([]tgbotapi.Update, 0, n+1)
			for range n {
				oldQueue = append(oldQueue, increment(oldGroup))
			}
			oldQueue = slices.Insert(oldQueue, rng.IntN(n+1), migrateTo())
			newQueue := []tgbotapi.Update{migrateFrom()}
			for range 23 - n {
				newQueue = append(newQueue, increment(superGroup))
			}
			runQueue := func(q []tgbotapi.Update) {
				for _, u := range q {
					assert.NoError(t, h(session.NewContext[tally](context.Background(), nil, u)))
				}
			}
			if run%2 == 0 { // side by side, as the runner does
				var wg sync.WaitGroup
				wg.Add(2)
				go func() { defer wg.Done(); runQueue(oldQueue) }()
				go func() { defer wg.Done(); runQueue(newQueue) }()
				wg.Wait()
			} else { // one random interleaving that keeps each chat's order
				var merged []tgbotapi.Update
				i, j := 0, 0
				for i < len(oldQueue) || j < len(newQueue) {
					if j == len(newQueue) || (i < len(oldQueue) && rng.IntN(2) == 0) {
						merged, i = append(merged, oldQueue[i]), i+1
					} else {
						merged, j = append(merged, newQueue[j]), j+1
					}
				}
				runQueue(merged)
			}
			v, ok := read(t, store, "-1001234")
			require.True(t, ok, "%s run %d: the new chat has its session", name, run)
			assert.Equal(t, 23, v.Count, "%s run %d (%d before the move): every increment in the new chat's session", name, run, n)
			assert.False(t, has("-100"), "%s run %d: nothing under the old key", name, run)
		}
	}
}

func TestChatMigrationForwardIsNotListedAsASession(t *testing.T) {
	raw := session.NewMemory[[]byte]()
	store := session.Encoded[tally](raw, nil)
	require.NoError(t, store.Write(context.Background(), "-100", tally{5}))
	h := session.ChatMigration(session.Options[tally]{Storage: store})(func(*session.Context[tally]) error { return nil })
	require.NoError(t, h(session.NewContext[tally](context.Background(), nil, migrateTo())))

	var rawKeys []string
	for k, err := range raw.Keys(context.Background()) {
		require.NoError(t, err)
		rawKeys = append(rawKeys, k)
	}
	assert.Len(t, rawKeys, 2, "the moved session and the old key's forward")
	it := store.(session.Iterator[tally])
	var keys []string
	for e, err := range it.Entries(context.Background()) {
		require.NoError(t, err)
		keys = append(keys, e.Key)
		assert.Equal(t, tally{5}, e.Value)
	}
	assert.Equal(t, []string{"-1001234"}, keys, "sessions only")
}

func TestChatMigrationNeedsAStoreThatCanForward(t *testing.T) {
	err := func() (err error) {
		defer func() { err, _ = recover().(error) }()
		session.ChatMigration(session.Options[tally]{Storage: plainStore{session.NewMemory[tally]()}})
		return nil
	}()
	require.ErrorIs(t, err, session.ErrConfig)
	assert.ErrorContains(t, err, "forward")
}

// plainStore is a user's own typed store: just the three methods.
type plainStore struct{ m *session.Memory[tally] }

func (p plainStore) Read(ctx context.Context, k string) (tally, bool, error) { return p.m.Read(ctx, k) }
func (p plainStore) Write(ctx context.Context, k string, v tally) error      { return p.m.Write(ctx, k, v) }
func (p plainStore) Delete(ctx context.Context, k string) error              { return p.m.Delete(ctx, k) }
