package session_test

import (
	"context"
	"fmt"
	"strings"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// message builds the update a user sends in a chat.
func message(chatID, userID int64, text string) tgbotapi.Update {
	return tgbotapi.Update{Message: &tgbotapi.Message{
		Chat: &tgbotapi.Chat{ID: chatID},
		From: &tgbotapi.User{ID: userID},
		Text: text,
	}}
}

type pizza struct{ Count int }

// A per-chat pizza counter. In a bot, runner.Run passes every update
// through h.
func ExampleNew() {
	sess, err := session.New(session.Options[pizza]{})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := sess.Middleware(func(c *session.Context[pizza]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count += strings.Count(c.Update.Message.Text, "🍕")
		fmt.Printf("chat %d has eaten %d\n", c.Update.Message.Chat.ID, s.Count)
		return nil
	})
	for _, u := range []tgbotapi.Update{message(1, 1, "🍕"), message(2, 2, "🍕🍕"), message(1, 1, "🍕 again")} {
		if err := h(session.NewContext[pizza](context.Background(), nil, u)); err != nil {
			fmt.Println(err)
		}
	}
	// Output:
	// chat 1 has eaten 1
	// chat 2 has eaten 2
	// chat 1 has eaten 2
}

// Lazy sessions read storage only for updates that use the session: here
// only commands do.
func ExampleOptions_lazy() {
	store := session.NewMemory()
	sess, err := session.New(session.Options[pizza]{Storage: store, Lazy: true})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := sess.Middleware(func(c *session.Context[pizza]) error {
		if c.Update.Message.Text != "/eat" {
			return nil // no storage call at all
		}
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count++
		return nil
	})
	for _, text := range []string{"hello", "/eat", "nice", "/eat"} {
		if err := h(session.NewContext[pizza](context.Background(), nil, message(7, 7, text))); err != nil {
			fmt.Println(err)
		}
	}
	raw, _, _ := store.Read(context.Background(), "7")
	fmt.Println("stored:", string(raw))
	// Output:
	// stored: {"Count":2}
}

// Settings per chat and a score per user, each in its own storage, bound
// to fields of one session type.
func ExampleNewMulti() {
	type settings struct{ Lang string }
	type score struct{ Points int }
	type data struct {
		Chat settings
		User score
	}
	chat := session.NewFragment("chat", func(d *data) *settings { return &d.Chat }, session.Options[settings]{
		Initial: func() settings { return settings{Lang: "en"} },
	})
	user := session.NewFragment("user", func(d *data) *score { return &d.User }, session.Options[score]{
		Key: session.ByUser,
	})
	sess, err := session.NewMulti(session.Options[data]{}, chat, user)
	if err != nil {
		fmt.Println(err)
		return
	}
	h := sess.Middleware(func(c *session.Context[data]) error {
		d, err := c.Session()
		if err != nil {
			return err
		}
		d.User.Points++
		fmt.Printf("lang=%s user %d points=%d\n", d.Chat.Lang, c.Update.Message.From.ID, d.User.Points)
		return nil
	})
	for _, u := range []tgbotapi.Update{message(-100, 1, "a"), message(-100, 2, "b"), message(-200, 1, "c")} {
		if err := h(session.NewContext[data](context.Background(), nil, u)); err != nil {
			fmt.Println(err)
		}
	}
	// Output:
	// lang=en user 1 points=1
	// lang=en user 2 points=1
	// lang=en user 1 points=2
}

// With a lazy multi session only the fragments a handler changes are
// written: this handler uses the user's fragment and never the chat's.
func ExampleNewMulti_lazy() {
	type data struct{ Chat, User pizza }
	chatStore := session.NewMemory()
	chat := session.NewFragment("chat", func(d *data) *pizza { return &d.Chat }, session.Options[pizza]{Storage: chatStore})
	user := session.NewFragment("user", func(d *data) *pizza { return &d.User }, session.Options[pizza]{Key: session.ByUser})
	sess, err := session.NewMulti(session.Options[data]{Lazy: true}, chat, user)
	if err != nil {
		fmt.Println(err)
		return
	}
	h := sess.Middleware(func(c *session.Context[data]) error {
		u, err := user.Get(c)
		if err != nil {
			return err
		}
		u.Count++
		fmt.Println("user count:", u.Count)
		return nil
	})
	for range 2 {
		if err := h(session.NewContext[data](context.Background(), nil, message(1, 42, "🍕"))); err != nil {
			fmt.Println(err)
		}
	}
	n := 0
	for range chatStore.Keys(context.Background()) {
		n++
	}
	fmt.Println("chat sessions stored:", n)
	// Output:
	// user count: 1
	// user count: 2
	// chat sessions stored: 0
}
