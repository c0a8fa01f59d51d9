package wizard_test

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/wizard"
)

// address is what the address sub-flow collects.
type address struct {
	Street string `json:"street"`
	Number int    `json:"number"`
}

// newAddressWizard asks for a street and a number; the number comes from
// buttons.
func newAddressWizard(leaves *[]string) *wizard.Wizard[sess, address] {
	w := wizard.New("addr", wizard.Field(func(s *sess) *wizard.State[address] { return &s.Addr }),
		wizard.Options[sess, address]{
			Cancel: []string{"cancel"},
			OnLeave: func(f *wizard.Flow[sess, address], why wizard.Reason) error {
				*leaves = append(*leaves, "addr "+why.String())
				return nil
			},
			OnError: func(_ *session.Context[sess], err error) {
				var serr *wizard.StaleError
				if errors.As(err, &serr) {
					*leaves = append(*leaves, "addr reported "+string(serr.Data))
				}
			},
		})
	w.Step("street", func(f *wizard.Flow[sess, address]) error { return f.Reply("Street?") },
		func(f *wizard.Flow[sess, address]) error {
			f.Data.Street = f.Text()
			return f.Next()
		})
	w.Step("number", func(f *wizard.Flow[sess, address]) error {
		m := tgbotapi.NewMessage(f.ChatID(), "Number?")
		m.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
			tgbotapi.NewInlineKeyboardButtonData("1", "1"), tgbotapi.NewInlineKeyboardButtonData("2", "2")))
		return f.Send(m)
	}, func(f *wizard.Flow[sess, address]) error {
		n, err := strconv.Atoi(f.Text())
		if err != nil {
			return wizard.Invalid("Press a number.")
		}
		f.Data.Number = n
		return f.Next()
	})
	return w
}

// newCheckout is a parent wizard: a size, the address sub-flow, and a
// confirmation; a new process gets new wizards over the same store.
func newCheckout(leaves *[]string) (*wizard.Wizard[sess, order], *wizard.Wizard[sess, address]) {
	addr := newAddressWizard(leaves)
	w := wizard.New("checkout", wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order }),
		wizard.Options[sess, order]{
			Cancel: []string{"cancel"},
			Pass:   []string{"help"},
			OnLeave: func(f *wizard.Flow[sess, order], why wizard.Reason) error {
				*leaves = append(*leaves, "checkout "+why.String())
				if why == wizard.Done {
					return f.Reply(fmt.Sprintf("%s to %s", f.Data.Size, f.Data.Address))
				}
				return nil
			},
		})
	w.Step("size", func(f *wizard.Flow[sess, order]) error { return f.Reply("Size?") },
		func(f *wizard.Flow[sess, order]) error {
			f.Data.Size = f.Text()
			return f.Next()
		})
	wizard.SubStep(w, "address", addr,
		func(f *wizard.Flow[sess, order]) address { return address{} },
		func(f *wizard.Flow[sess, order], a address) error {
			f.Data.Address = fmt.Sprintf("%s %d", a.Street, a.Number)
			return nil
		})
	w.Step("confirm", func(f *wizard.Flow[sess, order]) error { return f.Reply("OK?") },
		func(f *wizard.Flow[sess, order]) error { return f.Leave() })
	return w, addr
}

// checkoutBot serves a checkout over store, as one process of the bot.
func checkoutBot(t *testing.T, hs *harness, store session.Store, leaves *[]string) {
	w, _ := newCheckout(leaves)
	hs.h = newSession(t, session.Options[sess]{Storage: store}).Middleware(w.Middleware(func(c *session.Context[sess]) error {
		m := c.Update.Message
		if m == nil {
			return nil
		}
		if m.Command() == "checkout" {
			return w.Enter(c, order{})
		}
		_, err := c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, "next: "+m.Text))
		return err
	}))
}

// A step runs another wizard and goes on at its next step when that one
// is done; the stack is stored, so a restarted bot resumes the sub-flow;
// Pass commands reach the bot mid-sub-flow; old buttons stay closed.
func TestSubFlowResumesParent(t *testing.T) {
	store := session.NewMemory()
	hs := newHarness(t)
	var leaves []string
	checkoutBot(t, hs, store, &leaves)

	assert.Equal(t, []string{"Size?"}, hs.say(5, "/checkout"))
	assert.Equal(t, []string{"Street?"}, hs.say(5, "L"), "the sub-flow starts")
	assert.Equal(t, []string{"next: /help"}, hs.say(5, "/help"), "Pass commands reach the bot mid-flow")
	assert.Equal(t, []string{"Number?"}, hs.say(5, "Oak St"))

	stored, found := readJSON[sess](t, store, "5")
	require.True(t, found)
	assert.Equal(t, "address", stored.Order.Step, "the parent waits at its sub-step")
	assert.Equal(t, "number", stored.Addr.Step)
	assert.Equal(t, "checkout", stored.Addr.Parent)

	// A new process, with new wizards, over the same store.
	checkoutBot(t, hs, store, &leaves)
	assert.Equal(t, []string{"Press a number.", "Number?"}, hs.say(5, "x"))
	old := hs.lastButtons(5)
	assert.Equal(t, []string{"Number?"}, hs.say(5, "y")[1:], "asked again")
	assert.Empty(t, hs.pressUnder(5, old, "2"), "a press of the question asked before is closed")
	assert.Equal(t, []string{"OK?"}, hs.press(5, "2"), "done: the parent goes on at its next step")
	assert.Equal(t, []string{"L to Oak St 2"}, hs.say(5, "yes"))
	assert.Equal(t, []string{"addr done", "checkout done"}, leaves)

	raw, _, err := store.Read(context.Background(), "5")
	require.NoError(t, err)
	assert.JSONEq(t, `{"orders":0}`, string(raw), "nothing of either flow is left")
}

