package wizard_test

import (
	"bytes"
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/wizard"
)

// A step that calls Enter starts the flow over with the new data: the
// data the step had decoded does not overwrite it afterwards.
func TestEnterFromStepStartsOver(t *testing.T) {
	w := wizard.New("again", newConfirmField(), wizard.Options[sess, confirm]{})
	w.Step("first", nil, func(f *wizard.Flow[sess, confirm]) error {
		f.Data.Deliver = "stale"
		return f.Next()
	})
	var wizardRef *wizard.Wizard[sess, confirm]
	w.Step("second", nil, func(f *wizard.Flow[sess, confirm]) error {
		f.Data.PayNow = "lost"
		return wizardRef.Enter(f.Context, confirm{Deliver: "fresh"})
	})
	wizardRef = w
	store := session.NewMemory()
	hs := confirmBot(t, store, w)
	hs.say(1, "/go")
	hs.say(1, "a")
	hs.say(1, "b")
	st, found := readJSON[sess](t, store, "1")
	require.True(t, found)
	assert.Equal(t, "first", st.Confirm.Step)
	assert.JSONEq(t, `{"deliver":"fresh","payNow":""}`, string(st.Confirm.Data))
}

// Back skips steps of the stored trail that a redeploy removed, instead
// of failing every time the user goes back.
func TestBackSkipsRemovedSteps(t *testing.T) {
	clk := &clock{now: time.Unix(1_700_000_000, 0)}
	store := session.NewMemory()
	stored := `{"order":{"step":"qty","trail":["size","toppings"],"seen":1700000000000,"data":{"size":"L"}}}`
	require.NoError(t, store.Write(context.Background(), "7", []byte(stored)))
	w := newOrderWizard(wizard.Field(func(s *sess) *wizard.State[order] { return &s.Order }), clk)
	hs := newHarness(t)
	hs.h = newSession(t, session.Options[sess]{Storage: store}).Middleware(w.Middleware(fallback(w)))
	assert.Equal(t, []string{"Which size?"}, hs.say(7, "back"))
	st, _ := readJSON[sess](t, store, "7")
	assert.Equal(t, "size", st.Order.Step)
	assert.Empty(t, st.Order.Trail)
}

// Without OnError, what cannot fail the update is logged with
// slog.Default, not lost: here a refused answer to a press.
func TestReportsWithoutOnErrorAreLogged(t *testing.T) {
	var buf bytes.Buffer
	prev := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&buf, nil)))
	t.Cleanup(func() { slog.SetDefault(prev) })

	w := wizard.New("quiet", newConfirmField(), wizard.Options[sess, confirm]{})
	w.Step("ask", askYesNo("Sure?"), func(f *wizard.Flow[sess, confirm]) error { return f.Reply("ran") })
	hs := confirmBot(t, session.NewMemory(), w)
	hs.say(1, "/go")
	hs.srv.Fail("answerCallbackQuery", 400, "Bad Request: query is too old")
	assert.Equal(t, []string{"ran"}, hs.press(1, "yes"))
	assert.Contains(t, buf.String(), "level=ERROR")
	assert.Contains(t, buf.String(), "wizard=quiet")
	assert.Contains(t, buf.String(), "query is too old")
}

// State.Decode reads the data outside a flow, e.g. in a report.
func TestStateDecode(t *testing.T) {
	var st wizard.State[confirm]
	v, err := st.Decode()
	require.NoError(t, err)
	assert.Equal(t, confirm{}, v)
	st.Data = []byte(`{"deliver":"yes"}`)
	v, err = st.Decode()
	require.NoError(t, err)
	assert.Equal(t, confirm{Deliver: "yes"}, v)
	st.Data = []byte(`{"deliver":1}`)
	v, err = st.Decode()
	assert.ErrorContains(t, err, "wizard: decode state data")
	assert.Equal(t, confirm{}, v)
}
