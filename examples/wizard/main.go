// Command wizard takes pizza orders with a multi-step conversation from
// package wizard: a size chosen with buttons, toppings toggled with
// buttons, a delivery address that must look like one (or the bot asks
// again), and a confirmation. /cancel leaves the order at any step, and
// an order left alone for 15 minutes is dropped. A button under an older
// question (the toppings before the last toggle, a confirmation before
// the address changed, any button of a finished order) is answered "This
// question is closed." and changes nothing.
//
// Without TELEGRAM_BOT_TOKEN it plays two scripted orders (with a fake
// clock, so the timeout passes in an instant) against a fake Telegram:
//
//	go run ./examples/wizard
//
// With a token it runs against Telegram until interrupted:
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... go run ./examples/wizard
package main

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo"
	"github.com/tgsession/session/wizard"
)

// Order is what the wizard collects.
type Order struct {
	Size     string   `json:"size"`
	Toppings []string `json:"toppings"`
	Address  string   `json:"address"`
}

// Session is a chat's session: the order wizard and the orders placed.
type Session struct {
	Order  wizard.State[Order] `json:"order,omitzero"` // nothing stored once the order ends
	Placed int                 `json:"placed"`
}

// Flow is the wizard's view of an update.
type Flow = wizard.Flow[Session, Order]

var toppings = []string{"cheese", "mushrooms", "olives"}

// newBot returns the handler and its order wizard; clock is the wizard's
// clock (nil: time.Now).
func newBot(clock func() time.Time) (session.Handler[Session], *wizard.Wizard[Session, Order], error) {
	order := wizard.New("order", wizard.Field(func(s *Session) *wizard.State[Order] { return &s.Order }),
		wizard.Options[Session, Order]{
			Timeout: 15 * time.Minute,
			Clock:   clock,
			Cancel:  []string{"cancel"},
			OnLeave: left,
		})
	order.Step("size", askSize, takeSize)
	order.Step("toppings", askToppings, takeToppings)
	order.Step("address", askAddress, takeAddress)
	order.Step("confirm", askConfirm, takeConfirm)

	sess, err := session.New(session.Options[Session]{})
	if err != nil {
		return nil, nil, err
	}
	// Updates the wizard does not take (no order running) come here.
	// Presses of an order's old buttons do not: the wizard answers them
	// "This question is closed."
	return sess.Middleware(order.Middleware(func(c *session.Context[Session]) error {
		m := c.Update.Message
		if m == nil {
			return nil
		}
		if m.Command() == "order" {
			return order.Enter(c, Order{})
		}
		_, err := c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, "Send /order to order a pizza."))
		return err
	})), order, nil
}

func askSize(f *Flow) error {
	m := tgbotapi.NewMessage(f.ChatID(), "Which size?")
	m.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
		tgbotapi.NewInlineKeyboardButtonData("Small", "small"),
		tgbotapi.NewInlineKeyboardButtonData("Large", "large"),
	))
	return f.Send(m)
}

func takeSize(f *Flow) error {
	if q := f.Update.CallbackQuery; q == nil || (q.Data != "small" && q.Data != "large") {
		return wizard.Invalid("Please press one of the buttons.")
	}
	f.Data.Size = f.Text()
	return f.Next()
}

func askToppings(f *Flow) error {
	var row []tgbotapi.InlineKeyboardButton
	for _, t := range toppings {
		label := t
		if slices.Contains(f.Data.Toppings, t) {
			label = "✓ " + t
		}
		row = append(row, tgbotapi.NewInlineKeyboardButtonData(label, t))
	}
	m := tgbotapi.NewMessage(f.ChatID(), "Toppings? Press to add or remove, then Done.")
	m.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(row, tgbotapi.NewInlineKeyboardRow(
		tgbotapi.NewInlineKeyboardButtonData("« Back", "back"),
		tgbotapi.NewInlineKeyboardButtonData("Done", "done"),
	))
	return f.Send(m)
}