// Cancelling inside a sub-flow leaves the whole stack, innermost first;
// so does the child's own cancel.
func TestSubFlowCancel(t *testing.T) {
	store := session.NewMemory()
	hs := newHarness(t)
	var leaves []string
	checkoutBot(t, hs, store, &leaves)

	hs.say(5, "/checkout")
	hs.say(5, "L")
	assert.Empty(t, hs.say(5, "/cancel"))
	assert.Equal(t, []string{"addr cancelled", "checkout cancelled"}, leaves)
	assert.Equal(t, []string{"next: hi"}, hs.say(5, "hi"), "no flow runs any more")
	raw, _, err := store.Read(context.Background(), "5")
	require.NoError(t, err)
	assert.JSONEq(t, `{"orders":0}`, string(raw))
}

// A parent waiting for a sub-flow whose state is gone (or no longer
// decodes) leaves Stale, and the chat goes on.
func TestSubFlowMissingChild(t *testing.T) {
	store := session.NewMemory()
	hs := newHarness(t)
	var leaves []string
	checkoutBot(t, hs, store, &leaves)
	require.NoError(t, store.Write(context.Background(), "5", []byte(`{"order":{"step":"address","data":{}},"addr":{"step":"street","parent":"checkout","data":[1]}}`)))
	assert.Equal(t, []string{"next: hi"}, hs.say(5, "hi"))
	assert.Equal(t, []string{"addr reported [1]", "addr stale", "checkout stale"}, leaves)

	leaves = nil
	require.NoError(t, store.Write(context.Background(), "5", []byte(`{"order":{"step":"address","data":{}}}`)))
	assert.Equal(t, []string{"next: hi"}, hs.say(5, "hi"))
	assert.Equal(t, []string{"checkout stale"}, leaves)
}

// Two wizards on one session take only their own buttons: a press of one
// wizard's prompt never reaches the other's step, even while both run,
// and buttons the wizards did not send reach the bot.
func TestTwoWizardsOneSession(t *testing.T) {
	hs := newHarness(t)
	var leaves []string
	addr := newAddressWizard(&leaves)
	yes := newConfirmWizard(&errLog{})
	var reached []string
	hs.h = newSession(t, session.Options[sess]{}).Middleware(addr.Middleware(yes.Middleware(func(c *session.Context[sess]) error {
		if q := c.Update.CallbackQuery; q != nil {
			reached = append(reached, q.Data)
			return nil
		}
		if c.Update.Message.Command() != "both" {
			return nil
		}
		m := tgbotapi.NewMessage(3, "Menu")
		m.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(tgbotapi.NewInlineKeyboardButtonData("Menu", "menu")))
		if _, err := c.Bot.Send(m); err != nil {
			return err
		}
		return errors.Join(yes.Enter(c, confirm{}), addr.Enter(c, address{}))
	})))
	assert.Equal(t, []string{"Menu", "Deliver?", "Street?"}, hs.say(3, "/both"))
	menu, deliver := hs.srv.Sent()[0].MessageID, hs.lastButtons(3)
	assert.Equal(t, []string{"Number?"}, hs.say(3, "Elm"), "the outer wizard takes messages")
	number := hs.lastButtons(3)

	// One wizard's tag under the other's message: closed, for both ways.
	for _, forged := range []struct {
		msg  int
		data string
	}{{number, yes.ButtonData("yes")}, {deliver, addr.ButtonData("1")}} {
		hs.srv.AddUpdate(tgbotapi.Update{CallbackQuery: &tgbotapi.CallbackQuery{
			ID: "forged", From: &tgbotapi.User{ID: 3}, Data: forged.data,
			Message: &tgbotapi.Message{MessageID: forged.msg, Chat: &tgbotapi.Chat{ID: 3, Type: "private"}},
		}})
		require.NoError(t, hs.pump())
		assert.Empty(t, hs.replies())
	}
	assert.Equal(t, []string{"Pay now?"}, hs.pressUnder(3, deliver, "yes"), "the inner wizard's press passes the outer")
	assert.Empty(t, hs.pressUnder(3, number, "2"))
	assert.Equal(t, []string{"addr done"}, leaves)
	assert.Empty(t, hs.pressUnder(3, menu, "menu"))
	assert.Equal(t, []string{"menu"}, reached, "only the bot's own button reached the bot")
	assert.Equal(t, []string{wizard.DefaultClosed, wizard.DefaultClosed, "", ""}, hs.answers(),
		"the forged presses were answered as closed; the bot's own button is the bot's to answer")
}
