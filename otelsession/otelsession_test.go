package otelsession_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tgsession/session"
	"github.com/tgsession/session/otelsession"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// counter is the session of the tests.
type counter struct {
	Count int `json:"count"`
}

// env is a Telemetry on SDK providers that keep what they are given.
type env struct {
	spans  *tracetest.SpanRecorder
	reader *sdkmetric.ManualReader
	tp     *sdktrace.TracerProvider
	tel    *otelsession.Telemetry
}

func newEnv(t *testing.T, recordKeys bool) *env {
	t.Helper()
	e := &env{spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	e.tp = sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader))
	tel, err := otelsession.New(otelsession.Options{TracerProvider: e.tp, MeterProvider: mp, RecordKeys: recordKeys})
	require.NoError(t, err)
	e.tel = tel
	return e
}

// metrics collects the metrics, by name.
func (e *env) metrics(t *testing.T) map[string]metricdata.Metrics {
	t.Helper()
	var rm metricdata.ResourceMetrics
	require.NoError(t, e.reader.Collect(context.Background(), &rm))
	out := map[string]metricdata.Metrics{}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			out[m.Name] = m
		}
	}
	return out
}

// sum returns the value of counter name at attributes kv (0 if none).
func sum(t *testing.T, ms map[string]metricdata.Metrics, name string, kv ...attribute.KeyValue) int64 {
	t.Helper()
	m, ok := ms[name]
	require.True(t, ok, "metric %s", name)
	s, ok := m.Data.(metricdata.Sum[int64])
	require.True(t, ok, "%s is an int64 sum: %T", name, m.Data)
	assert.True(t, s.IsMonotonic)
	want := attribute.NewSet(kv...)
	var v int64
	for _, dp := range s.DataPoints {
		if len(kv) == 0 || dp.Attributes.Equals(&want) {
			v += dp.Value
		}
	}
	return v
}

// count returns the count of histogram name over all its points.
func count(t *testing.T, ms map[string]metricdata.Metrics, name string) uint64 {
	t.Helper()
	m, ok := ms[name]
	require.True(t, ok, "metric %s", name)
	assert.Equal(t, "s", m.Unit)
	h, ok := m.Data.(metricdata.Histogram[float64])
	require.True(t, ok, "%s is a float64 histogram: %T", name, m.Data)
	var n uint64
	for _, dp := range h.DataPoints {
		n += dp.Count
		assert.GreaterOrEqual(t, dp.Sum, 0.0)
	}
	return n
}

// gauge returns the value of gauge name.
func gauge(t *testing.T, ms map[string]metricdata.Metrics, name string) int64 {
	t.Helper()
	m, ok := ms[name]
	require.True(t, ok, "metric %s", name)
	g, ok := m.Data.(metricdata.Gauge[int64])
	require.True(t, ok, "%s is an int64 gauge: %T", name, m.Data)
	require.Len(t, g.DataPoints, 1)
	return g.DataPoints[0].Value
}

// attrs returns the attributes of s by key.
func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]attribute.Value {
	m := map[attribute.Key]attribute.Value{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value
	}
	return m
}

// trees returns the update spans in the order they ended, and the
// children of every span by parent span id.
func trees(t *testing.T, e *env) ([]sdktrace.ReadOnlySpan, map[[8]byte][]sdktrace.ReadOnlySpan) {
	t.Helper()
	var updates []sdktrace.ReadOnlySpan
	children := map[[8]byte][]sdktrace.ReadOnlySpan{}
	for _, s := range e.spans.Ended() {
		if s.Name() == otelsession.SpanUpdate {
			updates = append(updates, s)
		}
		if s.Parent().IsValid() {
			children[s.Parent().SpanID()] = append(children[s.Parent().SpanID()], s)
		}
	}
	return updates, children
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var n []string
	for _, s := range spans {
		n = append(n, s.Name())
	}
	return n
}

// phases returns the phase spans among spans, in their order.
func phases(spans []sdktrace.ReadOnlySpan) []sdktrace.ReadOnlySpan {
	var p []sdktrace.ReadOnlySpan
	for _, s := range spans {
		switch s.Name() {
		case otelsession.SpanLock, otelsession.SpanLoad, otelsession.SpanHandler, otelsession.SpanCommit:
			p = append(p, s)
		}
	}
	return p
}

