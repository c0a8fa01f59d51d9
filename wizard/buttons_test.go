package wizard_test

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/wizard"
)

// newConfirmField is the Locate of the confirm wizards.
func newConfirmField() wizard.Locate[sess, confirm] {
	return wizard.Field(func(s *sess) *wizard.State[confirm] { return &s.Confirm })
}

// Flow.Send tags callback buttons only, in a copy: the caller's keyboard
// is left as it was, and a config passed by pointer works too.
func TestSendTagsCallbackButtonsOnly(t *testing.T) {
	kb := tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
		tgbotapi.NewInlineKeyboardButtonData("Yes", "yes"),
		tgbotapi.NewInlineKeyboardButtonURL("Docs", "https://example.com"),
	))
	w := wizard.New("tags", newConfirmField(), wizard.Options[sess, confirm]{})
	w.Step("ask", func(f *wizard.Flow[sess, confirm]) error {
		m := tgbotapi.NewMessage(f.ChatID(), "Sure?")
		m.ReplyMarkup = kb
		return f.Send(&m)
	}, func(f *wizard.Flow[sess, confirm]) error { return f.Reply("got " + f.Update.CallbackQuery.Data) })
	hs := confirmBot(t, session.NewMemory(), w)

	hs.say(1, "/go")
	sent := hs.srv.Sent()
	row := sent[len(sent)-1].InlineKeyboard[0]
	assert.Equal(t, "~tags~yes", *row[0].CallbackData)
	assert.Nil(t, row[1].CallbackData)
	assert.Equal(t, "https://example.com", *row[1].URL)
	assert.Equal(t, "yes", *kb.InlineKeyboard[0][0].CallbackData, "the caller's keyboard is not changed")
	assert.Equal(t, []string{"got yes"}, hs.press(1, "yes"), "the step sees the data it gave")
}

// An edit of a prompt keeps it the question's prompt; a new message with
// buttons sent by the step closes the older ones.
func TestSendEditAndResend(t *testing.T) {
	w := wizard.New("edit", newConfirmField(), wizard.Options[sess, confirm]{})
	keyboard := func(label string) tgbotapi.InlineKeyboardMarkup {
		return tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
			tgbotapi.NewInlineKeyboardButtonData(label, "toggle"),
			tgbotapi.NewInlineKeyboardButtonData("Resend", "resend"),
		))
	}
	w.Step("ask", func(f *wizard.Flow[sess, confirm]) error {
		m := tgbotapi.NewMessage(f.ChatID(), "Toggle?")
		m.ReplyMarkup = keyboard("off")
		return f.Send(m)
	}, func(f *wizard.Flow[sess, confirm]) error {
		q := f.Update.CallbackQuery
		switch f.Text() {
		case "toggle":
			f.Data.Deliver += "x"
			return f.Send(tgbotapi.NewEditMessageReplyMarkup(q.Message.Chat.ID, q.Message.MessageID, keyboard(f.Data.Deliver)))
		case "resend":
			m := tgbotapi.NewMessage(f.ChatID(), "Toggle again?")
			m.ReplyMarkup = keyboard(f.Data.Deliver)
			return f.Send(m)
		}
		return nil
	})
	store := session.NewMemory()
	hs := confirmBot(t, store, w)
	hs.say(1, "/go")
	first := hs.lastButtons(1)
	hs.pressUnder(1, first, "toggle")
	hs.pressUnder(1, first, "toggle")
	st, _ := readJSON[sess](t, store, "1")
	assert.JSONEq(t, `{"deliver":"xx","payNow":""}`, string(st.Confirm.Data), "the edited prompt still takes presses")

	hs.pressUnder(1, first, "resend")
	second := hs.lastButtons(1)
	require.NotEqual(t, first, second)
	hs.pressUnder(1, first, "toggle")
	st, _ = readJSON[sess](t, store, "1")
	assert.JSONEq(t, `{"deliver":"xx","payNow":""}`, string(st.Confirm.Data), "the older message is closed")
	hs.pressUnder(1, second, "toggle")
	st, _ = readJSON[sess](t, store, "1")
	assert.JSONEq(t, `{"deliver":"xxx","payNow":""}`, string(st.Confirm.Data))
	assert.Equal(t, []wizard.Prompt{{Chat: 1, Message: second}}, st.Confirm.Prompts)
}

// Callback data that the tag would push past Telegram's 64 bytes fails
// the send, naming the button, instead of a 400 from Telegram.
func TestSendCallbackDataTooLong(t *testing.T) {
	w := wizard.New("long", newConfirmField(), wizard.Options[sess, confirm]{})
	w.Step("ask", func(f *wizard.Flow[sess, confirm]) error {
		m := tgbotapi.NewMessage(f.ChatID(), "?")
		m.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
			tgbotapi.NewInlineKeyboardButtonData("Big", strings.Repeat("d", 60))))
		return f.Send(m)
	}, func(*wizard.Flow[sess, confirm]) error { return nil })
	hs := confirmBot(t, session.NewMemory(), w)
	hs.srv.SendMessage(1, 1, "/go")
	err := hs.pump()
	assert.ErrorContains(t, err, `button "Big"`)
	assert.ErrorContains(t, err, "66 bytes")
	assert.Empty(t, hs.srv.Sent())
}

