package wizard_test

// The attacks of issue 18, each run over many chats (or presses) and
// counted. Before the fix (commit 12a7af9) the counts were: old button
// confirms a later question 20/20 chats, failed callback answer drops the
// press 10/10, older state shape locks the chat out 20/20, flow data left
// after the flow ended 20/20. Each test logs its count and requires 0.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/wizard"
)

// confirm is what the yes/no wizard collects.
type confirm struct {
	Deliver string `json:"deliver"`
	PayNow  string `json:"payNow"`
}

// errLog collects what a wizard reports to OnError.
type errLog struct {
	mu   sync.Mutex
	errs []error
}

func (l *errLog) add(_ *session.Context[sess], err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.errs = append(l.errs, err)
}

func (l *errLog) all() []error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]error(nil), l.errs...)
}

// askYesNo is a prompt with the question q and Yes/No buttons.
func askYesNo(q string) func(f *wizard.Flow[sess, confirm]) error {
	return func(f *wizard.Flow[sess, confirm]) error {
		m := tgbotapi.NewMessage(f.ChatID(), q)
		m.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
			tgbotapi.NewInlineKeyboardButtonData("Yes", "yes"),
			tgbotapi.NewInlineKeyboardButtonData("No", "no"),
		))
		return f.Send(m)
	}
}

// newConfirmWizard asks two yes/no questions with the same buttons, the
// shape that let an old "Yes" answer the second question.
func newConfirmWizard(log *errLog) *wizard.Wizard[sess, confirm] {
	w := wizard.New("confirm", wizard.Field(func(s *sess) *wizard.State[confirm] { return &s.Confirm }),
		wizard.Options[sess, confirm]{
			Cancel:  []string{"cancel"},
			OnError: log.add,
			OnLeave: func(f *wizard.Flow[sess, confirm], why wizard.Reason) error {
				return f.Reply(fmt.Sprintf("%s: deliver=%q pay=%q", why, f.Data.Deliver, f.Data.PayNow))
			},
		})
	w.Step("deliver", askYesNo("Deliver?"), func(f *wizard.Flow[sess, confirm]) error {
		f.Data.Deliver = f.Text()
		return f.Next()
	})
	w.Step("pay", askYesNo("Pay now?"), func(f *wizard.Flow[sess, confirm]) error {
		f.Data.PayNow = f.Text()
		return f.Next()
	})
	return w
}

// confirmBot serves w, entering it on /go.
func confirmBot(t *testing.T, store session.Store, w *wizard.Wizard[sess, confirm]) *harness {
	hs := newHarness(t)
	hs.h = newSession(t, session.Options[sess]{Storage: store}).Middleware(w.Middleware(func(c *session.Context[sess]) error {
		if m := c.Update.Message; m != nil && m.Command() == "go" {
			return w.Enter(c, confirm{})
		}
		if m := c.Update.Message; m != nil {
			_, err := c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, "next: "+m.Text))
			return err
		}
		return nil
	}))
	return hs
}

// lastButtons returns the id of the bot's latest message with buttons in chat.
func (h *harness) lastButtons(chat int64) int {
	sent := h.srv.Sent()
	for i := len(sent) - 1; i >= 0; i-- {
		if sent[i].ChatID == chat && len(sent[i].InlineKeyboard) > 0 {
			return sent[i].MessageID
		}
	}
	h.t.Fatalf("no message with buttons in chat %d", chat)
	return 0
}

// answers returns the texts of the answerCallbackQuery calls so far.
func (h *harness) answers() []string {
	var out []string
	for _, r := range h.srv.Requests() {
		if r.Method == "answerCallbackQuery" {
			out = append(out, r.Params.Get("text"))
		}
	}
	return out
}

// Attack 1: "Yes" pressed again under the first yes/no question must not
// answer the second; it is answered as closed and changes nothing.
func TestAttackOldButtonConfirmsLaterQuestion(t *testing.T) {
	store := session.NewMemory()
	hs := confirmBot(t, store, newConfirmWizard(&errLog{}))
	misfires := 0
	for c := int64(1); c <= 20; c++ {
		hs.say(c, "/go")
		first := hs.lastButtons(c)
		require.Equal(t, []string{"Pay now?"}, hs.pressUnder(c, first, "yes"))
		before, _, err := store.Read(context.Background(), strconv.FormatInt(c, 10))
		require.NoError(t, err)
		replies := hs.pressUnder(c, first, "yes") // again, under the old question
		after, _, err := store.Read(context.Background(), strconv.FormatInt(c, 10))
		require.NoError(t, err)
		if len(replies) > 0 || string(before) != string(after) {
			misfires++
		}
		answers := hs.answers()
		assert.Equal(t, wizard.DefaultClosed, answers[len(answers)-1], "the old press is answered as closed")
	}
	t.Logf("attack 1: %d/20 chats misfired (before the fix: 20/20)", misfires)
	assert.Zero(t, misfires)

	// The current question still takes its own buttons.
	assert.Equal(t, []string{`done: deliver="yes" pay="no"`}, hs.press(1, "no"))
	// And once the flow has ended, every one of its buttons is closed.
	assert.Empty(t, hs.pressUnder(1, hs.lastButtons(1), "yes"))
	answers := hs.answers()
	assert.Equal(t, wizard.DefaultClosed, answers[len(answers)-1])
}

