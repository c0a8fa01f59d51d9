package wizard_test

import (
	"bytes"
	"context"
	"encoding/gob"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
	"github.com/tgsession/session/wizard"
)

// order is what the test wizard collects.
type order struct {
	Size    string `json:"size"`
	Qty     int    `json:"qty"`
	Address string `json:"address"`
}

// sess is the test bot's session: the wizards of the tests and a counter
// outside them.
type sess struct {
	Order   wizard.State[order]   `json:"order,omitzero"`
	Orders  int                   `json:"orders"`
	Confirm wizard.State[confirm] `json:"confirm,omitzero"`
	Addr    wizard.State[address] `json:"addr,omitzero"`
}

// clock is a fake clock that tests move by hand.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// newOrderWizard builds the three-step order wizard the tests drive: a
// size chosen with buttons, a validated quantity, and an address.
func newOrderWizard(locate wizard.Locate[sess, order], clk *clock) *wizard.Wizard[sess, order] {
	w := wizard.New("order", locate, wizard.Options[sess, order]{
		Timeout: 10 * time.Minute,
		Clock:   clk.Now,
		Cancel:  []string{"cancel"},
		OnLeave: func(f *wizard.Flow[sess, order], why wizard.Reason) error {
			switch why {
			case wizard.Done:
				s, err := f.Session()
				if err != nil {
					return err
				}
				s.Orders++
				return f.Reply(fmt.Sprintf("Ordered %d × %s to %s (order #%d).", f.Data.Qty, f.Data.Size, f.Data.Address, s.Orders))
			case wizard.Cancelled:
				return f.Reply("Order cancelled at step " + f.Step() + ".")
			default:
				return f.Reply("Your order " + why.String() + ".")
			}
		},
	})
	w.Step("size",
		func(f *wizard.Flow[sess, order]) error {
			m := tgbotapi.NewMessage(f.ChatID(), "Which size?")
			m.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
				tgbotapi.NewInlineKeyboardButtonData("S", "size:S"),
				tgbotapi.NewInlineKeyboardButtonData("M", "size:M"),
				tgbotapi.NewInlineKeyboardButtonData("L", "size:L"),
			))
			return f.Send(m)
		},
		func(f *wizard.Flow[sess, order]) error {
			size, ok := strings.CutPrefix(f.Text(), "size:")
			if !ok || f.Update.CallbackQuery == nil {
				return wizard.Invalid("Please press a button.")
			}
			f.Data.Size = size
			return f.Next()
		})
	w.Step("qty",
		func(f *wizard.Flow[sess, order]) error { return f.Reply("How many?") },
		func(f *wizard.Flow[sess, order]) error {
			if f.Text() == "back" {
				return f.Back()
			}
			n, err := strconv.Atoi(f.Text())
			if err != nil || n < 1 || n > 10 {
				return wizard.Invalid("Send a number from 1 to 10.")
			}
			f.Data.Qty = n
			return f.Next()
		})
	w.Step("address",
		func(f *wizard.Flow[sess, order]) error { return f.Reply("Where to?") },
		func(f *wizard.Flow[sess, order]) error {
			switch f.Text() {
			case "back":
				return f.Back()
			case "restart":
				return f.Goto("size")
			case "fail":
				f.Data.Address = "lost"
				return errors.New("handler failed")
			}
			f.Data.Address = f.Text()
			return f.Leave()
		})
	return w
}

// fallback is the handler behind the wizard: it starts it on /order.
func fallback(w *wizard.Wizard[sess, order]) session.Handler[sess] {
	return func(c *session.Context[sess]) error {
		m := c.Update.Message
		if m == nil {
			return nil
		}
		if m.Command() == "order" {
			return w.Enter(c, order{})
		}
		reply := "Send /order to order."
		if m.Command() == "cancel" {
			reply = "Nothing to cancel."
		}
		_, err := c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, reply))
		return err
	}
}

// harness runs a bot handler against the fake Bot API, one update at a
// time, so tests read replies without waiting.
type harness struct {
	t      *testing.T
	srv    *telegramtest.Server
	bot    *tgbotapi.BotAPI
	h      session.Handler[sess]
	offset int
	seen   int // replies already returned by step
}

func newHarness(t *testing.T) *harness {
	srv := telegramtest.NewServer()
	t.Cleanup(srv.Close)
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	require.NoError(t, err)
	return &harness{t: t, srv: srv, bot: bot}
}

