// Package runner runs a session handler in production: it takes updates
// from a [Source] (long polling by default, or a [Webhook], which
// [ServeWebhook] serves in one call), handles the
// updates of one ordering key one after another and different keys in
// parallel, stays within fixed bounds under any load, and stops like
// http.Server.Shutdown, without losing an update.
//
//	sess, err := session.New(session.Options[Data]{Storage: store})
//	...
//	err = runner.Run(ctx, bot, sess, h, runner.Options{})
//
// Run puts h behind the session's middleware itself, and orders updates by
// the session's own key function, so the order it keeps is always the one
// the session locks by: updates that share a session never wait for each
// other's lock inside a handler slot.
//
// # Stopping
//
// When ctx is cancelled, Run stops taking updates from its source. Updates
// it has already taken are still handled: the running ones finish, and the
// queued ones run, in order and within the same bounds. Handlers get a
// context that is not cancelled by the stop (so the session write-back
// after the handler still works) and ends DrainTimeout after it. At that
// deadline nothing more starts: updates still waiting are reported to
// OnError with an error wrapping [ErrStopped], and handlers that do not
// return promptly once their context ends are left behind and reported
// the same way. Run returns after that, with nil when every taken update
// was handled. With a webhook, see [Webhook] for stopping the HTTP
// server.
//
// # Delivery
//
// Nothing is acknowledged to Telegram before it is handled: an update
// counts as handled once its handler returned (with or without an error)
// or panicked and the panic was reported. The polling source confirms an
// offset only past handled updates, and the webhook answers 2xx only once
// its update was handled (or once it outlived Webhook.AckTimeout). An
// update the runner did not handle, because it was still waiting at the
// drain deadline, was left behind there, or was never taken, is not
// acknowledged: Telegram sends it again, to the next start. A Polling
// reused by the next Run remembers the updates it handled past its
// confirmed offset and skips them when they come again, so over a
// graceful stop and a restart in the same process every update is
// handled exactly once; with a new Polling (or process), or after a
// crash, updates handled but not yet confirmed come again: delivery is
// at least once.
//
// # Redeliveries
//
// Telegram sends an update again when it got no answer in time: a webhook
// whose answer was slow or lost, say. Run remembers the ids of the updates
// it took, over all its sources: the last Options.RecentUpdates handled
// (10,000 by default; the oldest is forgotten first), and those still
// queued or running. An update whose id it remembers is not handled
// again. When the first copy was handled, the copy is acknowledged at
// once (the webhook answers 200; the polling source may confirm it); when
// the first is still queued or running, the copy waits for its outcome
// and is answered the same way: 200 once the first was handled, 503 if
// the first was given up at the drain deadline. An update given up there
// (reported with ErrStopped) is forgotten, so when it comes again it is
// handled. The memory is per Run: a new Run, or process, handles an
// update it never saw, and so does a Run that forgot it, past
// RecentUpdates later updates. A redelivery is no error, so it is not
// reported to OnError.
//
// Across processes and restarts, the session does the same for every
// update that used its session: each session key keeps a record of the
// updates committed to it, in the same step as the session (see
// session.Locker), so a copy that reaches another replica, or a restarted
// process, finds its mark and is not handled again (the middleware
// returns session.ErrDuplicate, which Run acknowledges without reporting
// it). Updates that never took their session's lock (no key, or a lazy
// session never touched) have only the in-process window.
//
// # Ordering
//
// The ordering key of an update is its session key (sess.Key; for a
// session.NewMulti session, its first fragment's key). An update without
// one (an inline query under a per-chat session, say) is ordered by its
// chat, or without a chat by its sending user, in queues apart from every
// session key's; an update with neither runs unordered (so does an
// update of a kind tgbotapi v5.5.1 does not know, such as
// business_message, which it decodes to an Update with only UpdateID,
// unless the session's key function finds a key in it). Under a lazy
// session, updates that never touch their session are ordered all the
// same. The key function runs as each update is taken, on the source's
// goroutine, so like any session.KeyFunc it must be cheap; if it panics,
// the update is not handled but reported to OnError with the panic.
//
// # Bounds
//
// At most MaxInFlight handlers run at once, each in its own goroutine;
// idle keys cost nothing. At most QueueLimit updates wait per key and
// MaxQueued in all; when either is full the source is made to wait
// (backpressure): the polling source stops fetching, the webhook holds the
// request. One chat flooding the bot therefore slows the intake of the
// others: that is the price of never dropping an update.
//
// # Raw JSON
//
// tgbotapi v5.5.1 drops fields (message_thread_id, is_topic_message,
// business_connection_id, ...) and whole update kinds (business_message,
// message_reaction, ...). Both built-in sources keep each update's JSON
// as Telegram sent it, and the handler gets it as session.Context.Raw:
// decode what tgbotapi misses from there. An update of a kind tgbotapi
// does not know still reaches the handler, with only Update.UpdateID
// set. A custom [Source] passes the JSON to [Feed.Put], or nil.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"reflect"
	"runtime/debug"
	"sync"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// Defaults of [Options].
