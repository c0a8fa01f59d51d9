// Package otelsession turns the hooks of a session (session.Hooks) and of
// a runner (runner.Hooks) into OpenTelemetry traces and metrics.
//
//	tel, err := otelsession.New(otelsession.Options{}) // the otel globals
//	...
//	sess, err := session.New(session.Options[Data]{Storage: store, Hooks: tel.SessionHooks()})
//	...
//	err = runner.Run(ctx, bot, sess, h, runner.Options{Hooks: tel.RunnerHooks()})
//
// # Traces
//
// Every update that goes through the session's middleware gets a span
// "telegram.update" (kind consumer), started as the update enters the
// middleware; the handler's context carries it, so the spans the handler
// starts from c.Context are its children. When the update leaves, the
// span gets a child per phase the update went through, timed from the
// session's report:
//
//	telegram.update
//	├── session.lock     taking the leases (and reading the stored values)
//	├── session.load     decoding and migrating what was read
//	├── session.handler  the handler
//	└── session.commit   writing back (or touching, deleting)
//
// A phase that did not happen (the commit after a failed handler, the lock
// and load and commit of a lazy session never touched, the handler of a
// duplicate)
// has no span and no measurement. Under a lazy
// session the lock wait and load happen inside the handler, at its first
// access: the report tells how long they took but not when, so when the
// phases laid end to end would outlast the update, the lock and load spans
// are placed at the start of the handler span.
//
// Attributes of "telegram.update":
//
//	telegram.update_id     int       the update's id
//	telegram.update.kind   string    "message", "callback_query", ... (the update's field)
//	session.outcome        string    the update's outcome (session.Outcome.String)
//	session.bytes_read     int       stored bytes read, over all parts
//	session.bytes_written  int       bytes committed, over all parts
//	session.fragments      []string  the fragments with a key, for a session.NewMulti session
//	tgsession.key          string    the session key: only with Options.RecordKeys
//
// and an event "session.part" per part (fragment, key if recorded,
// outcome, bytes read and written). The span records Report.Err as an
// exception event and has status Error for the outcomes error, conflict and
// panic; duplicate (an update applied already, session.ErrDuplicate) is no
// error. The commit span too has status Error when the commit failed.
//
// # Metrics
//
// All durations are histograms in seconds, all with the attribute
// session.outcome (one of untouched, unchanged, written, touched, deleted,
// conflict, duplicate, error, panic):
//
//	tgsession.update.duration   histogram  s   the whole update, in the middleware
//	tgsession.lock.wait         histogram  s   taking the leases (recorded when the update took them)
//	tgsession.load.duration     histogram  s   decoding and migrating (recorded when something was loaded)
//	tgsession.handler.duration  histogram  s   the handler (recorded when it ran)
//	tgsession.commit.duration   histogram  s   the write-back (recorded when it ran)
//	tgsession.updates           counter        updates, by session.outcome: conflicts are
//	                                           session.outcome="conflict", redeliveries "duplicate"
//	tgsession.bytes.read        counter    By  stored bytes read, by session.fragment
//	tgsession.bytes.written     counter    By  bytes committed, by session.fragment
//
// session.fragment is the fragment's name ("" for a single session). The
// runner's hooks give:
//
//	tgsession.runner.updates      counter  updates by runner.event: taken, handled, failed,
//	                                       deduplicated, left (runner.EventKind.String)
//	tgsession.runner.queue.depth  gauge    updates waiting, over all keys, after the last event
//	tgsession.runner.inflight     gauge    handlers running, after the last event
//
// With the Prometheus exporter the names become tgsession_updates_total,
// tgsession_lock_wait_seconds, tgsession_runner_queue_depth and so on.
//
// # Keys
//
// Session keys are chat and user ids: personal data. They are put on spans
// (attribute tgsession.key) only when Options.RecordKeys is set, and never
// on metrics, where a label per chat would also make a series per chat.
package otelsession

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/trace"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
)