// pump fetches the queued updates and handles each; it returns the last
// handler error.
func (h *harness) pump() error {
	ups, err := h.bot.GetUpdates(tgbotapi.UpdateConfig{Offset: h.offset})
	require.NoError(h.t, err)
	var last error
	for _, u := range ups {
		h.offset = u.UpdateID + 1
		last = h.h(session.NewContext[sess](context.Background(), h.bot, u))
	}
	return last
}

// replies returns the texts the bot sent since the last call.
func (h *harness) replies() []string {
	var out []string
	sent := h.srv.Sent()
	for _, m := range sent[h.seen:] {
		out = append(out, m.Text)
	}
	h.seen = len(sent)
	return out
}

// say sends text from user chat in its private chat and returns the replies.
func (h *harness) say(chat int64, text string) []string {
	h.srv.SendMessage(chat, chat, text)
	require.NoError(h.t, h.pump())
	return h.replies()
}

// press presses the button with data under the bot's last message with
// buttons in chat, and returns the replies.
func (h *harness) press(chat int64, data string) []string {
	sent := h.srv.Sent()
	for i := len(sent) - 1; i >= 0; i-- {
		if sent[i].ChatID == chat && len(sent[i].InlineKeyboard) > 0 {
			return h.pressUnder(chat, sent[i].MessageID, data)
		}
	}
	h.t.Fatalf("no message with buttons in chat %d", chat)
	return nil
}

// pressUnder presses the button whose data, without the tag of the
// wizard that sent it, is data, under message msg in chat, and returns
// the replies.
func (h *harness) pressUnder(chat int64, msg int, data string) []string {
	for _, m := range h.srv.Sent() {
		if m.ChatID != chat || m.MessageID != msg {
			continue
		}
		for _, row := range m.InlineKeyboard {
			for _, b := range row {
				if b.CallbackData != nil && untag(*b.CallbackData) == data {
					_, err := h.srv.PressButton(chat, chat, msg, *b.CallbackData)
					require.NoError(h.t, err)
					require.NoError(h.t, h.pump())
					return h.replies()
				}
			}
		}
	}
	h.t.Fatalf("no button %q under message %d in chat %d", data, msg, chat)
	return nil
}

// untag strips a wizard's "~name~" tag from callback data.
func untag(data string) string {
	if rest, ok := strings.CutPrefix(data, "~"); ok {
		if i := strings.IndexByte(rest, '~'); i >= 0 {
			return rest[i+1:]
		}
	}
	return data
}

// variants are the session kinds the wizard must work under.
func variants() map[string]bool {
	return map[string]bool{"strict": false, "lazy": true}
}

// plainStore hides every capability of the store it wraps (no Expirer,
// no Lister), so a TTL is kept in grammY's envelope.
type plainStore struct{ session.Store }

// gobCodec stores sessions with encoding/gob instead of JSON.
type gobCodec struct{}

func (gobCodec) Marshal(v any) ([]byte, error) {
	var b bytes.Buffer
	err := gob.NewEncoder(&b).Encode(v)
	return b.Bytes(), err
}

func (gobCodec) Unmarshal(data []byte, v any) error {
	return gob.NewDecoder(bytes.NewReader(data)).Decode(v)
}

// stores are the storage configurations the wizard must work with: the
// default JSON in memory, another codec, and grammY's envelope (a TTL on
// a store without native expiry, and migrations).
func stores() map[string]func(clk *clock) session.Options[sess] {
	return map[string]func(clk *clock) session.Options[sess]{
		"memory": func(*clock) session.Options[sess] { return session.Options[sess]{Storage: session.NewMemory()} },
		"codec": func(*clock) session.Options[sess] {
			return session.Options[sess]{Storage: session.NewMemory(), Codec: gobCodec{}}
		},
		"envelope": func(clk *clock) session.Options[sess] {
			return session.Options[sess]{
				Storage:    plainStore{session.NewMemory()},
				TTL:        time.Hour,
				Migrations: map[float64]session.Migration{1: func(old json.RawMessage) (json.RawMessage, error) { return old, nil }},
				Clock:      clk.Now,
			}
		},
	}
}

// newSession builds a session from opts, failing the test on an error.
func newSession(t *testing.T, opts session.Options[sess]) *session.Session[sess] {
	t.Helper()
	s, err := session.New(opts)
	require.NoError(t, err)
	return s
}