const (
	// DefaultMaxInFlight is the default of Options.MaxInFlight.
	DefaultMaxInFlight = 64
	// DefaultQueueLimit is the default of Options.QueueLimit.
	DefaultQueueLimit = 100
	// DefaultMaxQueued is the default of Options.MaxQueued: about 13 MB of
	// waiting updates at the sizes measured in the tests.
	DefaultMaxQueued = 10_000
	// DefaultDrainTimeout is the default of Options.DrainTimeout, within
	// the usual grace periods of process managers (Kubernetes: 30s).
	DefaultDrainTimeout = 10 * time.Second
	// DefaultRecentUpdates is the default of Options.RecentUpdates:
	// about 0.4 MB of ids when full, plus about 50 bytes per update
	// queued or running (measured).
	DefaultRecentUpdates = 10_000
)

// ErrStopped is wrapped by the error given to OnError for an update that
// was taken but not handled because the runner stopped, and returned by
// [Feed.Put] for an update the runner did not take.
var ErrStopped = errors.New("runner: stopped")

// Options configures [Run]. The zero Options polls the bot with the
// defaults below.
type Options struct {
	// Source delivers the updates. Nil means NewPolling(bot, PollingOptions{}).
	Source Source

	// MaxInFlight is the most handlers running at once. 0 means
	// DefaultMaxInFlight; negative is an error.
	MaxInFlight int

	// QueueLimit is the most updates waiting behind the running one of
	// the same key; MaxQueued is the most waiting over all keys. When
	// either is reached the source waits until there is room. 0 means
	// DefaultQueueLimit and DefaultMaxQueued; negative is an error.
	QueueLimit int
	MaxQueued  int

	// DrainTimeout bounds the stop: handlers' context ends this long
	// after ctx is cancelled, and updates not started by then are
	// reported with ErrStopped and not acknowledged. Run returns at the latest 0.1s after that
	// plus the source's Close (one short getUpdates, at most 5s). 0 means
	// DefaultDrainTimeout; negative is an error.
	DrainTimeout time.Duration

	// RecentUpdates is how many handled update ids one Run remembers, over
	// all its sources, to recognise an update Telegram sends again (a
	// webhook whose answer was slow or lost): an update whose id was
	// handled among the last RecentUpdates, or is still queued or running,
	// is not handled again (see the package documentation). The ids of
	// updates queued or running are remembered on top of these, within the
	// bounds above. 0 means DefaultRecentUpdates; negative is an error.
	RecentUpdates int

	// OnError receives every handler error (the session's too: a failed
	// load or commit), every panic of a handler or of the session's key
	// function (as an error carrying the stack), every update reported
	// with ErrStopped, and the source's transient errors and reports (a
	// failed getUpdates; a Webhook's requests that came while no Run was
	// receiving, if the Webhook has no OnError of its own): then u is nil
	// and key empty. key is the update's ordering key: its session key
	// (before any Prefix), or "chat <id>" or "user <id>" for an update
	// without one, or "" for one that ran unordered. It may be called from
	// several goroutines at once. ctx is the handlers' context, or Run's
	// for source errors. Nil logs with slog.Default at error level; the
	// runner logs nothing else.
	OnError func(ctx context.Context, u *tgbotapi.Update, key string, err error)
	// Hooks, if set, are told of every update the runner takes, handles,
	// skips and gives up (see [Hooks]).
	Hooks *Hooks
}

func (o Options) withDefaults() Options {
	if o.MaxInFlight == 0 {
		o.MaxInFlight = DefaultMaxInFlight
	}
	if o.QueueLimit == 0 {
		o.QueueLimit = DefaultQueueLimit
	}
	if o.MaxQueued == 0 {
		o.MaxQueued = DefaultMaxQueued
	}
	if o.DrainTimeout == 0 {
		o.DrainTimeout = DefaultDrainTimeout
	}
	if o.RecentUpdates == 0 {
		o.RecentUpdates = DefaultRecentUpdates
	}
	if o.OnError == nil {
		o.OnError = logError
	}
	return o
}