// assertOrdered checks that the phases follow each other within parent.
func assertOrdered(t *testing.T, parent sdktrace.ReadOnlySpan, ps []sdktrace.ReadOnlySpan) {
	t.Helper()
	at := parent.StartTime()
	for _, p := range ps {
		assert.False(t, p.StartTime().Before(at), "%s starts after what comes before", p.Name())
		assert.False(t, p.EndTime().Before(p.StartTime()), "%s ends after it starts", p.Name())
		at = p.EndTime()
	}
	assert.False(t, parent.EndTime().Before(at), "the update ends after its phases")
}

func message(id int, chat int64, text string) tgbotapi.Update {
	return tgbotapi.Update{UpdateID: id, Message: &tgbotapi.Message{
		Chat: &tgbotapi.Chat{ID: chat}, From: &tgbotapi.User{ID: chat}, Text: text,
	}}
}

var errFail = errors.New("handler failed")

// handle is the handler of the tests: "count" counts, "fail" counts and
// fails, anything else only reads; every update starts a span of its own.
func (e *env) handle(c *session.Context[counter]) error {
	_, span := e.tp.Tracer("test").Start(c.Context, "work")
	defer span.End()
	s, err := c.Session()
	if err != nil {
		return err
	}
	switch c.Update.Message.Text {
	case "count":
		s.Count++
	case "fail":
		s.Count++
		return errFail
	}
	return nil
}

func TestSessionSpansAndMetrics(t *testing.T) {
	e := newEnv(t, false)
	sess, err := session.New(session.Options[counter]{Storage: session.NewMemory(), Hooks: e.tel.SessionHooks()})
	require.NoError(t, err)
	h := sess.Middleware(e.handle)
	bot := &tgbotapi.BotAPI{Self: tgbotapi.User{ID: 7}}
	do := func(u tgbotapi.Update) error {
		return h(session.NewContext[counter](context.Background(), bot, u))
	}

	require.NoError(t, do(message(1, 42, "count")))
	require.NoError(t, do(message(2, 42, "read")))
	require.ErrorIs(t, do(message(3, 42, "fail")), errFail)
	require.ErrorIs(t, do(message(1, 42, "count")), session.ErrDuplicate, "the same update again")

	updates, children := trees(t, e)
	require.Len(t, updates, 4)
	wantOutcomes := []string{"written", "unchanged", "error", "duplicate"}
	wantIDs := []int64{1, 2, 3, 1}
	var read, written int64
	for i, u := range updates {
		a := attrs(u)
		assert.Equal(t, wantIDs[i], a[otelsession.AttrUpdateID].AsInt64())
		assert.Equal(t, "message", a[otelsession.AttrUpdateKind].AsString())
		assert.Equal(t, wantOutcomes[i], a[otelsession.AttrOutcome].AsString())
		assert.NotContains(t, a, otelsession.AttrKey, "keys are not recorded by default")
		assert.NotContains(t, a, otelsession.AttrFragments, "a single session has no fragments")
		assert.False(t, u.Parent().IsValid(), "the update span is a root")
		read += a[otelsession.AttrBytesRead].AsInt64()
		written += a[otelsession.AttrBytesWritten].AsInt64()
		assertOrdered(t, u, phases(children[u.SpanContext().SpanID()]))
		for _, ev := range u.Events() {
			for _, kv := range ev.Attributes {
				assert.NotEqual(t, otelsession.AttrKey, kv.Key, "no key on the events")
			}
		}
	}

	written1 := attrs(updates[0])[otelsession.AttrBytesWritten].AsInt64()
	assert.Positive(t, written1)
	assert.ElementsMatch(t, []string{"work", otelsession.SpanLock, otelsession.SpanLoad, otelsession.SpanHandler, otelsession.SpanCommit},
		names(children[updates[0].SpanContext().SpanID()]), "the handler's span is a child of the update's, beside the phases")
	assert.Equal(t, []string{otelsession.SpanLock, otelsession.SpanLoad, otelsession.SpanHandler, otelsession.SpanCommit},
		names(phases(children[updates[0].SpanContext().SpanID()])))
	assert.Equal(t, codes.Unset, updates[0].Status().Code)
	assert.Positive(t, attrs(updates[1])[otelsession.AttrBytesRead].AsInt64(), "the second update read what the first wrote")
	assert.Zero(t, attrs(updates[1])[otelsession.AttrBytesWritten].AsInt64())

	fail := updates[2]
	assert.Equal(t, codes.Error, fail.Status().Code)
	assert.Equal(t, errFail.Error(), fail.Status().Description)
	var exception bool
	for _, ev := range fail.Events() {
		exception = exception || ev.Name == "exception"
	}
	assert.True(t, exception, "the error is recorded")
	assert.NotContains(t, names(children[fail.SpanContext().SpanID()]), otelsession.SpanCommit, "a failed handler: no commit")

	dup := updates[3]
	assert.Equal(t, codes.Unset, dup.Status().Code, "a duplicate is no error")
	assert.NotContains(t, names(children[dup.SpanContext().SpanID()]), otelsession.SpanHandler, "the handler did not run")
	assert.NotContains(t, names(children[dup.SpanContext().SpanID()]), "work")

	ms := e.metrics(t)
	for i, o := range wantOutcomes {
		if i < 3 {
			assert.Equal(t, int64(1), sum(t, ms, otelsession.MetricUpdates, otelsession.AttrOutcome.String(o)), o)
		}
	}
	assert.Equal(t, int64(1), sum(t, ms, otelsession.MetricUpdates, otelsession.AttrOutcome.String("duplicate")))
	assert.Equal(t, int64(4), sum(t, ms, otelsession.MetricUpdates))
	assert.Equal(t, uint64(4), count(t, ms, otelsession.MetricUpdateDuration))
	assert.Equal(t, uint64(4), count(t, ms, otelsession.MetricLockWait), "every update took its lease")
	assert.Equal(t, uint64(3), count(t, ms, otelsession.MetricHandlerDuration), "the duplicate's handler did not run")
	assert.Equal(t, uint64(2), count(t, ms, otelsession.MetricCommitDuration), "the failed and the duplicate did not commit")
	assert.GreaterOrEqual(t, count(t, ms, otelsession.MetricLoadDuration), uint64(3))
	assert.Equal(t, read, sum(t, ms, otelsession.MetricBytesRead, otelsession.AttrFragment.String("")))
	assert.Equal(t, written, sum(t, ms, otelsession.MetricBytesWritten, otelsession.AttrFragment.String("")))
	assert.Equal(t, "By", ms[otelsession.MetricBytesRead].Unit)
	assertNoKeys(t, ms)
}