// load returns what the next update of chat sees in its session, read
// through s (its store, codec and envelope), and the bytes stored, nil if
// none.
func load(t *testing.T, s *session.Session[sess], opts session.Options[sess], chat int64) (sess, []byte) {
	t.Helper()
	raw, _, err := opts.Storage.Read(context.Background(), strconv.FormatInt(chat, 10))
	require.NoError(t, err)
	var got sess
	h := s.Middleware(func(c *session.Context[sess]) error {
		v, err := c.Session()
		if err != nil {
			return err
		}
		got = *v
		return nil
	})
	u := tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: chat}}}
	require.NoError(t, h(session.NewContext[sess](context.Background(), nil, u)))
	return got, raw
}

// readJSON decodes the session stored as JSON (the default codec, no
// envelope) under key in mem; found is false if none.
func readJSON[T any](t *testing.T, mem *session.Memory, key string) (v T, found bool) {
	t.Helper()
	data, found, err := mem.Read(context.Background(), key)
	require.NoError(t, err)
	if found {
		require.NoError(t, json.Unmarshal(data, &v), "stored %q", data)
	}
	return v, found
}

// A whole order, through every navigation method and a re-ask, with
// button presses, strict and lazy, with JSON, another codec and grammY's
// envelope.
func TestWizardFlow(t *testing.T) {
	field := wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order })
	for vname, lazy := range variants() {
		for sname, newOpts := range stores() {
			t.Run(vname+"/"+sname, func(t *testing.T) {
				clk := &clock{now: time.Unix(1_700_000_000, 0)}
				opts := newOpts(clk)
				opts.Lazy = lazy
				s := newSession(t, opts)
				hs := newHarness(t)
				w := newOrderWizard(field, clk)
				hs.h = s.Middleware(w.Middleware(fallback(w)))
				const alice = 101

				assert.Equal(t, []string{"Send /order to order."}, hs.say(alice, "hello"))
				assert.Equal(t, []string{"Which size?"}, hs.say(alice, "/order"))
				assert.Equal(t, []string{"Please press a button.", "Which size?"}, hs.say(alice, "large"), "text where a button is expected is re-asked")
				assert.Equal(t, []string{"How many?"}, hs.press(alice, "size:L"))
				assert.Equal(t, []string{"Send a number from 1 to 10.", "How many?"}, hs.say(alice, "lots"))
				assert.Equal(t, []string{"Which size?"}, hs.say(alice, "back"))
				assert.Equal(t, []string{"How many?"}, hs.press(alice, "size:M"))
				assert.Equal(t, []string{"Where to?"}, hs.say(alice, "2"))
				assert.Equal(t, []string{"Which size?"}, hs.say(alice, "restart"), "Goto")
				assert.Equal(t, []string{"How many?"}, hs.press(alice, "size:S"))
				assert.Equal(t, []string{"Where to?"}, hs.say(alice, "3"))
				assert.Equal(t, []string{"Ordered 3 × S to 1 Main St (order #1)."}, hs.say(alice, "1 Main St"))
				assert.Equal(t, []string{"Send /order to order."}, hs.say(alice, "thanks"), "after Leave, updates go to the next handler")

				// Every button press was answered, so clients stop their spinners.
				answered := 0
				for _, r := range hs.srv.Requests() {
					if r.Method == "answerCallbackQuery" {
						answered++
					}
				}
				assert.Equal(t, 3, answered)

				// What is stored: the wizard ended, the counter outside it kept.
				got, raw := load(t, s, opts, alice)
				require.NotNil(t, raw, "stored")
				assert.Equal(t, sess{Orders: 1}, got)
				switch sname {
				case "codec":
					assert.False(t, json.Valid(raw), "stored with the codec, not as JSON: %q", raw)
				case "envelope":
					assert.Contains(t, string(raw), `"__d":`, "in grammY's envelope")
					assert.Contains(t, string(raw), `"v":1`, "at the migrations' version")
					assert.Contains(t, string(raw), `"e":`, "with the expiry")
				}
			})
		}
	}
}

// /cancel leaves at any step and is consumed; outside the wizard it
// reaches the next handler.
func TestWizardCancel(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	hs := newHarness(t)
	w := newOrderWizard(wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order }), clk)
	store := session.NewMemory()
	hs.h = newSession(t, session.Options[sess]{Storage: store}).Middleware(w.Middleware(fallback(w)))

	hs.say(7, "/order")
	hs.press(7, "size:M")
	assert.Equal(t, []string{"Order cancelled at step qty."}, hs.say(7, "/cancel"))
	assert.Equal(t, []string{"Nothing to cancel."}, hs.say(7, "/cancel"))
	raw, found, err := store.Read(context.Background(), "7")
	require.NoError(t, err)
	require.True(t, found)
	assert.JSONEq(t, `{"orders":0}`, string(raw), "nothing of the flow is left behind")
}

