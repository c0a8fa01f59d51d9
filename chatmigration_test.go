package session_test

import (
	"context"
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
func countingBot(opts session.Options[tally], seen *[]int) session.Handler[tally] {
	return session.ChatMigration(opts)(session.Strict(opts)(func(c *session.Context[tally]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count++
		*seen = append(*seen, s.Count)
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
	h := countingBot(session.Options[tally]{Storage: store}, &seen)

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