// ScopeName is the instrumentation scope of the tracer and the meter.
const ScopeName = "github.com/tgsession/session/otelsession"

// Names of the spans.
const (
	SpanUpdate  = "telegram.update"
	SpanLock    = "session.lock"
	SpanLoad    = "session.load"
	SpanHandler = "session.handler"
	SpanCommit  = "session.commit"
)

// Attribute keys, on spans and metrics (see the package documentation).
const (
	AttrUpdateID     = attribute.Key("telegram.update_id")
	AttrUpdateKind   = attribute.Key("telegram.update.kind")
	AttrOutcome      = attribute.Key("session.outcome")
	AttrFragment     = attribute.Key("session.fragment")
	AttrFragments    = attribute.Key("session.fragments")
	AttrBytesRead    = attribute.Key("session.bytes_read")
	AttrBytesWritten = attribute.Key("session.bytes_written")
	AttrKey          = attribute.Key("tgsession.key")
	AttrEvent        = attribute.Key("runner.event")
)

// Names of the metrics.
const (
	MetricUpdateDuration  = "tgsession.update.duration"
	MetricLockWait        = "tgsession.lock.wait"
	MetricLoadDuration    = "tgsession.load.duration"
	MetricHandlerDuration = "tgsession.handler.duration"
	MetricCommitDuration  = "tgsession.commit.duration"
	MetricUpdates         = "tgsession.updates"
	MetricBytesRead       = "tgsession.bytes.read"
	MetricBytesWritten    = "tgsession.bytes.written"
	MetricRunnerUpdates   = "tgsession.runner.updates"
	MetricRunnerQueue     = "tgsession.runner.queue.depth"
	MetricRunnerInFlight  = "tgsession.runner.inflight"
)