// After Timeout without an update, the next update leaves the wizard and
// then goes to the next handler; an update just before it keeps it alive.
func TestWizardTimeout(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	hs := newHarness(t)
	w := newOrderWizard(wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order }), clk)
	hs.h = newSession(t, session.Options[sess]{}).Middleware(w.Middleware(fallback(w)))

	hs.say(7, "/order")
	clk.Add(10*time.Minute - time.Millisecond)
	assert.Equal(t, []string{"How many?"}, hs.press(7, "size:L"), "within the timeout")
	clk.Add(10*time.Minute - time.Millisecond)
	assert.Equal(t, []string{"Send a number from 1 to 10.", "How many?"}, hs.say(7, "x"), "activity restarts the timeout, invalid input too")
	clk.Add(10 * time.Minute)
	assert.Equal(t, []string{"Your order expired.", "Send /order to order."}, hs.say(7, "2"))
	assert.Equal(t, []string{"Which size?"}, hs.say(7, "/order"), "a new order starts afresh")
}

// A step handler that fails writes nothing: the wizard stays where it was
// before the update, as any session does after an error.
func TestWizardHandlerErrorKeepsState(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	hs := newHarness(t)
	w := newOrderWizard(wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order }), clk)
	store := session.NewMemory()
	hs.h = newSession(t, session.Options[sess]{Storage: store}).Middleware(w.Middleware(fallback(w)))

	hs.say(7, "/order")
	hs.press(7, "size:L")
	hs.say(7, "2")
	hs.srv.SendMessage(7, 7, "fail")
	assert.EqualError(t, hs.pump(), "handler failed")
	s, found := readJSON[sess](t, store, "7")
	require.True(t, found)
	assert.Equal(t, "address", s.Order.Step)
	assert.JSONEq(t, `{"size":"L","qty":2,"address":""}`, string(s.Order.Data))
	assert.Equal(t, []string{"size", "qty"}, s.Order.Trail)
	assert.Equal(t, []string{"Ordered 2 × L to Elm St (order #1)."}, hs.say(7, "Elm St"))
}

// A stored step that the bot no longer has (it was redeployed) ends the
// wizard with Stale, and the update goes on to the next handler.
func TestWizardStaleStep(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	hs := newHarness(t)
	w := newOrderWizard(wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order }), clk)
	store := session.NewMemory()
	old, err := json.Marshal(sess{Order: wizard.State[order]{Step: "toppings", Seen: clk.Now().UnixMilli()}})
	require.NoError(t, err)
	require.NoError(t, store.Write(context.Background(), "7", old))
	hs.h = newSession(t, session.Options[sess]{Storage: store}).Middleware(w.Middleware(fallback(w)))

	assert.Equal(t, []string{"Your order stale.", "Send /order to order."}, hs.say(7, "extra cheese"))
	cur, err := w.Current(session.NewContext[sess](context.Background(), nil, tgbotapi.Update{}))
	assert.ErrorIs(t, err, session.ErrNoMiddleware, "Current needs a session")
	assert.Empty(t, cur)
}

