// Command migrations is the pets bot of the session docs after a change
// of its session type: version 1 stored pet names ({"petNames": [...]}),
// version 2 stores pets ({"pets": [{"name", "species"}]}). The session's
// Options carry a typed migration, which converts old data on read
// (grammY's enhanced storage format), and a TTL, which expires sessions a
// week after their last use.
//
// /pets lists the chat's pets, /adopt <name> <species> adds one, and /raw
// shows the bytes stored for the chat.
//
// Without TELEGRAM_BOT_TOKEN it seeds the store with version-1 data, as
// the old bot left it, then plays a scripted conversation (with a fake
// clock, so days pass in an instant) against a fake Telegram:
//
//	go run ./examples/migrations
//
// With a token it runs against Telegram until interrupted:
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... go run ./examples/migrations
package main

import (
	"context"
	"fmt"
	"io"
	"strings"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo"
)

// PetsV1 is the session as the old bot stored it.
type PetsV1 struct {
	PetNames []string `json:"petNames"`
}

// Pet is one pet.
type Pet struct {
	Name    string `json:"name"`
	Species string `json:"species"`
}

// Pets is the session now.
type Pets struct {
	Pets []Pet `json:"pets"`
}

// TTL is how long a chat's pets are kept after its last use.
const TTL = 7 * 24 * time.Hour

// migrations converts version 1 (stored without a version) to version 2.
var migrations = map[float64]session.Migration{
	2: session.Migrate(func(old PetsV1) (Pets, error) {
		var v Pets
		for _, n := range old.PetNames {
			v.Pets = append(v.Pets, Pet{Name: n, Species: "?"}) // version 1 did not know
		}
		return v, nil
	}),
}

// newBot returns the handler over store, which /raw reads directly.
func newBot(store session.Store, clock func() time.Time) (session.Handler[Pets], error) {
	sess, err := session.New(session.Options[Pets]{Storage: store, TTL: TTL, Migrations: migrations, Clock: clock})
	if err != nil {
		return nil, err
	}
	return sess.Middleware(func(c *session.Context[Pets]) error {
		m := c.Update.Message
		if m == nil || !m.IsCommand() {
			return nil
		}
		s, err := c.Session()
		if err != nil {
			return err
		}
		var reply string
		switch m.Command() {
		case "pets":
			var names []string
			for _, p := range s.Pets {
				names = append(names, fmt.Sprintf("%s (%s)", p.Name, p.Species))
			}
			reply = "You have no pets."
			if len(names) > 0 {
				reply = "Your pets: " + strings.Join(names, ", ") + "."
			}
		case "adopt":
			name, species, _ := strings.Cut(m.CommandArguments(), " ")
			if name == "" || species == "" {
				reply = "Use /adopt <name> <species>."
				break
			}
			s.Pets = append(s.Pets, Pet{Name: name, Species: species})
			reply = fmt.Sprintf("Welcome, %s the %s!", name, species)
		case "raw":
			key, _ := c.SessionKey()
			data, found, err := store.Read(c, key)
			if err != nil {
				return err
			}
			reply = "Stored: " + string(data)
			if !found {
				reply = "Stored: nothing"
			}
		default:
			return nil
		}
		_, err = c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, reply))
		return err
	}), nil
}

func main() { demo.Main("migrations", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) error {
	if token == "" {
		clk := demo.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
		// Memory expires sessions itself (it is a session.Expirer), on the
		// demo's clock.
		store := session.NewMemory(session.MemoryOptions{Clock: clk.Now})
		h, err := newBot(store, clk.Now)
		if err != nil {
			return err
		}
		// What the old bot left in Alice's chat: version 1, no envelope.
		alice := fmt.Sprint(demo.Users["Alice"])
		if err := store.Write(ctx, alice, []byte(`{"petNames":["Rex","Tom"]}`)); err != nil {
			return err
		}
		day := 24 * time.Hour
		return demo.Play(ctx, out, "migrations", h, []demo.Line{
			{From: "Alice", Text: "/raw", Note: "(the old bot stored Alice's pets by name)"},
			{From: "Alice", Text: "/pets"},
			{From: "Alice", Text: "/raw"},
			{From: "Alice", Text: "/adopt Bella cat"},
			{From: "Bob", Text: "/adopt Rocky dog"},
			{From: "Bob", Text: "/pets", Before: clk.Pass(5 * day), Note: "(5 days pass)"},
			{From: "Alice", Text: "/pets", Before: clk.Pass(5 * day), Note: "(5 more days pass: Alice's chat has been idle for 10, Bob's for 5)"},
			{From: "Alice", Text: "/raw"},
			{From: "Bob", Text: "/pets"},
		})
	}
	h, err := newBot(session.NewMemory(), nil)
	if err != nil {
		return err
	}
	return demo.Serve(ctx, out, token, h, "")
}