func takeToppings(f *Flow) error {
	switch t := f.Text(); {
	case f.Update.CallbackQuery == nil:
		return wizard.Invalid("Please use the buttons.")
	case t == "back":
		return f.Back()
	case t == "done":
		return f.Next()
	case slices.Contains(toppings, t):
		if i := slices.Index(f.Data.Toppings, t); i >= 0 {
			f.Data.Toppings = slices.Delete(f.Data.Toppings, i, i+1)
		} else {
			f.Data.Toppings = append(f.Data.Toppings, t)
		}
		return askToppings(f) // show the new choice
	}
	return nil
}

func askAddress(f *Flow) error { return f.Reply("Where should we deliver it?") }

func takeAddress(f *Flow) error {
	a := strings.TrimSpace(f.Text())
	if len(a) < 5 || !strings.ContainsAny(a, "0123456789") {
		return wizard.Invalid("That does not look like an address: a street and a number, please.")
	}
	f.Data.Address = a
	return f.Next()
}

func askConfirm(f *Flow) error {
	m := tgbotapi.NewMessage(f.ChatID(), fmt.Sprintf("A %s pizza with %s, to %s. Order it?",
		f.Data.Size, describe(f.Data.Toppings), f.Data.Address))
	m.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
		tgbotapi.NewInlineKeyboardButtonData("Yes", "yes"),
		tgbotapi.NewInlineKeyboardButtonData("Change address", "address"),
	))
	return f.Send(m)
}

func takeConfirm(f *Flow) error {
	switch f.Text() {
	case "yes":
		return f.Leave()
	case "address":
		return f.Goto("address")
	}
	return wizard.Invalid("Please press one of the buttons.")
}

// left ends every order: placed, cancelled, or timed out.
func left(f *Flow, why wizard.Reason) error {
	switch why {
	case wizard.Done:
		s, err := f.Session()
		if err != nil {
			return err
		}
		s.Placed++
		return f.Reply(fmt.Sprintf("Order #%d placed: a %s pizza with %s. 🍕", s.Placed, f.Data.Size, describe(f.Data.Toppings)))
	case wizard.Cancelled:
		return f.Reply("Order cancelled.")
	case wizard.Expired:
		return f.Reply("Your unfinished order was dropped after 15 minutes.")
	}
	return nil
}

func describe(toppings []string) string {
	if len(toppings) == 0 {
		return "no toppings"
	}
	return strings.Join(toppings, " and ")
}

func main() { demo.Main("wizard", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) error {
	if token == "" {
		clk := demo.NewClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
		h, order, err := newBot(clk.Now)
		if err != nil {
			return err
		}
		// The demo presses buttons by their callback data, which the
		// wizard tags with its name.
		press := order.ButtonData
		return demo.Play(ctx, out, "wizard", h, []demo.Line{
			{From: "Alice", Text: "hi"},
			{From: "Alice", Text: "/order"},
			{From: "Alice", Text: "large please"},
			{From: "Alice", Press: press("large")},
			{From: "Alice", Press: press("mushrooms")},
			{From: "Alice", Press: press("olives")},
			{From: "Alice", Press: press("mushrooms")},
			{From: "Alice", Press: press("done")},
			{From: "Alice", Text: "home"},
			{From: "Alice", Text: "12 Oak Street"},
			{From: "Alice", Press: press("address")},
			{From: "Alice", Text: "14 Oak Street"},
			{From: "Alice", Press: press("yes")},
			{From: "Bob", Text: "/order"},
			{From: "Bob", Press: press("small")},
			{From: "Bob", Press: press("back")},
			{From: "Bob", Press: press("large")},
			{From: "Bob", Text: "/cancel"},
			{From: "Bob", Text: "/order"},
			{From: "Bob", Text: "small", Before: clk.Pass(20 * time.Minute), Note: "(20 minutes pass)"},
		})
	}
	h, _, err := newBot(nil)
	if err != nil {
		return err
	}
	return demo.Serve(ctx, out, token, h, "")
}