// Session is what [Run] needs of a session: its middleware, which Run
// puts in front of the handler, and its key function, by which Run orders
// updates. A *session.Session[S] built by session.New or session.NewMulti
// is one. A type that embeds a *session.Session[S] and overrides
// Middleware is one too, and keeps the session's key: that is how a
// handler goes around the session middleware, to act once the session was
// saved (see Example_sendAfterSave).
type Session[S any] interface {
	Middleware(next session.Handler[S]) session.Handler[S]
	Key(u session.Update) (key string, ok bool)
}

// orderKey is an update's ordering key. Session keys and the fallback
// keys of updates without one are kept apart, whatever the strings.
type orderKey struct {
	key      string // as given to OnError
	fallback bool   // not the session's: "chat <id>" or "user <id>"
}

// keyOf finds the ordering key of u: its session key, or else its chat,
// or else its user; keyed is false when it has none. A panic in the
// session's key function is returned as an error.
func keyOf[S any](sess Session[S], u session.Update) (k orderKey, keyed bool, err error) {
	defer func() {
		if r := recover(); r != nil {
			k, keyed, err = orderKey{}, false, panicError("the session's key function panicked", r)
		}
	}()
	if key, ok := sess.Key(u); ok && key != "" {
		return orderKey{key: key}, true, nil
	}
	if id, ok := session.ByChat(u); ok {
		return orderKey{key: "chat " + id, fallback: true}, true, nil
	}
	if id, ok := session.ByUser(u); ok {
		return orderKey{key: "user " + id, fallback: true}, true, nil
	}
	return orderKey{}, false, nil
}

// logOutcome names how an update reported to OnError ended, as the
// "outcome" attribute of the default log.
func logOutcome(err error) string {
	switch {
	case errors.Is(err, session.ErrConflict):
		return session.OutcomeConflict.String()
	case errors.Is(err, session.ErrCorrupt):
		return "corrupt"
	}
	return outcome(err).String() // failed, or left at the drain deadline
}

func logError(ctx context.Context, u *tgbotapi.Update, key string, err error) {
	if u == nil {
		slog.Default().ErrorContext(ctx, "runner: source failed", "error", err)
		return
	}
	slog.Default().ErrorContext(ctx, "runner: update failed", "update_id", u.UpdateID, "key", key,
		"outcome", logOutcome(err), "error", err)
}