// In a multi session the state can be a fragment of its own: its Get
// method is a Locate. Under a lazy multi session, updates that reach no
// wizard and no fragment leave the other fragment unread.
func TestWizardFragment(t *testing.T) {
	type data struct {
		Order  wizard.State[order]
		Orders int
	}
	hs := newHarness(t)
	orderStore := session.NewMemory()
	frag := session.NewFragment("order", func(d *data) *wizard.State[order] { return &d.Order },
		session.Options[wizard.State[order]]{Storage: orderStore, Key: session.ByUser})
	counts := session.NewMemory()
	count := session.NewFragment("count", func(d *data) *int { return &d.Orders }, session.Options[int]{Storage: counts})

	w := wizard.New("order", frag.Get, wizard.Options[data, order]{
		OnLeave: func(f *wizard.Flow[data, order], why wizard.Reason) error {
			return f.Reply("bye " + f.Data.Address)
		},
	})
	w.Step("address", nil, func(f *wizard.Flow[data, order]) error {
		f.Data.Address = f.Text()
		return f.Next() // Next on the last step leaves with Done
	})
	multi, err := session.NewMulti(session.Options[data]{Lazy: true}, frag, count)
	require.NoError(t, err)
	h := multi.Middleware(w.Middleware(func(c *session.Context[data]) error {
		if c.Update.Message.Command() == "go" {
			return w.Enter(c, order{})
		}
		return nil
	}))

	srv, bot := hs.srv, hs.bot
	run := func(text string) {
		srv.SendMessage(-5, 7, text)
		ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{Offset: hs.offset})
		require.NoError(t, err)
		require.Len(t, ups, 1)
		hs.offset = ups[0].UpdateID + 1
		require.NoError(t, h(session.NewContext[data](context.Background(), bot, ups[0])))
	}
	run("/go")
	stored, found := readJSON[wizard.State[order]](t, orderStore, "order:7")
	require.True(t, found, "the state is stored under the fragment's key, by user")
	assert.Equal(t, "address", stored.Step)
	run("Oak St")
	assert.Equal(t, []string{"bye Oak St"}, hs.replies())
	n := 0
	for k := range counts.Keys(context.Background()) {
		if !strings.ContainsRune(k, 0x1f) { // not the record of applied updates beside it
			n++
		}
	}
	assert.Zero(t, n, "the count fragment was never touched, so never written")
}

// Many chats run the wizard at once through long polling and runner.Run;
// under -race this checks the wizard shares nothing between
// updates.
func TestWizardConcurrentChats(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	require.NoError(t, err)
	w := newOrderWizard(wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order }), clk)
	s := newSession(t, session.Options[sess]{Storage: session.NewMemory()})

	var mu sync.Mutex
	var errs []error
	runCtx, stop := context.WithCancel(context.Background())
	defer stop()
	served := make(chan error, 1)
	go func() {
		served <- runner.Run(runCtx, bot, s, w.Middleware(fallback(w)), runner.Options{
			OnError: func(_ context.Context, _ *tgbotapi.Update, _ string, err error) {
				mu.Lock()
				defer mu.Unlock()
				errs = append(errs, err)
			},
		})
	}()

	const chats = 8
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Each round sends one message per chat and waits for every reply,
	// so button presses find the keyboard they press.
	round := func(sent int, texts func(chat int64) string) int {
		for c := int64(1); c <= chats; c++ {
			srv.SendMessage(c, c, texts(c))
		}
		got, err := srv.WaitSent(ctx, sent+chats)
		require.NoError(t, err)
		return len(got)
	}
	n := round(0, func(int64) string { return "/order" })
	for c := int64(1); c <= chats; c++ {
		sent := srv.Sent()
		for i := len(sent) - 1; i >= 0; i-- {
			if sent[i].ChatID == c && len(sent[i].InlineKeyboard) > 0 {
				_, err := srv.PressButton(c, c, sent[i].MessageID, w.ButtonData("size:M"))
				require.NoError(t, err)
				break
			}
		}
	}
	got, err := srv.WaitSent(ctx, n+chats)
	require.NoError(t, err)
	n = len(got)
	n = round(n, func(c int64) string { return strconv.Itoa(int(c%10) + 1) })
	round(n, func(c int64) string { return fmt.Sprintf("House %d", c) })

	stop()
	require.NoError(t, <-served)
	mu.Lock()
	assert.Empty(t, errs)
	mu.Unlock()

	final := map[int64]string{}
	for _, m := range srv.Sent() {
		final[m.ChatID] = m.Text
	}
	for c := int64(1); c <= chats; c++ {
		assert.Equal(t, fmt.Sprintf("Ordered %d × M to House %d (order #1).", c%10+1, c), final[c])
	}
}

