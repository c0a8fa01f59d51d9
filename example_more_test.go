package session_test

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// Every store keeps the session's encoding, JSON by default, so the
// stored bytes are readable by other tools (and by a grammY bot).
func ExampleMemory() {
	type cart struct {
		Items []string `json:"items"`
	}
	store := session.NewMemory() // or any session.Store: Redis, SQL, files
	sess, err := session.New(session.Options[cart]{Storage: store})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := sess.Middleware(func(c *session.Context[cart]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Items = append(s.Items, c.Update.Message.Text)
		return nil
	})
	for _, text := range []string{"apples", "pears"} {
		u := tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 7}, Text: text}}
		if err := h(session.NewContext[cart](context.Background(), nil, u)); err != nil {
			fmt.Println(err)
		}
	}
	raw, _, err := store.Read(context.Background(), "7")
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(string(raw))
	// Output:
	// {"items":["apples","pears"]}
}

// Sessions that expire after an hour without use. Every update that uses
// a session restarts its hour: one that changes it writes it, one that
// only reads it touches it. Memory expires keys itself, so the expiry is
// exact; the clock is injected so the example runs without waiting.
func ExampleOptions_ttl() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { return now }
	sess, err := session.New(session.Options[pizza]{
		Storage: session.NewMemory(session.MemoryOptions{Clock: clock}),
		TTL:     time.Hour,
		Clock:   clock,
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	eat := sess.Middleware(func(c *session.Context[pizza]) error {
		s, err := c.Session()
		if err == nil {
			s.Count++
		}
		return err
	})
	look := sess.Middleware(func(c *session.Context[pizza]) error {
		_, err := c.Session()
		return err
	})
	update := func(h session.Handler[pizza], chat int64) {
		if err := h(session.NewContext[pizza](context.Background(), nil, message(chat, chat, ""))); err != nil {
			fmt.Println(err)
		}
	}
	update(eat, 1) // alice
	update(eat, 2) // bob
	now = now.Add(50 * time.Minute)
	update(look, 1)                 // alice reads hers: its hour starts again
	now = now.Add(20 * time.Minute) // bob: 70 minutes unused; alice: 20

	for e, err := range sess.Entries(context.Background()) {
		fmt.Println(e.Key, e.Value.Count, err)
	}
	// Output:
	// 1 1 <nil>
}

// Listing every stored session, for a broadcast or an admin command. The
// loop body may use the store: Memory lists a snapshot of the keys.
func ExampleSession_Entries() {
	type settings struct{ Lang string }
	store := session.NewMemory()
	ctx := context.Background()
	for key, lang := range map[string]string{"101": "en", "202": "de", "303": "en"} {
		if err := store.Write(ctx, key, []byte(fmt.Sprintf(`{"Lang":%q}`, lang))); err != nil {
			fmt.Println(err)
		}
	}
	sess, err := session.New(session.Options[settings]{Storage: store})
	if err != nil {
		fmt.Println(err)
		return
	}

	var english []string
	for e, err := range sess.Entries(ctx) {
		if err != nil { // a cancelled ctx, say; the sequence ends here
			fmt.Println(err)
			break
		}
		if e.Value.Lang == "en" {
			english = append(english, e.Key)
		}
	}
	slices.Sort(english) // entries come in no particular order
	fmt.Println("English chats:", english)
	// Output:
	// English chats: [101 303]
}

// Migrate upgrades sessions stored by an older release of a bot, which
// kept only pet names, to the new shape with a Pet per name. The stored
// format is grammY's enhanced storage.
func ExampleMigrate() {
	type oldSession struct {
		PetNames []string `json:"petNames"`
	}
	type Pet struct {
		Name     string `json:"name"`
		Birthday int64  `json:"birthday,omitempty"`
	}
	type Session struct {
		Pets []Pet `json:"pets"`
	}

	ctx := context.Background()
	store := session.NewMemory()
	// Stored by the old release, before it used migrations.
	_ = store.Write(ctx, "42", []byte(`{"petNames":["Bob","Ann"]}`))

	sess, err := session.New(session.Options[Session]{
		Storage: store,
		Migrations: map[float64]session.Migration{
			1: session.Migrate(func(old oldSession) (Session, error) {
				var s Session
				for _, name := range old.PetNames {
					s.Pets = append(s.Pets, Pet{Name: name})
				}
				return s, nil
			}),
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := sess.Middleware(func(c *session.Context[Session]) error {
		s, err := c.Session()
		if err == nil {
			fmt.Printf("%+v\n", s.Pets)
		}
		return err
	})
	if err := h(session.NewContext[Session](ctx, nil, message(42, 1, "/pets"))); err != nil {
		fmt.Println(err)
	}

	// The update stored the new shape at the newest version.
	raw, _, _ := store.Read(ctx, "42")
	fmt.Println(string(raw))
	// Output:
	// [{Name:Bob Birthday:0} {Name:Ann Birthday:0}]
	// {"__d":{"pets":[{"name":"Bob"},{"name":"Ann"}]},"v":1}
}

// countingStore is a user's wrapper that counts the calls made through
// it. Its Unwrap method keeps the capabilities of the store it wraps:
// over Redis, the lock across processes; over Memory, the native expiry
// and the listing.
type countingStore struct {
	session.Store
	mu    sync.Mutex
	calls int
}

func (c *countingStore) count() { c.mu.Lock(); c.calls++; c.mu.Unlock() }

func (c *countingStore) Read(ctx context.Context, k string) ([]byte, bool, error) {
	c.count()
	return c.Store.Read(ctx, k)
}

func (c *countingStore) Write(ctx context.Context, k string, v []byte) error {
	c.count()
	return c.Store.Write(ctx, k, v)
}

func (c *countingStore) Delete(ctx context.Context, k string) error {
	c.count()
	return c.Store.Delete(ctx, k)
}

func (c *countingStore) Unwrap() session.Store { return c.Store }

func ExampleUnwrap() {
	wrapped := &countingStore{Store: session.NewMemory()}
	_, expires := session.Unwrap[session.Expirer](wrapped)
	_, lists := session.Unwrap[session.Lister](wrapped)
	_, locks := session.Unwrap[session.Locker](wrapped)
	fmt.Println("expires:", expires, "lists:", lists, "locks across processes:", locks)

	sess, err := session.New(session.Options[pizza]{Storage: wrapped})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := sess.Middleware(func(c *session.Context[pizza]) error {
		s, err := c.Session()
		if err == nil {
			s.Count++
		}
		return err
	})
	if err := h(session.NewContext[pizza](context.Background(), nil, message(1, 1, "🍕"))); err != nil {
		fmt.Println(err)
	}
	fmt.Println("calls through the wrapper:", wrapped.calls) // the read and the write
	// Output:
	// expires: true lists: true locks across processes: false
	// calls through the wrapper: 2
}