// assertNoKeys checks that no metric carries a key.
func assertNoKeys(t *testing.T, ms map[string]metricdata.Metrics) {
	t.Helper()
	for name, m := range ms {
		b, err := json.Marshal(m.Data)
		require.NoError(t, err)
		assert.NotContains(t, string(b), string(otelsession.AttrKey), name)
	}
}

func TestRecordKeys(t *testing.T) {
	e := newEnv(t, true)
	sess, err := session.New(session.Options[counter]{Hooks: e.tel.SessionHooks()})
	require.NoError(t, err)
	h := sess.Middleware(e.handle)
	require.NoError(t, h(session.NewContext[counter](context.Background(), nil, message(5, 42, "count"))))

	updates, _ := trees(t, e)
	require.Len(t, updates, 1)
	assert.Equal(t, "42", attrs(updates[0])[otelsession.AttrKey].AsString())
	var parts int
	for _, ev := range updates[0].Events() {
		if ev.Name == "session.part" {
			parts++
			assert.Contains(t, ev.Attributes, otelsession.AttrKey.String("42"))
			assert.Contains(t, ev.Attributes, otelsession.AttrOutcome.String("written"))
		}
	}
	assert.Equal(t, 1, parts)
	assertNoKeys(t, e.metrics(t))
}

func TestLazyAndMulti(t *testing.T) {
	e := newEnv(t, false)
	sess, err := session.New(session.Options[counter]{Lazy: true, Hooks: e.tel.SessionHooks()})
	require.NoError(t, err)
	h := sess.Middleware(func(c *session.Context[counter]) error {
		if c.Update.Message.Text == "skip" {
			return nil
		}
		s, err := c.Session()
		if err == nil {
			s.Count++
		}
		return err
	})
	require.NoError(t, h(session.NewContext[counter](context.Background(), nil, message(1, 42, "skip"))))
	require.NoError(t, h(session.NewContext[counter](context.Background(), nil, message(2, 42, "count"))))

	updates, children := trees(t, e)
	require.Len(t, updates, 2)
	assert.Equal(t, "untouched", attrs(updates[0])[otelsession.AttrOutcome].AsString())
	assert.Equal(t, []string{otelsession.SpanHandler}, names(children[updates[0].SpanContext().SpanID()]),
		"a lazy session never touched: no lock, load or commit")
	assert.Equal(t, "written", attrs(updates[1])[otelsession.AttrOutcome].AsString())
	ps := children[updates[1].SpanContext().SpanID()]
	assert.Subset(t, names(ps), []string{otelsession.SpanHandler, otelsession.SpanCommit})
	for _, p := range ps {
		assert.False(t, p.StartTime().Before(updates[1].StartTime()), p.Name())
		assert.False(t, p.EndTime().After(updates[1].EndTime()), p.Name())
	}

	type both struct {
		Chat counter
		User counter
	}
	multi, err := session.NewMulti(session.Options[both]{Hooks: e.tel.SessionHooks()},
		session.NewFragment("chat", func(b *both) *counter { return &b.Chat }, session.Options[counter]{}),
		session.NewFragment("user", func(b *both) *counter { return &b.User }, session.Options[counter]{Key: session.ByUser}))
	require.NoError(t, err)
	mh := multi.Middleware(func(c *session.Context[both]) error {
		s, err := c.Session()
		if err == nil {
			s.Chat.Count++
		}
		return err
	})
	require.NoError(t, mh(session.NewContext[both](context.Background(), nil, message(3, 42, "count"))))
	updates, _ = trees(t, e)
	require.Len(t, updates, 3)
	assert.Equal(t, []string{"chat", "user"}, attrs(updates[2])[otelsession.AttrFragments].AsStringSlice())
	ms := e.metrics(t)
	assert.Positive(t, sum(t, ms, otelsession.MetricBytesWritten, otelsession.AttrFragment.String("chat")))
	assert.Zero(t, sum(t, ms, otelsession.MetricBytesWritten, otelsession.AttrFragment.String("user")), "the user's part is unchanged")
}

