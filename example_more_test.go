package session_test

import (
	"context"
	"fmt"
	"slices"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// Sessions in a byte store (Redis, SQL, files: here an in-memory one),
// encoded as JSON. The stored bytes are readable by other tools.
func ExampleEncoded() {
	type cart struct {
		Items []string `json:"items"`
	}
	bytes := session.NewMemory[[]byte]()       // any session.StorageAdapter[[]byte]
	store := session.Encoded[cart](bytes, nil) // nil: session.JSON

	h := session.Strict(session.Options[cart]{Storage: store})(func(c *session.Context[cart]) error {
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
	raw, _, err := bytes.Read(context.Background(), "7")
	if err != nil {
		fmt.Println(err)
	}
	fmt.Println(string(raw))
	// Output:
	// {"items":["apples","pears"]}
}

// A memory store whose sessions expire after an hour without use. Every
// write restarts the hour, and so does every update that reads a session
// and leaves it unchanged (the middleware touches it). The clock is
// injected so the example runs without waiting.
func ExampleNewMemory() {
	now := time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC)
	store := session.NewMemory[int](session.MemoryOptions{
		TTL:   time.Hour,
		Clock: func() time.Time { return now },
	})
	ctx := context.Background()
	if err := store.Write(ctx, "alice", 1); err != nil {
		fmt.Println(err)
	}
	if err := store.Write(ctx, "bob", 2); err != nil {
		fmt.Println(err)
	}

	now = now.Add(50 * time.Minute)
	if err := store.Touch(ctx, "alice"); err != nil { // as after an update that used it
		fmt.Println(err)
	}
	now = now.Add(20 * time.Minute) // bob: 70 minutes unused; alice: 20

	for _, key := range []string{"alice", "bob"} {
		v, found, err := store.Read(ctx, key)
		fmt.Println(key, v, found, err)
	}
	// Output:
	// alice 1 true <nil>
	// bob 0 false <nil>
}

// Listing every stored session, for a broadcast or an admin command. The
// loop body may read and write the store: it works on a snapshot of the
// keys.
func ExampleMemory_Entries() {
	type settings struct{ Lang string }
	store := session.NewMemory[settings]()
	ctx := context.Background()
	for key, lang := range map[string]string{"101": "en", "202": "de", "303": "en"} {
		if err := store.Write(ctx, key, settings{Lang: lang}); err != nil {
			fmt.Println(err)
		}
	}

	var english []string
	for e, err := range store.Entries(ctx) {
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
