package session_test

import (
	"context"
	"encoding/json"
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

// read returns the tally stored under key, bare or in grammY's envelope.
func read(t *testing.T, s session.Store, key string) (tally, bool) {
	t.Helper()
	raw, ok, err := s.Read(context.Background(), key)
	require.NoError(t, err)
	if !ok {
		return tally{}, false
	}
	var env struct {
		D *tally `json:"__d"`
	}
	require.NoError(t, json.Unmarshal(raw, &env), "stored %q", raw)
	if env.D != nil {
		return *env.D, true
	}
	var v tally
	require.NoError(t, json.Unmarshal(raw, &v), "stored %q", raw)
	return v, true
}

func write(t *testing.T, s session.Store, key string, v tally) {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	require.NoError(t, s.Write(context.Background(), key, b))
}

func has(t *testing.T, s session.Store, key string) bool {
	t.Helper()
	_, ok, err := s.Read(context.Background(), key)
	require.NoError(t, err)
	return ok
}

func mustMiddleware[S any](t *testing.T, opts session.Options[S], h session.Handler[S]) session.Handler[S] {
	t.Helper()
	sess, err := session.New(opts)
	require.NoError(t, err)
	return sess.Middleware(h)
}

func nothing[S any](*session.Context[S]) error { return nil }

// countingBot counts every message in its chat's session and records the
// count each handler saw.
func countingBot(t *testing.T, opts session.Options[tally], seen *[]int, mu *sync.Mutex) session.Handler[tally] {
	opts.ChatMigration = true
	return mustMiddleware(t, opts, func(c *session.Context[tally]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count++
		mu.Lock()
		*seen = append(*seen, s.Count)
		mu.Unlock()
		return nil
	})
}

func TestChatMigrationThroughARealBot(t *testing.T) {
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("TOKEN", srv.Endpoint())
	require.NoError(t, err)

	store := session.NewMemory()
	var seen []int
	h := countingBot(t, session.Options[tally]{Storage: store}, &seen, new(sync.Mutex))

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
	assert.False(t, has(t, store, "-100"), "the old key is not recreated")
	v, ok := read(t, store, "-1001234")
	assert.True(t, ok)
	assert.Equal(t, 4, v.Count)

	// Telegram sends them all again (a restart before they were
	// confirmed): nothing is applied twice, the migration included.
	for _, u := range got {
		err := h(session.NewContext[tally](context.Background(), bot, u))
		if err != nil {
			assert.ErrorIs(t, err, session.ErrDuplicate, "update %d", u.UpdateID)
		}
	}
	assert.Equal(t, []int{1, 2, 3, 4}, seen, "no handler ran again")
	v, _ = read(t, store, "-1001234")
	assert.Equal(t, 4, v.Count)
}

func TestChatMigrationIsIdempotentInEitherOrder(t *testing.T) {
	for name, order := range map[string][]tgbotapi.Update{
		"to, then from": {migrateTo(), migrateFrom()},
		"from, then to": {migrateFrom(), migrateTo()},
		"from twice":    {migrateFrom(), migrateFrom()},
	} {
		t.Run(name, func(t *testing.T) {
			store := session.NewMemory()
			write(t, store, "-100", tally{5})
			h := mustMiddleware(t, session.Options[tally]{Storage: store, ChatMigration: true}, nothing[tally])
			for _, u := range order {
				require.NoError(t, h(session.NewContext[tally](context.Background(), nil, u)))
			}
			assert.False(t, has(t, store, "-100"))
			v, _ := read(t, store, "-1001234")
			assert.Equal(t, tally{5}, v)
		})
	}
}

func TestChatMigrationNeverOverwritesTheNewChat(t *testing.T) {
	store := session.NewMemory()
	write(t, store, "-100", tally{5})
	write(t, store, "-1001234", tally{9})
	h := mustMiddleware(t, session.Options[tally]{Storage: store, ChatMigration: true}, nothing[tally])
	require.NoError(t, h(session.NewContext[tally](context.Background(), nil, migrateFrom())))
	v, _ := read(t, store, "-1001234")
	assert.Equal(t, tally{9}, v)
	v, _ = read(t, store, "-100")
	assert.Equal(t, tally{5}, v, "the old session is left, not lost")
}

func TestMultiChatMigrationMovesOnlyChatKeyedFragments(t *testing.T) {
	type data struct{ Chat, User tally }
	shared := session.NewMemory()
	chat := session.NewFragment("chat", func(d *data) *tally { return &d.Chat }, session.Options[tally]{Storage: shared})
	user := session.NewFragment("user", func(d *data) *tally { return &d.User }, session.Options[tally]{Storage: shared, Key: session.ByUser})
	write(t, shared, "chat:-100", tally{3})
	write(t, shared, "user:7", tally{4})

	var got data
	sess, err := session.NewMulti(session.Options[data]{ChatMigration: true}, chat, user)
	require.NoError(t, err)
	h := sess.Middleware(func(c *session.Context[data]) error {
		s, err := c.Session()
		if err == nil {
			got = *s
		}
		return err
	})
	require.NoError(t, h(session.NewContext[data](context.Background(), nil, migrateFrom())))
	assert.Equal(t, data{Chat: tally{3}, User: tally{4}}, got)
	assert.False(t, has(t, shared, "chat:-100"))
	v, _ := read(t, shared, "user:7")
	assert.Equal(t, tally{4}, v, "the per-user fragment stays where it was")
}

// TestMultiChatMigrationForwardsEveryChatKeyedFragment: after the move,
// an update of the old chat still queued follows the forwards of every
// chat-keyed fragment: a strict multi session reloads them all under the
// new keys, a lazy one follows the forward of the fragment it touches.
func TestMultiChatMigrationForwardsEveryChatKeyedFragment(t *testing.T) {
	type data struct{ A, B, User tally }
	shared := session.NewMemory()
	a := session.NewFragment("a", func(d *data) *tally { return &d.A }, session.Options[tally]{Storage: shared})
	b := session.NewFragment("b", func(d *data) *tally { return &d.B }, session.Options[tally]{Storage: shared})
	user := session.NewFragment("user", func(d *data) *tally { return &d.User }, session.Options[tally]{Storage: shared, Key: session.ByUser})
	write(t, shared, "a:-100", tally{3})
	write(t, shared, "b:-100", tally{30})
	old := tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: oldGroup}, From: &tgbotapi.User{ID: 7}, Text: "+1"}}
	build := func(isLazy bool, h session.Handler[data]) session.Handler[data] {
		sess, err := session.NewMulti(session.Options[data]{Lazy: isLazy, ChatMigration: true}, a, b, user)
		require.NoError(t, err)
		return sess.Middleware(h)
	}
	update := func(h session.Handler[data], u tgbotapi.Update) error {
		return h(session.NewContext[data](context.Background(), nil, u))
	}
	require.NoError(t, update(build(false, nothing[data]), migrateTo()))
	assert.False(t, has(t, shared, "a:-100"))
	assert.False(t, has(t, shared, "b:-100"))

	require.NoError(t, update(build(false, func(c *session.Context[data]) error {
		s, err := c.Session()
		if err == nil {
			s.A.Count++
			s.B.Count++
			s.User.Count++
		}
		return err
	}), old), "strict: every fragment reloaded under its new key")
	v, _ := read(t, shared, "a:-1001234")
	assert.Equal(t, 4, v.Count)
	v, _ = read(t, shared, "b:-1001234")
	assert.Equal(t, 31, v.Count)
	v, _ = read(t, shared, "user:7")
	assert.Equal(t, 1, v.Count, "the per-user fragment stays where it is")

	require.NoError(t, update(build(true, func(c *session.Context[data]) error {
		s, err := a.Get(c)
		if err == nil {
			s.Count++
		}
		return err
	}), old), "lazy, one fragment: its forward is followed")
	v, _ = read(t, shared, "a:-1001234")
	assert.Equal(t, 5, v.Count)

	// A lazy update that uses two moved fragments, one after the other:
	// the forwards were followed when the first access took the leases,
	// before the handler saw anything, so both land in the new chat.
	require.NoError(t, update(build(true, func(c *session.Context[data]) error {
		sb, err := b.Get(c)
		if err != nil {
			return err
		}
		sa, err := a.Get(c)
		if err != nil {
			return err
		}
		sa.Count++
		sb.Count++
		return nil
	}), old))
	assert.False(t, has(t, shared, "a:-100"))
	assert.False(t, has(t, shared, "b:-100"))
	v, _ = read(t, shared, "a:-1001234")
	assert.Equal(t, 6, v.Count)
}