func TestUpdateKind(t *testing.T) {
	e := newEnv(t, false)
	sess, err := session.New(session.Options[counter]{Key: session.ByUser, Lazy: true, Hooks: e.tel.SessionHooks()})
	require.NoError(t, err)
	h := sess.Middleware(func(*session.Context[counter]) error { return nil })
	press := tgbotapi.Update{UpdateID: 9, CallbackQuery: &tgbotapi.CallbackQuery{ID: "q", From: &tgbotapi.User{ID: 42}}}
	require.NoError(t, h(session.NewContext[counter](context.Background(), nil, press)))
	c := session.NewContext[counter](context.Background(), nil, tgbotapi.Update{UpdateID: 10})
	c.Raw = json.RawMessage(`{"update_id":10,"business_message":{"message_id":1}}`)
	require.NoError(t, h(c))

	updates, _ := trees(t, e)
	require.Len(t, updates, 2)
	assert.Equal(t, "callback_query", attrs(updates[0])[otelsession.AttrUpdateKind].AsString())
	assert.Equal(t, int64(10), attrs(updates[1])[otelsession.AttrUpdateID].AsInt64())
	assert.Equal(t, "business_message", attrs(updates[1])[otelsession.AttrUpdateKind].AsString(), "a kind tgbotapi does not know, from the JSON")
}

// replay is a Source that puts its updates, waits until they are done and
// returns.
type replay []tgbotapi.Update

func (r replay) Receive(ctx context.Context, feed *runner.Feed) error {
	done := make(chan struct{}, len(r))
	for i := range r {
		if err := feed.Put(ctx, &r[i], nil, func(bool) { done <- struct{}{} }); err != nil {
			return err
		}
	}
	for range r {
		<-done
	}
	return nil
}

func (replay) Close(context.Context) error { return nil }