// Buttons sent from OnLeave are the bot's, not the flow's: they are sent
// as given and their presses reach the next handler.
func TestOnLeaveButtonsAreNotTagged(t *testing.T) {
	var reached []string
	w := wizard.New("bye", newConfirmField(), wizard.Options[sess, confirm]{
		OnLeave: func(f *wizard.Flow[sess, confirm], _ wizard.Reason) error {
			m := tgbotapi.NewMessage(f.ChatID(), "Again?")
			m.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(tgbotapi.NewInlineKeyboardButtonData("Again", "again")))
			return f.Send(m)
		},
	})
	w.Step("only", nil, func(f *wizard.Flow[sess, confirm]) error { return f.Leave() })
	hs := newHarness(t)
	hs.h = newSession(t, session.Options[sess]{}).Middleware(w.Middleware(func(c *session.Context[sess]) error {
		if q := c.Update.CallbackQuery; q != nil {
			reached = append(reached, q.Data)
			return nil
		}
		if c.Update.Message.Command() == "go" {
			return w.Enter(c, confirm{})
		}
		return nil
	}))
	hs.say(1, "/go")
	assert.Equal(t, []string{"Again?"}, hs.say(1, "done"))
	hs.srv.Sent()
	_, err := hs.srv.PressButton(1, 1, hs.lastButtons(1), "again")
	require.NoError(t, err, "sent untagged")
	require.NoError(t, hs.pump())
	assert.Equal(t, []string{"again"}, reached)
}

// Options.Closed is the answer to closed presses; an expired flow closes
// its buttons and a cancel command is consumed even then.
func TestClosedAnswerAndExpiry(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	var why []wizard.Reason
	w := wizard.New("exp", newConfirmField(), wizard.Options[sess, confirm]{
		Timeout: time.Minute, Clock: clk.Now, Cancel: []string{"cancel"}, Closed: "Too late!",
		OnLeave: func(_ *wizard.Flow[sess, confirm], r wizard.Reason) error { why = append(why, r); return nil },
	})
	w.Step("ask", askYesNo("Sure?"), func(f *wizard.Flow[sess, confirm]) error { return f.Leave() })
	hs := confirmBot(t, session.NewMemory(), w)

	hs.say(1, "/go")
	clk.Add(time.Minute)
	assert.Empty(t, hs.press(1, "yes"), "an expired flow's button is closed")
	assert.Equal(t, []string{"Too late!"}, hs.answers())
	assert.Equal(t, []wizard.Reason{wizard.Expired}, why)

	hs.say(1, "/go")
	clk.Add(time.Minute)
	assert.Empty(t, hs.say(1, "/cancel"), "the cancel command is consumed")
	assert.Equal(t, []wizard.Reason{wizard.Expired, wizard.Expired}, why)
	assert.Equal(t, []string{"next: /cancel"}, hs.say(1, "/cancel"), "with no flow, it reaches the bot")
}

// State stored by the previous version of the package (data always
// present, no prompts) goes on where it was.
func TestStateOfPreviousVersion(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	store := session.NewMemory()
	old := `{"order":{"step":"qty","trail":["size"],"seen":1700000000000,"data":{"size":"L","qty":0,"address":""}},"orders":2}`
	require.NoError(t, store.Write(context.Background(), "7", []byte(old)))
	w := newOrderWizard(wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order }), clk)
	hs := newHarness(t)
	hs.h = newSession(t, session.Options[sess]{Storage: store}).Middleware(w.Middleware(fallback(w)))
	assert.Equal(t, []string{"Where to?"}, hs.say(7, "2"))
	assert.Equal(t, []string{"Ordered 2 × L to Elm St (order #3)."}, hs.say(7, "Elm St"))
}

// A session Migration that rewrites the wizard's data carries running
// flows across a change of T; migrations run before the wizard decodes.
func TestMigrationCarriesFlow(t *testing.T) {
	store := session.NewMemory()
	// Before, confirm's "deliver" was a bool.
	require.NoError(t, store.Write(context.Background(), "1", []byte(`{"confirm":{"step":"pay","data":{"deliver":true}}}`)))
	migrate := session.Migrate(func(old struct {
		Confirm struct {
			Step string `json:"step"`
			Data struct {
				Deliver bool `json:"deliver"`
			} `json:"data"`
		} `json:"confirm"`
	}) (json.RawMessage, error) {
		d := "no"
		if old.Confirm.Data.Deliver {
			d = "yes"
		}
		return json.Marshal(map[string]any{"confirm": map[string]any{"step": old.Confirm.Step, "data": confirm{Deliver: d}}})
	})
	w := newConfirmWizard(&errLog{})
	hs := newHarness(t)
	hs.h = newSession(t, session.Options[sess]{Storage: store, Migrations: map[float64]session.Migration{1: migrate}}).
		Middleware(w.Middleware(func(*session.Context[sess]) error { return nil }))
	assert.Equal(t, []string{`done: deliver="yes" pay="no"`}, hs.say(1, "no"))
}