// Attack 2: Telegram refusing the answer to a press ("query is too old")
// is reported, and the step runs anyway.
func TestAttackFailedAnswerDropsPress(t *testing.T) {
	store := session.NewMemory()
	log := &errLog{}
	hs := confirmBot(t, store, newConfirmWizard(log))
	dropped := 0
	for c := int64(1); c <= 10; c++ {
		hs.say(c, "/go")
		hs.srv.Fail("answerCallbackQuery", 400, "Bad Request: query is too old and response timeout expired or query ID is invalid")
		if replies := hs.press(c, "yes"); !assert.Equal(t, []string{"Pay now?"}, replies) {
			dropped++
		}
		st, found := readJSON[sess](t, store, strconv.FormatInt(c, 10))
		if !found || st.Confirm.Step != "pay" {
			dropped++
		}
	}
	t.Logf("attack 2: %d/10 presses dropped (before the fix: 10/10)", dropped)
	assert.Zero(t, dropped)
	errs := log.all()
	require.Len(t, errs, 10, "every refused answer is reported")
	for _, err := range errs {
		assert.ErrorContains(t, err, "query is too old")
		assert.ErrorContains(t, err, "wizard confirm: answer button press")
	}
}

// Attack 3: stored wizard state of an older shape leaves the flow Stale
// and reports the bytes; /cancel works, and so does any other message.
func TestAttackOldStateShapeLocksChatOut(t *testing.T) {
	store := session.NewMemory()
	log := &errLog{}
	hs := confirmBot(t, store, newConfirmWizard(log))
	shapes := []string{
		`{"confirm":{"step":"pay","data":{"deliver":["yes"],"payNow":7}},"orders":3}`, // T changed
		`{"confirm":{"step":5,"trail":"deliver"},"orders":3}`,                         // the State changed
		`{"confirm":"pay","orders":3}`,                                                // not even an object
		`{"confirm":{"step":"gone","data":{}},"orders":3}`,                            // the step was removed
	}
	stuck := 0
	for c := int64(1); c <= 20; c++ {
		key := strconv.FormatInt(c, 10)
		require.NoError(t, store.Write(context.Background(), key, []byte(shapes[c%4])))
		text := "/cancel"
		if c > 10 {
			text = "hello" // any message gets the chat out, and then goes on
		}
		hs.srv.SendMessage(c, c, text)
		err := hs.pump()
		replies := hs.replies()
		raw, _, rerr := store.Read(context.Background(), key)
		require.NoError(t, rerr)
		if err != nil || strings.Contains(string(raw), "confirm") || !strings.Contains(string(raw), `"orders":3`) {
			stuck++
			continue
		}
		want := []string{`stale: deliver="" pay=""`}
		if text == "hello" {
			want = append(want, "next: hello")
		}
		assert.Equal(t, want, replies, "chat %d", c)
		assert.Equal(t, []string{"Deliver?"}, hs.say(c, "/go"), "chat %d can start again", c)
	}
	t.Logf("attack 3: %d/20 chats stuck (before the fix: 20/20)", stuck)
	assert.Zero(t, stuck)

	// The undecodable bytes were reported, not dropped: 15 of the 20
	// chats had them (the removed step decodes, it just no longer exists).
	errs := log.all()
	require.Len(t, errs, 15)
	for _, err := range errs {
		var serr *wizard.StaleError
		require.ErrorAs(t, err, &serr)
		assert.ErrorIs(t, err, wizard.ErrStale)
		assert.Equal(t, "confirm", serr.Wizard)
		assert.Contains(t, []string{`{"deliver":["yes"],"payNow":7}`, `{"step":5,"trail":"deliver"}`, `"pay"`}, string(serr.Data))
	}
}

// Attack 4: once a flow ends, however it ends, nothing of it is stored.
func TestAttackDataLeftAfterEnd(t *testing.T) {
	store := session.NewMemory()
	hs := confirmBot(t, store, newConfirmWizard(&errLog{}))
	left := 0
	for c := int64(1); c <= 20; c++ {
		hs.say(c, "/go")
		switch c % 3 {
		case 0:
			hs.say(c, "/cancel")
		case 1:
			hs.press(c, "yes")
			hs.press(c, "yes") // Next on the last step: done
		case 2:
			require.NoError(t, store.Write(context.Background(), strconv.FormatInt(c, 10), []byte(`{"confirm":{"step":"pay","data":[]}}`)))
			hs.say(c, "hi") // stale
		}
		raw, found, err := store.Read(context.Background(), strconv.FormatInt(c, 10))
		require.NoError(t, err)
		require.True(t, found)
		if string(raw) != `{"orders":0}` {
			left++
			t.Logf("chat %d: %s", c, raw)
		}
	}
	t.Logf("attack 4: %d/20 chats kept flow data (before the fix: 20/20)", left)
	assert.Zero(t, left)
}