func TestChatMigrationWaitsForBothChats(t *testing.T) {
	store := session.NewMemory()
	write(t, store, "-100", tally{5})
	// An update of the new chat is running, in another session over the
	// same store.
	entered, release := make(chan struct{}), make(chan struct{})
	busy := mustMiddleware(t, session.Options[tally]{Storage: store}, func(c *session.Context[tally]) error {
		close(entered)
		<-release
		return nil
	})
	busyDone := make(chan error, 1)
	go func() {
		busyDone <- busy(session.NewContext[tally](context.Background(), nil, tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: superGroup}}}))
	}()
	<-entered
	h := mustMiddleware(t, session.Options[tally]{Storage: store, ChatMigration: true}, nothing[tally])
	done := make(chan error, 1)
	go func() { done <- h(session.NewContext[tally](context.Background(), nil, migrateTo())) }()
	require.Eventually(t, func() bool { return session.LockWaiters(store) == 1 }, 10*time.Second, time.Millisecond,
		"the move waits for the new chat's key")
	select {
	case <-done:
		t.Fatal("moved while the new chat's key was held")
	default:
	}
	assert.True(t, has(t, store, "-100"))
	close(release)
	require.NoError(t, <-busyDone)
	require.NoError(t, <-done)
	v, _ := read(t, store, "-1001234")
	assert.Equal(t, tally{5}, v)
}