// Run handles the updates of opts.Source with sess.Middleware(h) until
// ctx is cancelled or the source's Receive returns (a finite source, or
// one that failed for good), then stops gracefully (see the package
// documentation) and returns. It builds the middleware once, and orders
// updates by sess.Key (see the package documentation). Each update is
// handled with a fresh session.NewContext[S](hctx, bot, u), where hctx
// keeps ctx's values but is cancelled only DrainTimeout after ctx, and
// whose Raw is the update's JSON as the source got it (see [Feed.Put]).
//
// Run checks its arguments before it starts anything: a nil sess (or one
// whose Middleware panics, such as a *session.Session not built by
// session.New or session.NewMulti), a nil h, a nil bot without
// opts.Source, a negative MaxInFlight, QueueLimit, MaxQueued,
// DrainTimeout or RecentUpdates, a nil *Polling or *Webhook as Source, a
// Polling not made by [NewPolling], and a Webhook with an empty Secret (unless
// InsecureNoSecret) or a malformed one, a negative MaxBodyBytes or a
// negative AckTimeout make it return an error wrapping
// [session.ErrConfig] that names the mistake.
//
// Run returns nil after a stop in which every taken update was handled
// (a handler's error counts: it went to OnError), and the source's error
// if it failed for good. If the drain times out,
// nothing more starts, the handlers' context is cancelled, and shortly
// after, updates still waiting are reported with ErrStopped, handlers
// still running are left behind (their updates reported the same way);
// neither is acknowledged to Telegram, so they come again at the next
// start, and Run returns an error wrapping
// context.DeadlineExceeded. OnError is not called for a handler left
// behind when it eventually returns.
func Run[S any](ctx context.Context, bot *tgbotapi.BotAPI, sess Session[S], h session.Handler[S], opts Options) error {
	h, err := check(bot, sess, h, opts)
	if err != nil {
		return err
	}
	opts = opts.withDefaults()
	src := opts.Source
	if src == nil {
		src = NewPolling(bot, PollingOptions{})
	}

	// Handlers never see ctx's cancellation: it only starts the drain.
	hctx, hcancel := context.WithCancel(context.WithoutCancel(ctx))
	defer hcancel()
	d := newDispatcher(opts, func(u session.Update) (orderKey, bool, error) { return keyOf(sess, u) }, func(it *item) error {
		if it.err != nil {
			return it.err // the key function panicked: not handled
		}
		c := session.NewContext[S](hctx, bot, it.u)
		c.Raw = it.raw
		return call(h, c)
	})
	d.report = func(it *item, err error) { opts.OnError(hctx, &it.u, it.key.key, err) }
	if opts.Hooks != nil && opts.Hooks.Event != nil {
		d.hook, d.hookCtx = opts.Hooks.Event, hctx
	}
	feed := &Feed{d: d, onError: func(ctx context.Context, err error) { opts.OnError(ctx, nil, "", err) }}

	srcErr := src.Receive(ctx, feed)
	if srcErr != nil && ctx.Err() != nil {
		srcErr = nil // the source ended because of the stop
	}
	d.stop()

	drainCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), opts.DrainTimeout)
	defer cancel()
	var drainErr error
	if !d.wait(drainCtx, (*dispatcher).idleLocked) {
		// The deadline: start nothing more, end the handlers' context,
		// and give those that honour it a moment to return and be
		// reported like any other failure.
		d.halt()
		hcancel()
		graceCtx, cancelGrace := context.WithTimeout(context.WithoutCancel(ctx), abandonGrace)
		d.wait(graceCtx, func(d *dispatcher) bool { return d.inFlight == 0 })
		cancelGrace()
		waiting, running := d.abandon()
		drainErr = fmt.Errorf("runner: drain timeout of %v: %d waiting updates reported, %d handlers left behind: %w", opts.DrainTimeout, waiting, running, context.DeadlineExceeded)
	}

	// The source gets its own short bound: confirming an offset is one
	// call, and skipping it would make the next start repeat updates.
	closeCtx, cancelClose := context.WithTimeout(context.WithoutCancel(ctx), closeTimeout)
	defer cancelClose()
	var closeErr error
	if err := src.Close(closeCtx); err != nil {
		closeErr = fmt.Errorf("runner: close source: %w", err)
	}
	return errors.Join(srcErr, drainErr, closeErr)
}

// check finds the configuration mistakes of a Run call, which would
// otherwise show up later: as a nil dereference in a handler's or the
// poller's goroutine, a silently applied default, or a source that never
// delivers. It returns h behind the session's middleware.
func check[S any](bot *tgbotapi.BotAPI, sess Session[S], h session.Handler[S], opts Options) (session.Handler[S], error) {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: runner: "+format, append([]any{session.ErrConfig}, args...)...))
	}
	if isNil(sess) {
		bad("Run: nil session sess (build it with session.New or session.NewMulti)")
	}
	if h == nil {
		bad("Run: nil handler h")
	}
	switch src := opts.Source.(type) {
	case nil:
		if bot == nil {
			bad("Run: nil bot and no Options.Source: polling needs a bot")
		}
	case *Polling:
		if src == nil {
			bad("Options.Source is a nil *Polling")
		} else if src.check() != nil {
			bad("Options.Source is a Polling not made by NewPolling")
		}
	case *Webhook:
		if src == nil {
			bad("Options.Source is a nil *Webhook")
		} else {
			for _, m := range src.check() {
				bad("%s", m)
			}
		}
	}
	if opts.MaxInFlight < 0 {
		bad("Options.MaxInFlight %d is negative (0 means DefaultMaxInFlight)", opts.MaxInFlight)
	}
	if opts.QueueLimit < 0 {
		bad("Options.QueueLimit %d is negative (0 means DefaultQueueLimit)", opts.QueueLimit)
	}
	if opts.MaxQueued < 0 {
		bad("Options.MaxQueued %d is negative (0 means DefaultMaxQueued)", opts.MaxQueued)
	}
	if opts.DrainTimeout < 0 {
		bad("Options.DrainTimeout %v is negative (0 means DefaultDrainTimeout)", opts.DrainTimeout)
	}
	if opts.RecentUpdates < 0 {
		bad("Options.RecentUpdates %d is negative (0 means DefaultRecentUpdates)", opts.RecentUpdates)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	wrapped, err := middleware(sess, h)
	if err != nil {
		return nil, fmt.Errorf("%w: runner: Run: %w", session.ErrConfig, err)
	}
	return wrapped, nil
}

