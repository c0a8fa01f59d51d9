package wizard_test

import (
	"context"
	"fmt"
	"strconv"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/telegramtest"
	"github.com/tgsession/session/wizard"
)

// A two-step sign-up: a name, then an age that must be a number. The bot
// talks to the fake Bot API from telegramtest; in a real bot the updates
// come from polling or a webhook.
func Example() {
	type Profile struct {
		Name string `json:"name"`
		Age  int    `json:"age"`
	}
	type Session struct {
		SignUp wizard.State[Profile] `json:"signUp,omitzero"`
	}

	signUp := wizard.New("signup", wizard.Field(func(s *Session) *wizard.State[Profile] { return &s.SignUp }),
		wizard.Options[Session, Profile]{
			Timeout: 30 * time.Minute,
			Cancel:  []string{"cancel"},
			OnLeave: func(f *wizard.Flow[Session, Profile], why wizard.Reason) error {
				if why != wizard.Done {
					return f.Reply("Sign-up " + why.String() + ".")
				}
				return f.Reply(fmt.Sprintf("Welcome, %s (%d)!", f.Data.Name, f.Data.Age))
			},
		})
	signUp.Step("name",
		func(f *wizard.Flow[Session, Profile]) error { return f.Reply("Your name?") },
		func(f *wizard.Flow[Session, Profile]) error {
			f.Data.Name = f.Text()
			return f.Next()
		})
	signUp.Step("age",
		func(f *wizard.Flow[Session, Profile]) error { return f.Reply("Your age?") },
		func(f *wizard.Flow[Session, Profile]) error {
			age, err := strconv.Atoi(f.Text())
			if err != nil || age <= 0 {
				return wizard.Invalid("That is not an age.")
			}
			f.Data.Age = age
			return f.Next() // the last step: Next leaves with Done
		})

	// Per chat, in memory: the defaults. With runner.Run, give it sess
	// and the wizard's middleware instead of calling h by hand.
	sess, err := session.New(session.Options[Session]{})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := sess.Middleware(signUp.Middleware(func(c *session.Context[Session]) error {
		// Only updates the wizard does not take get here.
		if m := c.Update.Message; m != nil && m.Command() == "start" {
			return signUp.Enter(c, Profile{})
		}
		return nil
	}))

	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, text := range []string{"/start", "Ada", "old", "36"} {
		fmt.Println("user:", text)
		u := tgbotapi.Update{Message: &tgbotapi.Message{
			Chat: &tgbotapi.Chat{ID: 42}, From: &tgbotapi.User{ID: 42}, Text: text,
		}}
		if text[0] == '/' {
			u.Message.Entities = []tgbotapi.MessageEntity{{Type: "bot_command", Length: len(text)}}
		}
		before := len(srv.Sent())
		if err := h(session.NewContext[Session](context.Background(), bot, u)); err != nil {
			fmt.Println(err)
		}
		for _, m := range srv.Sent()[before:] {
			fmt.Println("bot: ", m.Text)
		}
	}
	// Output:
	// user: /start
	// bot:  Your name?
	// user: Ada
	// bot:  Your age?
	// user: old
	// bot:  That is not an age.
	// bot:  Your age?
	// user: 36
	// bot:  Welcome, Ada (36)!
}