// DurationBuckets are the bucket boundaries, in seconds, of the duration
// histograms: from 0.1ms (a lock in memory) to 10s (a slow handler).
var DurationBuckets = []float64{0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

// Options configures New.
type Options struct {
	// TracerProvider makes the tracer of the spans. Nil means
	// otel.GetTracerProvider(), looked up once, in New.
	TracerProvider trace.TracerProvider
	// MeterProvider makes the meter of the metrics. Nil means
	// otel.GetMeterProvider(), looked up once, in New.
	MeterProvider metric.MeterProvider
	// RecordKeys puts the session keys (chat and user ids) on the spans,
	// as attribute tgsession.key. Off by default: keys identify people.
	// Metrics never carry keys.
	RecordKeys bool
}

// Telemetry makes spans and metrics of the hooks of sessions and runners.
// One Telemetry may serve any number of sessions and runners; it is safe
// for concurrent use.
type Telemetry struct {
	tracer     trace.Tracer
	recordKeys bool

	update, lock, load, handler, commit metric.Float64Histogram
	updates, bytesRead, bytesWritten    metric.Int64Counter
	runnerUpdates                       metric.Int64Counter
	queued, inFlight                    metric.Int64Gauge

	// The attribute sets of the outcomes and events, made once.
	outcomeSets       [session.OutcomePanic + 1]metric.MeasurementOption
	unknownOutcomeSet metric.MeasurementOption
	eventSets         [runner.Left + 1]metric.MeasurementOption

	sessionHooks *session.Hooks
	runnerHooks  *runner.Hooks
}

// New returns a Telemetry that makes its spans and metrics with the
// providers of opts. It fails only if an instrument cannot be created.
func New(opts Options) (*Telemetry, error) {
	tp, mp := opts.TracerProvider, opts.MeterProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	t := &Telemetry{tracer: tp.Tracer(ScopeName), recordKeys: opts.RecordKeys}
	m := mp.Meter(ScopeName)

	var errs []error
	hist := func(name, desc string) metric.Float64Histogram {
		h, err := m.Float64Histogram(name, metric.WithUnit("s"), metric.WithDescription(desc),
			metric.WithExplicitBucketBoundaries(DurationBuckets...))
		errs = append(errs, err)
		return h
	}
	counter := func(name, unit, desc string) metric.Int64Counter {
		c, err := m.Int64Counter(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return c
	}
	gauge := func(name, unit, desc string) metric.Int64Gauge {
		g, err := m.Int64Gauge(name, metric.WithUnit(unit), metric.WithDescription(desc))
		errs = append(errs, err)
		return g
	}
	t.update = hist(MetricUpdateDuration, "Time of an update in the session middleware.")
	t.lock = hist(MetricLockWait, "Time an update waited for its session's leases (reading the stored values with them).")
	t.load = hist(MetricLoadDuration, "Time an update spent decoding and migrating its session.")
	t.handler = hist(MetricHandlerDuration, "Time of an update's handler.")
	t.commit = hist(MetricCommitDuration, "Time an update spent writing its session back.")
	t.updates = counter(MetricUpdates, "{update}", "Updates through the session middleware, by outcome.")
	t.bytesRead = counter(MetricBytesRead, "By", "Stored session bytes read.")
	t.bytesWritten = counter(MetricBytesWritten, "By", "Session bytes committed.")
	t.runnerUpdates = counter(MetricRunnerUpdates, "{update}", "Updates through the runner, by event.")
	t.queued = gauge(MetricRunnerQueue, "{update}", "Updates waiting in the runner, over all keys.")
	t.inFlight = gauge(MetricRunnerInFlight, "{handler}", "Handlers running in the runner.")
	if err := errors.Join(errs...); err != nil {
		return nil, fmt.Errorf("otelsession: creating the instruments: %w", err)
	}

	for o := range t.outcomeSets {
		t.outcomeSets[o] = metric.WithAttributeSet(attribute.NewSet(AttrOutcome.String(session.Outcome(o).String())))
	}
	t.unknownOutcomeSet = metric.WithAttributeSet(attribute.NewSet(AttrOutcome.String(session.Outcome(255).String())))
	for k := range t.eventSets {
		t.eventSets[k] = metric.WithAttributeSet(attribute.NewSet(AttrEvent.String(runner.EventKind(k).String())))
	}
	t.sessionHooks = &session.Hooks{Begin: t.begin, End: t.end}
	t.runnerHooks = &runner.Hooks{Event: t.event}
	return t, nil
}

// SessionHooks returns the hooks to set as session.Options.Hooks. All the
// calls return the same *Hooks.
func (t *Telemetry) SessionHooks() *session.Hooks { return t.sessionHooks }

// RunnerHooks returns the hooks to set as runner.Options.Hooks. All the
// calls return the same *Hooks.
func (t *Telemetry) RunnerHooks() *runner.Hooks { return t.runnerHooks }

// beganKey is the context key of the time Begin started the update span.
type beganKey struct{}

// begin starts the update's span.
func (t *Telemetry) begin(ctx context.Context, u session.Update) context.Context {
	id, kind := describe(u)
	attrs := []attribute.KeyValue{AttrUpdateID.Int(id)}
	if kind != "" {
		attrs = append(attrs, AttrUpdateKind.String(kind))
	}
	now := time.Now()
	ctx, _ = t.tracer.Start(ctx, SpanUpdate,
		trace.WithSpanKind(trace.SpanKindConsumer),
		trace.WithTimestamp(now),
		trace.WithAttributes(attrs...))
	return context.WithValue(ctx, beganKey{}, now)
}

// phase is a span to make from a report.
type phase struct {
	name       string
	start, end time.Time
}

// end makes the phase spans and the metrics of r and ends the update span.
func (t *Telemetry) end(ctx context.Context, r *session.Report) {
	now := time.Now()
	outcome := t.outcomeSet(r.Outcome)
	t.record(ctx, r, now, outcome)

	span := trace.SpanFromContext(ctx)
	if !span.IsRecording() {
		span.End(trace.WithTimestamp(now))
		return
	}
	// The phases follow each other from Start, but the span began just
	// after Start (Begin runs after the clock read): lay them from the
	// later of the two, so that they stay within their parent.
	at := r.Start
	if began, ok := ctx.Value(beganKey{}).(time.Time); ok && began.After(at) {
		at = began
	}
	phases := layout(at, now, r)
	if r.Outcome == session.OutcomeUntouched && len(phases) > 0 && phases[len(phases)-1].name == SpanCommit {
		phases = phases[:len(phases)-1] // nothing to commit
	}
	failed := r.Outcome == session.OutcomeError || r.Outcome == session.OutcomeConflict || r.Outcome == session.OutcomePanic
	for _, p := range phases {
		_, ps := t.tracer.Start(ctx, p.name, trace.WithTimestamp(p.start))
		if p.name == SpanCommit && r.Err != nil {
			ps.RecordError(r.Err, trace.WithTimestamp(p.end))
			ps.SetStatus(codes.Error, r.Err.Error())
		}
		ps.End(trace.WithTimestamp(p.end))
	}

	attrs := make([]attribute.KeyValue, 0, 5)
	attrs = append(attrs, AttrOutcome.String(r.Outcome.String()))
	var read, written int
	var fragments, keys []string
	multi := false
	for _, p := range r.Parts {
		read += p.BytesRead
		written += p.BytesWritten
		fragments = append(fragments, p.Fragment)
		keys = append(keys, p.Key)
		multi = multi || p.Fragment != ""
		ev := []attribute.KeyValue{AttrFragment.String(p.Fragment), AttrOutcome.String(p.Outcome.String()),
			AttrBytesRead.Int(p.BytesRead), AttrBytesWritten.Int(p.BytesWritten)}
		if t.recordKeys {
			ev = append(ev, AttrKey.String(p.Key))
		}
		span.AddEvent("session.part", trace.WithTimestamp(now), trace.WithAttributes(ev...))
	}
	attrs = append(attrs, AttrBytesRead.Int(read), AttrBytesWritten.Int(written))
	if multi {
		attrs = append(attrs, AttrFragments.StringSlice(fragments))
	}
	if t.recordKeys && len(keys) > 0 {
		if multi {
			attrs = append(attrs, AttrKey.StringSlice(keys))
		} else {
			attrs = append(attrs, AttrKey.String(keys[0]))
		}
	}
	span.SetAttributes(attrs...)
	if r.Err != nil {
		span.RecordError(r.Err, trace.WithTimestamp(now))
	}
	if failed {
		msg := r.Outcome.String()
		if r.Err != nil {
			msg = r.Err.Error()
		}
		span.SetStatus(codes.Error, msg)
	}
	end := now
	if n := len(phases); n > 0 && phases[n-1].end.After(end) {
		end = phases[n-1].end
	}
	span.End(trace.WithTimestamp(end))
}

// layout returns the phases of r that happened, laid from at: end to end,
// or, when that would outlast now (a lazy session, whose handler time
// includes its lock and load), with the lock and load at the start of the
// handler.
func layout(at, now time.Time, r *session.Report) []phase {
	phases := make([]phase, 0, 4)
	add := func(name string, from time.Time, d time.Duration) time.Time {
		to := from.Add(d)
		if d > 0 {
			phases = append(phases, phase{name, from, to})
		}
		return to
	}
	if at.Add(r.LockWait + r.Load + r.Handler + r.Commit).After(now) {
		add(SpanLoad, add(SpanLock, at, r.LockWait), r.Load)
		add(SpanCommit, add(SpanHandler, at, r.Handler), r.Commit)
		return phases
	}
	add(SpanCommit, add(SpanHandler, add(SpanLoad, add(SpanLock, at, r.LockWait), r.Load), r.Handler), r.Commit)
	return phases
}

// record records the metrics of r.
func (t *Telemetry) record(ctx context.Context, r *session.Report, now time.Time, outcome metric.MeasurementOption) {
	t.updates.Add(ctx, 1, outcome)
	t.update.Record(ctx, now.Sub(r.Start).Seconds(), outcome)
	if r.Handler > 0 {
		t.handler.Record(ctx, r.Handler.Seconds(), outcome)
	}
	if r.LockWait > 0 {
		t.lock.Record(ctx, r.LockWait.Seconds(), outcome)
	}
	if r.Load > 0 {
		t.load.Record(ctx, r.Load.Seconds(), outcome)
	}
	if r.Commit > 0 && r.Outcome != session.OutcomeUntouched {
		t.commit.Record(ctx, r.Commit.Seconds(), outcome)
	}
	for _, p := range r.Parts {
		if p.BytesRead == 0 && p.BytesWritten == 0 {
			continue
		}
		frag := metric.WithAttributes(AttrFragment.String(p.Fragment))
		if p.BytesRead > 0 {
			t.bytesRead.Add(ctx, int64(p.BytesRead), frag)
		}
		if p.BytesWritten > 0 {
			t.bytesWritten.Add(ctx, int64(p.BytesWritten), frag)
		}
	}
}

// outcomeSet returns the measurement option of outcome o.
func (t *Telemetry) outcomeSet(o session.Outcome) metric.MeasurementOption {
	if int(o) < len(t.outcomeSets) {
		return t.outcomeSets[o]
	}
	return t.unknownOutcomeSet
}

// event records the metrics of a runner event.
func (t *Telemetry) event(ctx context.Context, e runner.Event) {
	if int(e.Kind) < len(t.eventSets) {
		t.runnerUpdates.Add(ctx, 1, t.eventSets[e.Kind])
	} else {
		t.runnerUpdates.Add(ctx, 1, metric.WithAttributes(AttrEvent.String(e.Kind.String())))
	}
	t.queued.Record(ctx, int64(e.Queued))
	t.inFlight.Record(ctx, int64(e.InFlight))
}

// describe returns the id and kind of u: the name of the field of the
// update that is set, as Telegram names it ("" if none is known).
func describe(u session.Update) (int, string) {
	if v := u.Update; v != nil {
		if k := kindOf(v); k != "" || len(u.Raw) == 0 {
			return v.UpdateID, k
		}
	}
	// An update tgbotapi does not know (business_message, ...), or one
	// given only as JSON: its fields tell.
	var fields map[string]json.RawMessage
	if json.Unmarshal(u.Raw, &fields) != nil {
		if u.Update != nil {
			return u.Update.UpdateID, ""
		}
		return 0, ""
	}
	var id int
	_ = json.Unmarshal(fields["update_id"], &id)
	kind := ""
	for k := range fields {
		if k != "update_id" && (kind == "" || k < kind) {
			kind = k
		}
	}
	return id, kind
}

// kindOf returns the kind of an update tgbotapi decoded.
func kindOf(u *tgbotapi.Update) string {
	switch {
	case u.Message != nil:
		return "message"
	case u.EditedMessage != nil:
		return "edited_message"
	case u.ChannelPost != nil:
		return "channel_post"
	case u.EditedChannelPost != nil:
		return "edited_channel_post"
	case u.InlineQuery != nil:
		return "inline_query"
	case u.ChosenInlineResult != nil:
		return "chosen_inline_result"
	case u.CallbackQuery != nil:
		return "callback_query"
	case u.ShippingQuery != nil:
		return "shipping_query"
	case u.PreCheckoutQuery != nil:
		return "pre_checkout_query"
	case u.Poll != nil:
		return "poll"
	case u.PollAnswer != nil:
		return "poll_answer"
	case u.MyChatMember != nil:
		return "my_chat_member"
	case u.ChatMember != nil:
		return "chat_member"
	case u.ChatJoinRequest != nil:
		return "chat_join_request"
	}
	return ""
}