// middleware builds sess's middleware around h, turning a panic (the
// zero session.Session, say) or a nil result into an error.
func middleware[S any](sess Session[S], h session.Handler[S]) (wrapped session.Handler[S], err error) {
	defer func() {
		if r := recover(); r != nil {
			wrapped, err = nil, fmt.Errorf("sess.Middleware panicked (is sess built by session.New or session.NewMulti?): %v", r)
		}
	}()
	if wrapped = sess.Middleware(h); wrapped == nil {
		return nil, errors.New("sess.Middleware returned a nil handler")
	}
	return wrapped, nil
}

// isNil reports whether v is nil, a typed nil pointer inside the
// interface included.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	switch rv := reflect.ValueOf(v); rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// closeTimeout bounds Source.Close after the drain; abandonGrace is how
// long handlers get to return once their context ended at the drain
// timeout, before they are left behind.
const (
	closeTimeout = 5 * time.Second
	abandonGrace = 100 * time.Millisecond
)

// call runs h, turning a panic into an error that carries the stack.
func call[S any](h session.Handler[S], c *session.Context[S]) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = panicError("handler panicked", r)
		}
	}()
	return h(c)
}

// panicError is the error of a recovered panic: its value (wrapped when
// it is an error) and the stack.
func panicError(what string, r any) error {
	if e, ok := r.(error); ok {
		return fmt.Errorf("runner: %s: %w\n%s", what, e, debug.Stack())
	}
	return fmt.Errorf("runner: %s: %v\n%s", what, r, debug.Stack())
}

// A Source delivers updates to [Run]. [Polling] and [Webhook] are the two
// built in; a test can feed updates from a slice with its own.
type Source interface {
	// Receive hands updates to feed.Put, in order, until ctx is
	// cancelled (then it returns nil or ctx's error) or it fails for good
	// (then it returns the error). Transient problems go to feed.Error.
	Receive(ctx context.Context, feed *Feed) error
	// Close is called once, after Receive has returned and every taken
	// update has been handled or reported (or the drain timed out). The
	// polling source confirms its last offset here.
	Close(ctx context.Context) error
}

// Feed is how a [Source] hands updates to the runner.
type Feed struct {
	d       *dispatcher
	onError func(context.Context, error)
}

// Put offers u (not nil; it is copied) to the runner, with raw, the
// update's JSON as Telegram sent it, which the handler gets as the
// Context's Raw: it keeps what tgbotapi v5.5.1 drops (fields such as
// message_thread_id, and update kinds it does not know, which decode to
// an Update with only UpdateID; those are handled too, unordered unless
// the session's key function finds a key in them). raw is kept, not
// copied, so the source must not change it afterwards; nil is allowed,
// for a source that has no JSON (the handler's Raw is then nil). It waits while the
// runner is full, so a source never holds more than the bounds allow,
// until ctx ends or the runner stops. It returns nil if the runner took u:
// then done, unless nil, is called exactly once, from another goroutine.
// It is called with handled true once u's
// handler returned (with or without an error) or panicked and was
// reported: only then may the source acknowledge u to Telegram. It is
// called with handled false when the runner stopped without handling u
// (u was still waiting at the drain deadline, or its handler was left
// behind there; either was reported to OnError with [ErrStopped]): the
// source must not acknowledge u, so Telegram sends it again. Otherwise
// Put returns an error (wrapping [ErrStopped] or ctx's error) and u was
// not taken: the source still owns it and should let Telegram send it
// again (not confirm it, or answer a webhook with an error status).
//
// An update whose id (when positive, as Telegram's are) is the id of one
// this Run handled recently, or of one still queued or running, is a
// redelivery: Put takes it without handling it again, and calls done with
// the first copy's outcome: at once (from another goroutine) if the first
// was handled, else when the first is handled or given up. Such an update
// takes no room in the bounds, so Put does not wait for it.
func (f *Feed) Put(ctx context.Context, u *tgbotapi.Update, raw json.RawMessage, done func(handled bool)) error {
	return f.d.put(ctx, u, raw, done)
}