// Configuration mistakes panic with an error wrapping session.ErrConfig,
// as session.New returns one, with a message naming the mistake: each of them would
// otherwise construct fine and fail later (a nil dereference on the first
// update, a cancel command that never matches, a wizard that cannot be
// entered).
func TestWizardConfig(t *testing.T) {
	field := wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order })
	handle := func(*wizard.Flow[sess, order]) error { return nil }
	next := func(*session.Context[sess]) error { return nil }
	withStep := func() *wizard.Wizard[sess, order] {
		w := wizard.New("w", field, wizard.Options[sess, order]{})
		w.Step("a", nil, handle)
		return w
	}
	cases := []struct {
		name string
		f    func()
		want string // in the message
	}{
		{"nil locate", func() { wizard.New[sess, order]("w", nil, wizard.Options[sess, order]{}) }, "New: nil locate"},
		{"nil Field accessor", func() { wizard.Field[sess, order](nil) }, "Field: nil field accessor"},
		{"negative timeout", func() { wizard.New("w", field, wizard.Options[sess, order]{Timeout: -1}) }, "Options.Timeout -1ns is negative"},
		{"sub-millisecond timeout", func() { wizard.New("w", field, wizard.Options[sess, order]{Timeout: time.Microsecond}) }, "Options.Timeout 1µs"},
		{"empty cancel command", func() { wizard.New("w", field, wizard.Options[sess, order]{Cancel: []string{"cancel", ""}}) }, `Options.Cancel[1] ""`},
		{"cancel command with slash", func() { wizard.New("w", field, wizard.Options[sess, order]{Cancel: []string{"/cancel"}}) }, `Options.Cancel[0] "/cancel"`},
		{"cancel command with bot name", func() { wizard.New("w", field, wizard.Options[sess, order]{Cancel: []string{"cancel@test_bot"}}) }, `Options.Cancel[0] "cancel@test_bot"`},
		{"cancel command with space", func() { wizard.New("w", field, wizard.Options[sess, order]{Cancel: []string{"stop it"}}) }, `Options.Cancel[0] "stop it"`},
		{"pass command with slash", func() { wizard.New("w", field, wizard.Options[sess, order]{Pass: []string{"/help"}}) }, `Options.Pass[0] "/help"`},
		{"empty name", func() { wizard.New("", field, wizard.Options[sess, order]{}) }, `New: name ""`},
		{"name with tag delimiter", func() { wizard.New("a~b", field, wizard.Options[sess, order]{}) }, `New: name "a~b"`},
		{"name too long", func() { wizard.New("a_name_of_17_byte", field, wizard.Options[sess, order]{}) }, `New: name "a_name_of_17_byte" must be 1 to 16`},
		{"sub-step without wizard", func() { wizard.SubStep[sess, order, address](withStep(), "b", nil, nil, nil) }, `SubStep "b": the sub-flow must be another wizard`},
		{"sub-step of itself", func() { w := withStep(); wizard.SubStep(w, "b", w, nil, nil) }, `SubStep "b": the sub-flow must be another wizard`},
		{"sub-step name taken", func() {
			wizard.SubStep(withStep(), "a", wizard.New("x", wizard.Field(func(s *sess) *wizard.State[address] { return &s.Addr }), wizard.Options[sess, address]{}), nil, nil)
		}, `step "a" added twice`},
		{"empty step name", func() { withStep().Step("", nil, handle) }, "empty step name"},
		{"nil step handler", func() { withStep().Step("b", nil, nil) }, `step "b" has no handler`},
		{"duplicate step name", func() { withStep().Step("a", nil, handle) }, `step "a" added twice`},
		{"middleware without steps", func() { wizard.New("w", field, wizard.Options[sess, order]{}).Middleware(next) }, "Middleware: the wizard has no steps"},
		{"middleware with nil next", func() { withStep().Middleware(nil) }, "Middleware: nil next handler"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := configPanic(t, tc.f)
			assert.ErrorIs(t, err, session.ErrConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}

	t.Run("valid options do not panic", func(t *testing.T) {
		assert.NotPanics(t, func() {
			w := wizard.New("Order-2_b", field, wizard.Options[sess, order]{Timeout: time.Millisecond, Cancel: []string{"cancel", "stop_now"}, Pass: []string{"help"}})
			w.Step("a", nil, handle)
			w.Middleware(next)
		})
	})

	t.Run("enter without steps", func(t *testing.T) {
		empty := wizard.New("w", field, wizard.Options[sess, order]{})
		h := newSession(t, session.Options[sess]{}).Middleware(func(c *session.Context[sess]) error { return empty.Enter(c, order{}) })
		err := h(session.NewContext[sess](context.Background(), nil, tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 1}}}))
		assert.ErrorIs(t, err, session.ErrConfig)
		assert.ErrorContains(t, err, "Enter without steps")
	})
}