// TestScenarioChatMigrationStrandsNoUpdate: a group becomes a supergroup
// while updates of the old chat are still queued. The runner orders by
// chat, so the new chat's migrate_from message runs beside the old chat's
// remaining updates, and those used to start from Initial under the old
// key, which nothing reads again (7 of 23 increments lost). Now the move
// leaves a forward at the old key: 23 increments, the migration messages
// interleaved at random points, end with 23 in the new chat's session and
// nothing under the old key, sequentially in any order and with the two
// chats running side by side; on Memory, on a plain byte store, with a
// TTL kept natively or in the envelope, and on a store with a Locker of
// its own.
func TestScenarioChatMigrationStrandsNoUpdate(t *testing.T) {
	increment := func(chat int64) tgbotapi.Update {
		return tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: chat}, From: &tgbotapi.User{ID: 7}, Text: "+1"}}
	}
	stores := map[string]struct {
		store func() session.Store
		ttl   time.Duration
	}{
		"memory":              {func() session.Store { return session.NewMemory() }, 0},
		"memory, native TTL":  {func() session.Store { return session.NewMemory() }, time.Hour},
		"bytes":               {func() session.Store { return plainStore{session.NewMemory()} }, 0},
		"bytes, envelope TTL": {func() session.Store { return plainStore{session.NewMemory()} }, time.Hour},
		"a store with Locker": {session.NewFakeLockStore, 0},
		"a logging wrapper":   {func() session.Store { return &logStore{base: session.NewFakeLockStore()} }, 0},
	}
	for name, tc := range stores {
		for run := range 40 {
			rng := rand.New(rand.NewPCG(uint64(run), 23))
			store := tc.store()
			opts := session.Options[tally]{Storage: store, TTL: tc.ttl, Lazy: run%4 >= 2, ChatMigration: true}
			h := mustMiddleware(t, opts, func(c *session.Context[tally]) error {
				s, err := c.Session()
				if err == nil && c.Update.Message.Text == "+1" {
					s.Count++
				}
				return err
			})
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
			assert.False(t, has(t, store, "-100"), "%s run %d: nothing under the old key", name, run)
			if lockStore, ok := unwrapFake(store); ok {
				assert.Empty(t, session.FakeLockStoreHeld(lockStore), "%s run %d: every lease ended", name, run)
			}
		}
	}
}