// Error reports a transient problem of the source, such as a failed
// getUpdates that will be retried, to OnError with a nil update.
func (f *Feed) Error(ctx context.Context, err error) {
	f.onError(ctx, err)
}

// item is one taken update.
type item struct {
	u    tgbotapi.Update
	raw  json.RawMessage // the update's JSON, for Context.Raw; may be nil
	key  orderKey
	err  error // the key function panicked: report this, do not handle
	q    *keyQueue
	done func(handled bool)
	// dups, not nil when u's id is in the window, holds the done funcs of
	// the redeliveries of u that wait for its outcome.
	dups *redeliveries

	// Guarded by dispatcher.mu.
	abandoned bool // reported at the drain timeout while still running
}

// keyQueue holds the updates of one key waiting behind the running one.
// It exists only while its key has a handler running or updates waiting,
// so the map of queues never holds idle keys.
type keyQueue struct {
	key     orderKey
	keyed   bool // in dispatcher.queues; keyless updates get a queue of their own
	items   fifo[*item]
	running bool
}

// dispatcher orders, bounds and runs taken updates. Goroutines exist only
// for running handlers: a worker runs one update, then takes the next
// ready key in round-robin order, and exits when none is ready.
type dispatcher struct {
	maxInFlight, queueLimit, maxQueued int
	recent                             recentIDs
	key                                func(session.Update) (orderKey, bool, error)
	exec                               func(*item) error
	report                             func(*item, error)
	hook                               func(context.Context, Event) // nil: no hooks
	hookCtx                            context.Context

	mu       sync.Mutex
	queues   map[orderKey]*keyQueue
	ready    fifo[*keyQueue] // have waiting updates, no running handler
	running  map[*item]struct{}
	inFlight int  // workers
	queued   int  // waiting updates over all keys
	blocked  int  // Put calls waiting for room; for tests and figures
	stopped  bool // Put refuses updates
	// duplicates counts redeliveries taken without being handled again.
	duplicates int
	halted     bool // nothing more starts: the drain timed out
	// changed is closed and replaced whenever room frees up or the
	// dispatcher goes idle, so waiters can select on it with a context.
	changed chan struct{}
}

func newDispatcher(o Options, key func(session.Update) (orderKey, bool, error), exec func(*item) error) *dispatcher {
	return &dispatcher{
		maxInFlight: o.MaxInFlight,
		queueLimit:  o.QueueLimit,
		maxQueued:   o.MaxQueued,
		recent:      newRecentIDs(o.RecentUpdates),
		key:         key,
		exec:        exec,
		queues:      make(map[orderKey]*keyQueue),
		running:     make(map[*item]struct{}),
		changed:     make(chan struct{}),
	}
}

func (d *dispatcher) notifyLocked() {
	close(d.changed)
	d.changed = make(chan struct{})
}

func (d *dispatcher) put(ctx context.Context, u *tgbotapi.Update, raw json.RawMessage, done func(handled bool)) error {
	// Outside the lock: the key function is the session's, user code.
	key, keyed, keyErr := d.key(session.Update{Update: u, Raw: raw})
	d.mu.Lock()
	for {
		if d.stopped {
			d.mu.Unlock()
			return ErrStopped
		}
		if d.redeliveredLocked(u.UpdateID, done) {
			e := d.eventLocked(Deduplicated, u, key.key, nil)
			d.mu.Unlock()
			d.emit(e)
			return nil
		}
		var q *keyQueue
		if keyed {
			q = d.queues[key]
		}
		if d.queued < d.maxQueued && (!keyed || q == nil || q.items.len() < d.queueLimit) {
			if q == nil {
				q = &keyQueue{key: key, keyed: keyed}
				if keyed {
					d.queues[key] = q
				}
			}
			q.items.push(&item{u: *u, raw: raw, key: key, err: keyErr, q: q, done: done, dups: d.recent.start(u.UpdateID)})
			d.queued++
			if !q.running && q.items.len() == 1 {
				d.ready.push(q)
			}
			d.startLocked()
			e := d.eventLocked(Taken, u, key.key, nil)
			d.mu.Unlock()
			d.emit(e)
			return nil
		}
		ch := d.changed
		d.blocked++
		d.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			d.mu.Lock()
			d.blocked--
			d.mu.Unlock()
			return fmt.Errorf("runner: waiting for room: %w", ctx.Err())
		}
		d.mu.Lock()
		d.blocked--
	}
}

