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

// A sign-up whose second step is a sub-flow of its own, an address
// wizard; when that one is done, the sign-up goes on at its next step.
func ExampleSubStep() {
	type Address struct{ City, Street string }
	type Profile struct {
		Name    string
		Address string
	}
	type Session struct {
		SignUp  wizard.State[Profile] `json:"signUp,omitzero"`
		Address wizard.State[Address] `json:"address,omitzero"`
	}
	type Flow = wizard.Flow[Session, Profile]
	type AddressFlow = wizard.Flow[Session, Address]

	address := wizard.New("address", wizard.Field(func(s *Session) *wizard.State[Address] { return &s.Address }),
		wizard.Options[Session, Address]{})
	address.Step("city", func(f *AddressFlow) error { return f.Reply("City?") },
		func(f *AddressFlow) error { f.Data.City = f.Text(); return f.Next() })
	address.Step("street", func(f *AddressFlow) error { return f.Reply("Street?") },
		func(f *AddressFlow) error { f.Data.Street = f.Text(); return f.Next() })

	signUp := wizard.New("signup", wizard.Field(func(s *Session) *wizard.State[Profile] { return &s.SignUp }),
		wizard.Options[Session, Profile]{
			Cancel: []string{"cancel"}, // also leaves the address sub-flow
			OnLeave: func(f *Flow, why wizard.Reason) error {
				return f.Reply(fmt.Sprintf("%s: %s, %s", why, f.Data.Name, f.Data.Address))
			},
		})
	signUp.Step("name", func(f *Flow) error { return f.Reply("Your name?") },
		func(f *Flow) error { f.Data.Name = f.Text(); return f.Next() })
	wizard.SubStep(signUp, "address", address, nil, func(f *Flow, a Address) error {
		f.Data.Address = a.Street + ", " + a.City
		return nil
	})
	signUp.Step("confirm", func(f *Flow) error { return f.Reply("Send ok to confirm.") },
		func(f *Flow) error { return f.Leave() })

	sess, err := session.New(session.Options[Session]{})
	if err != nil {
		fmt.Println(err)
		return
	}
	// Only the sign-up's middleware is needed: it serves its sub-flows.
	h := sess.Middleware(signUp.Middleware(func(c *session.Context[Session]) error {
		return signUp.Enter(c, Profile{})
	}))

	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, text := range []string{"hi", "Ada", "London", "1 Main St", "ok"} {
		fmt.Println("user:", text)
		u := tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 42}, From: &tgbotapi.User{ID: 42}, Text: text}}
		before := len(srv.Sent())
		if err := h(session.NewContext[Session](context.Background(), bot, u)); err != nil {
			fmt.Println(err)
		}
		for _, m := range srv.Sent()[before:] {
			fmt.Println("bot: ", m.Text)
		}
	}
	// Output:
	// user: hi
	// bot:  Your name?
	// user: Ada
	// bot:  City?
	// user: London
	// bot:  Street?
	// user: 1 Main St
	// bot:  Send ok to confirm.
	// user: ok
	// bot:  done: Ada, 1 Main St, London
}