// unwrapFake finds the fake lock store under a logging wrapper.
func unwrapFake(s session.Store) (session.Store, bool) {
	if l, ok := s.(*logStore); ok {
		s = l.base
	}
	if _, ok := session.Unwrap[session.Locker](s); !ok {
		return nil, false
	}
	return s, true
}

func TestChatMigrationForwardIsNotListedAsASession(t *testing.T) {
	store := session.NewMemory()
	write(t, store, "-100", tally{5})
	sess, err := session.New(session.Options[tally]{Storage: store, ChatMigration: true})
	require.NoError(t, err)
	require.NoError(t, sess.Middleware(nothing[tally])(session.NewContext[tally](context.Background(), nil, migrateTo())))

	var rawKeys []string
	for k, err := range store.Keys(context.Background()) {
		require.NoError(t, err)
		rawKeys = append(rawKeys, k)
	}
	assert.Len(t, rawKeys, 2, "the moved session and the old key's forward")
	var keys []string
	for e, err := range sess.Entries(context.Background()) {
		require.NoError(t, err)
		keys = append(keys, e.Key)
		assert.Equal(t, tally{5}, e.Value)
	}
	assert.Equal(t, []string{"-1001234"}, keys, "sessions only")
}

// TestChatMigrationForwardExpiresWithTheSession: with a native TTL the
// forward left at the old key expires like a session, so a group that
// migrated leaves nothing behind for ever.
func TestChatMigrationForwardExpiresWithTheSession(t *testing.T) {
	clock := session.NewTestClock()
	store := session.NewMemory(session.MemoryOptions{Clock: clock.Now})
	write(t, store, "-100", tally{5})
	h := mustMiddleware(t, session.Options[tally]{Storage: store, TTL: time.Hour, Clock: clock.Now, ChatMigration: true}, nothing[tally])
	require.NoError(t, h(session.NewContext[tally](context.Background(), nil, migrateTo())))
	assert.Equal(t, 2, session.MemoryMapLen(store))
	clock.Advance(time.Hour)
	n := 0
	for range store.Keys(context.Background()) {
		n++
	}
	assert.Zero(t, n, "the moved session and the forward both expired")
}

// plainStore is a user's own byte store: just the three methods.
type plainStore struct{ m *session.Memory }

func (p plainStore) Read(ctx context.Context, k string) ([]byte, bool, error) {
	return p.m.Read(ctx, k)
}
func (p plainStore) Write(ctx context.Context, k string, v []byte) error { return p.m.Write(ctx, k, v) }
func (p plainStore) Delete(ctx context.Context, k string) error          { return p.m.Delete(ctx, k) }

// logStore is a user's logging wrapper that follows the Unwrap
// convention, so the store's capabilities stay found.
type logStore struct {
	base session.Store
	mu   sync.Mutex
	n    int
}

func (l *logStore) count() { l.mu.Lock(); l.n++; l.mu.Unlock() }

func (l *logStore) Read(ctx context.Context, k string) ([]byte, bool, error) {
	l.count()
	return l.base.Read(ctx, k)
}

func (l *logStore) Write(ctx context.Context, k string, v []byte) error {
	l.count()
	return l.base.Write(ctx, k, v)
}

func (l *logStore) Delete(ctx context.Context, k string) error {
	l.count()
	return l.base.Delete(ctx, k)
}

func (l *logStore) Unwrap() session.Store { return l.base }