// startLocked starts workers for ready keys, up to maxInFlight.
func (d *dispatcher) startLocked() {
	for !d.halted && d.inFlight < d.maxInFlight && d.ready.len() > 0 {
		d.inFlight++
		go d.work(d.nextLocked())
	}
}

// nextLocked takes the first update of the next ready key.
func (d *dispatcher) nextLocked() *item {
	q := d.ready.pop()
	it := q.items.pop()
	q.running = true
	d.queued--
	d.running[it] = struct{}{}
	d.notifyLocked() // room for one more
	return it
}

func (d *dispatcher) work(it *item) {
	for {
		err := d.exec(it)
		d.mu.Lock()
		if it.abandoned {
			// Reported at the drain timeout; Run may have returned.
			d.inFlight--
			d.mu.Unlock()
			return
		}
		delete(d.running, it)
		dups := d.recent.finish(it.u.UpdateID, it.dups, true)
		e := d.eventLocked(outcome(err), &it.u, it.key.key, err)
		d.mu.Unlock()
		d.emit(e)
		// A duplicate found by the session's record (a redelivery to
		// another process, or after a restart) was handled before: it is
		// acknowledged, and not an error.
		if err != nil && !errors.Is(err, session.ErrDuplicate) {
			d.report(it, err)
		}
		if it.done != nil {
			it.done(true)
		}
		callAll(dups, true)

		d.mu.Lock()
		q := it.q
		q.running = false
		if q.items.len() > 0 {
			d.ready.push(q) // behind the other ready keys: round robin
		} else if q.keyed {
			delete(d.queues, q.key)
		}
		if d.ready.len() == 0 || d.halted {
			d.inFlight--
			d.notifyLocked() // maybe idle
			d.mu.Unlock()
			return
		}
		it = d.nextLocked()
		d.mu.Unlock()
	}
}

// stop makes Put refuse new updates from now on.
func (d *dispatcher) stop() {
	d.mu.Lock()
	d.stopped = true
	d.notifyLocked()
	d.mu.Unlock()
}

// halt makes workers start nothing more.
func (d *dispatcher) halt() {
	d.mu.Lock()
	d.halted = true
	d.mu.Unlock()
}

// idleLocked tells whether no update is running or waiting.
func (d *dispatcher) idleLocked() bool { return d.inFlight == 0 && d.queued == 0 }