// A Locate that returns a nil State, with no error, fails the update with
// session.ErrConfig instead of a nil dereference, in Enter, Current and
// the middleware alike.
func TestWizardLocateReturningNilState(t *testing.T) {
	nilState := func(*session.Context[sess]) (*wizard.State[order], error) { return nil, nil }
	w := wizard.New[sess, order]("w", nilState, wizard.Options[sess, order]{})
	w.Step("a", nil, func(*wizard.Flow[sess, order]) error { return nil })
	msg := tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 1}, Text: "x"}}
	calls := map[string]func(c *session.Context[sess]) error{
		"Enter":   func(c *session.Context[sess]) error { return w.Enter(c, order{}) },
		"Current": func(c *session.Context[sess]) error { _, err := w.Current(c); return err },
		"Middleware": w.Middleware(func(*session.Context[sess]) error {
			return errors.New("next reached")
		}),
	}
	for name, call := range calls {
		h := newSession(t, session.Options[sess]{}).Middleware(call)
		var err error
		require.NotPanics(t, func() { err = h(session.NewContext[sess](context.Background(), nil, msg)) }, name)
		assert.ErrorIs(t, err, session.ErrConfig, name)
		assert.ErrorContains(t, err, "locate returned a nil *State", name)
	}
}

// configPanic runs f, which must panic with an error, and returns it.
func configPanic(t *testing.T, f func()) (err error) {
	t.Helper()
	defer func() {
		r := recover()
		require.NotNil(t, r, "no panic")
		e, ok := r.(error)
		require.True(t, ok, "panicked with %T %v, not an error", r, r)
		err = e
	}()
	f()
	return nil
}

// Navigation after the wizard ended fails with ErrNotRunning, and
// Invalid errors match ErrInvalid.
func TestWizardErrors(t *testing.T) {
	assert.ErrorIs(t, wizard.Invalid("no"), wizard.ErrInvalid)
	assert.Equal(t, "wizard: invalid input: no", wizard.Invalid("no").Error())
	assert.Equal(t, "done", wizard.Done.String())
	assert.Equal(t, "Reason(9)", wizard.Reason(9).String())

	var afterLeave []error
	w := wizard.New("w", wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order }), wizard.Options[sess, order]{})
	w.Step("only", nil, func(f *wizard.Flow[sess, order]) error {
		if err := f.Leave(); err != nil {
			return err
		}
		afterLeave = append(afterLeave, f.Next(), f.Back(), f.Goto("only"), f.Leave())
		return nil
	})
	h := newSession(t, session.Options[sess]{}).Middleware(w.Middleware(func(c *session.Context[sess]) error { return w.Enter(c, order{}) }))
	u := tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 1}, Text: "x"}}
	require.NoError(t, h(session.NewContext[sess](context.Background(), nil, u)), "enters")
	require.NoError(t, h(session.NewContext[sess](context.Background(), nil, u)), "leaves")
	require.Len(t, afterLeave, 4)
	for _, err := range afterLeave {
		assert.ErrorIs(t, err, wizard.ErrNotRunning)
	}
}

// readCounter counts the reads of the store it wraps.
type readCounter struct {
	session.Store
	mu    sync.Mutex
	reads int
}

func (r *readCounter) Read(ctx context.Context, key string) ([]byte, bool, error) {
	r.mu.Lock()
	r.reads++
	r.mu.Unlock()
	return r.Store.Read(ctx, key)
}

// Under Lazy, updates that are neither messages nor presses of the
// wizard's buttons pass the wizard without reading the session.
func TestWizardLazyPassThrough(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	store := &readCounter{Store: session.NewMemory()}
	w := newOrderWizard(wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order }), clk)
	reached := 0
	h := newSession(t, session.Options[sess]{Storage: store, Lazy: true}).Middleware(w.Middleware(func(c *session.Context[sess]) error {
		reached++
		return nil
	}))
	edit := tgbotapi.Update{EditedMessage: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 7}, From: &tgbotapi.User{ID: 7}, Text: "typo"}}
	require.NoError(t, h(session.NewContext[sess](context.Background(), nil, edit)))
	press := tgbotapi.Update{CallbackQuery: &tgbotapi.CallbackQuery{ID: "1", From: &tgbotapi.User{ID: 7}, Data: "menu",
		Message: &tgbotapi.Message{MessageID: 1, Chat: &tgbotapi.Chat{ID: 7}}}}
	require.NoError(t, h(session.NewContext[sess](context.Background(), nil, press)))
	assert.Equal(t, 2, reached, "the updates reach the next handler")
	assert.Zero(t, store.reads, "and cost no storage read")
}