func TestRunner(t *testing.T) {
	e := newEnv(t, false)
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("TOKEN", srv.Endpoint())
	require.NoError(t, err)
	sess, err := session.New(session.Options[counter]{Storage: session.NewMemory(), Hooks: e.tel.SessionHooks()})
	require.NoError(t, err)
	var failures []error // OnError runs on the handler's goroutine; read after Run returned
	errs := make(chan error, 10)
	opts := runner.Options{Hooks: e.tel.RunnerHooks(), OnError: func(_ context.Context, _ *tgbotapi.Update, _ string, err error) { errs <- err }}

	ctx, cancel := context.WithCancel(context.Background())
	opts.Source = runner.NewPolling(bot, runner.PollingOptions{Timeout: 1})
	ran := make(chan error, 1)
	go func() { ran <- runner.Run(ctx, bot, sess, e.handle, opts) }()
	first := srv.SendMessage(42, 42, "count")
	srv.SendMessage(42, 42, "count")
	srv.SendMessage(43, 43, "read")
	last := srv.SendMessage(42, 42, "fail")
	wait, stop := context.WithTimeout(context.Background(), telegramtest.DefaultWait)
	defer stop()
	require.NoError(t, srv.WaitAcknowledged(wait, last))
	cancel()
	require.NoError(t, <-ran)
	assert.Zero(t, srv.Pending())
	close(errs)
	for err := range errs {
		failures = append(failures, err)
	}
	require.Len(t, failures, 1)
	assert.ErrorIs(t, failures[0], errFail)

	ms := e.metrics(t)
	event := func(kind runner.EventKind) int64 {
		return sum(t, ms, otelsession.MetricRunnerUpdates, otelsession.AttrEvent.String(kind.String()))
	}
	assert.Equal(t, int64(4), event(runner.Taken))
	assert.Equal(t, int64(3), event(runner.Handled))
	assert.Equal(t, int64(1), event(runner.Failed))
	assert.Zero(t, event(runner.Deduplicated))
	assert.Equal(t, int64(0), gauge(t, ms, otelsession.MetricRunnerQueue), "nothing waits at the end")
	assert.GreaterOrEqual(t, gauge(t, ms, otelsession.MetricRunnerInFlight), int64(0))
	assert.Equal(t, int64(2), sum(t, ms, otelsession.MetricUpdates, otelsession.AttrOutcome.String("written")))
	assert.Equal(t, int64(1), sum(t, ms, otelsession.MetricUpdates, otelsession.AttrOutcome.String("unchanged")))
	assert.Equal(t, int64(1), sum(t, ms, otelsession.MetricUpdates, otelsession.AttrOutcome.String("error")))
	updates, _ := trees(t, e)
	assert.Len(t, updates, 4)

	// A new Run does not remember the first update, but its session's
	// record does: the copy is deduplicated there.
	again := message(first, 42, "count")
	opts.Source = replay{again}
	opts.OnError = func(_ context.Context, _ *tgbotapi.Update, _ string, err error) {
		t.Errorf("no error expected: %v", err)
	}
	require.NoError(t, runner.Run(context.Background(), bot, sess, e.handle, opts))

	ms = e.metrics(t)
	assert.Equal(t, int64(5), sum(t, ms, otelsession.MetricRunnerUpdates, otelsession.AttrEvent.String("taken")))
	assert.Equal(t, int64(1), sum(t, ms, otelsession.MetricRunnerUpdates, otelsession.AttrEvent.String("deduplicated")))
	assert.Equal(t, int64(1), sum(t, ms, otelsession.MetricUpdates, otelsession.AttrOutcome.String("duplicate")))
	assertNoKeys(t, ms)
}

func TestNewDefaults(t *testing.T) {
	tel, err := otelsession.New(otelsession.Options{})
	require.NoError(t, err, "the otel globals (no-op here)")
	assert.Same(t, tel.SessionHooks(), tel.SessionHooks())
	assert.NotNil(t, tel.RunnerHooks().Event)
	sess, err := session.New(session.Options[counter]{Hooks: tel.SessionHooks()})
	require.NoError(t, err)
	h := sess.Middleware(func(*session.Context[counter]) error { return nil })
	assert.NoError(t, h(session.NewContext[counter](context.Background(), nil, message(1, 1, "x"))))
	tel.RunnerHooks().Event(context.Background(), runner.Event{Kind: runner.Handled})
}