// wait waits until cond, called with d.mu held, is true or ctx ends, and
// reports whether cond became true.
func (d *dispatcher) wait(ctx context.Context, cond func(*dispatcher) bool) bool {
	for {
		d.mu.Lock()
		ok := cond(d)
		ch := d.changed
		d.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// abandon ends the drain: it reports every waiting update with ErrStopped,
// and the running ones, whose results will be ignored, the same way, and
// calls their done with handled false, so no source acknowledges them. It
// returns how many were waiting and running.
func (d *dispatcher) abandon() (waitingN, runningN int) {
	d.mu.Lock()
	var waiting, running []*item
	for d.ready.len() > 0 {
		q := d.ready.pop()
		for q.items.len() > 0 {
			waiting = append(waiting, q.items.pop())
		}
	}
	// Keys with a running handler are not in ready but may have updates waiting.
	for _, q := range d.queues {
		for q.items.len() > 0 {
			waiting = append(waiting, q.items.pop())
		}
	}
	d.queued = 0
	for it := range d.running {
		it.abandoned = true
		running = append(running, it)
	}
	clear(d.running)
	// Not handled: forget their ids, so that a redelivery is handled.
	dups := make([][]func(bool), 0, len(waiting)+len(running))
	for _, it := range waiting {
		dups = append(dups, d.recent.finish(it.u.UpdateID, it.dups, false))
	}
	for _, it := range running {
		dups = append(dups, d.recent.finish(it.u.UpdateID, it.dups, false))
	}
	d.notifyLocked()
	d.mu.Unlock()

	for i, it := range waiting {
		err := fmt.Errorf("runner: update %d not handled at the drain timeout, not acknowledged: %w", it.u.UpdateID, ErrStopped)
		d.report(it, err)
		d.emit(Event{Kind: Left, Update: &it.u, Key: it.key.key, Err: err})
		if it.done != nil {
			it.done(false)
		}
		callAll(dups[i], false)
	}
	for i, it := range running {
		err := fmt.Errorf("runner: update %d still running at the drain timeout, left behind and not acknowledged: %w", it.u.UpdateID, ErrStopped)
		d.report(it, err)
		d.emit(Event{Kind: Left, Update: &it.u, Key: it.key.key, Err: err})
		if it.done != nil {
			it.done(false)
		}
		callAll(dups[len(waiting)+i], false)
	}
	return len(waiting), len(running)
}

// redeliveredLocked tells whether id is in the window, and if so takes
// the redelivery: done gets the first copy's outcome, at once if it is
// known, else when it is.
func (d *dispatcher) redeliveredLocked(id int, done func(handled bool)) bool {
	handled, dups := d.recent.lookup(id)
	switch {
	case handled:
		if done != nil {
			go done(true) // never on the caller's goroutine, as Put promises
		}
	case dups != nil:
		if done != nil {
			dups.dones = append(dups.dones, done)
		}
	default:
		return false
	}
	d.duplicates++
	return true
}

// callAll calls each of dones with handled.
func callAll(dones []func(bool), handled bool) {
	for _, done := range dones {
		done(handled)
	}
}

// stats is a snapshot of the dispatcher's counters.
type stats struct {
	inFlight, queued, keys, blocked int
	// duplicates is the count of redeliveries not handled again; recent
	// and pending the ids remembered as handled and as queued or
	// running, and recentCap the capacity of the eviction queue.
	duplicates, recent, pending, recentCap int
}

func (d *dispatcher) stats() stats {
	d.mu.Lock()
	defer d.mu.Unlock()
	return stats{inFlight: d.inFlight, queued: d.queued, keys: len(d.queues), blocked: d.blocked,
		duplicates: d.duplicates, recent: len(d.recent.handled), pending: len(d.recent.pending), recentCap: cap(d.recent.order.buf)}
}

// recentIDs is the window of update ids one Run has seen: those queued or
// running, with the redeliveries waiting for their outcome, and the last
// size handled, the oldest evicted first. Ids that are not positive are
// never in it. Its methods are called with dispatcher.mu held.
type recentIDs struct {
	size    int
	pending map[int]*redeliveries
	handled map[int]struct{}
	order   fifo[int] // the handled ids, oldest first
}

// redeliveries are the done funcs of the redeliveries of an update still
// queued or running.
type redeliveries struct {
	dones []func(handled bool)
}

func newRecentIDs(size int) recentIDs {
	return recentIDs{size: size, pending: make(map[int]*redeliveries), handled: make(map[int]struct{})}
}

// lookup tells whether id was handled, or else returns the redeliveries
// of its queued or running first copy; neither when id is not in the
// window.
func (r *recentIDs) lookup(id int) (handled bool, dups *redeliveries) {
	if id <= 0 {
		return false, nil
	}
	if _, ok := r.handled[id]; ok {
		return true, nil
	}
	return false, r.pending[id]
}

// start records id as queued; it returns nil for an id not remembered.
func (r *recentIDs) start(id int) *redeliveries {
	if id <= 0 {
		return nil
	}
	dups := &redeliveries{}
	r.pending[id] = dups
	return dups
}

// finish records the outcome of the update that start gave dups: if
// handled, its id joins the handled ones, evicting the oldest beyond
// size; if not, it is forgotten, so that a redelivery is handled. It
// returns the done funcs of the redeliveries that waited.
func (r *recentIDs) finish(id int, dups *redeliveries, handled bool) []func(bool) {
	if dups == nil {
		return nil
	}
	delete(r.pending, id)
	if handled {
		r.handled[id] = struct{}{}
		r.order.push(id)
		for r.order.len() > r.size {
			delete(r.handled, r.order.pop())
		}
	}
	return dups.dones
}

// fifo is a queue on a slice that gives its memory back: the slice is
// dropped when it empties and compacted when mostly consumed, so a queue
// that once held many items does not keep their backing array.
type fifo[T any] struct {
	buf  []T
	head int
}

func (f *fifo[T]) len() int { return len(f.buf) - f.head }

func (f *fifo[T]) push(v T) {
	if f.head > 0 && f.head >= len(f.buf)/2 && len(f.buf) == cap(f.buf) {
		n := copy(f.buf, f.buf[f.head:])
		clear(f.buf[n:])
		f.buf, f.head = f.buf[:n], 0
	}
	f.buf = append(f.buf, v)
}

func (f *fifo[T]) pop() T {
	var zero T
	v := f.buf[f.head]
	f.buf[f.head] = zero
	f.head++
	if f.head == len(f.buf) {
		f.buf, f.head = nil, 0
	}
	return v
}
