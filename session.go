// Package session keeps per-chat or per-user data for Telegram bots built
// on tgbotapi: counters, wizard steps, carts. A session middleware resolves
// a session key from the update, loads the session from a [Store], lets
// the handler use it through a typed [Context], and commits it back if,
// and only if, the handler succeeded: written when it changed, deleted
// when cleared, its expiry restarted when it was used and left as it was.
//
// A session is configured once, with [Options], and built by [New] (one
// value per key) or [NewMulti] (named fragments, each with its own
// storage, key, prefix and initial value: grammY's multi sessions). The
// same Options choose grammY's other variants: strict (the default: the
// session is loaded before the handler) or lazy (loaded on first access,
// so an update that never touches it costs no storage call), and enhanced
// storage (a TTL, and versioned migrations of the stored JSON in grammY's
// format).
//
// A session is what its [Codec] stores (JSON by default): every store,
// [Memory] included, keeps the encoding, so the next update sees exactly
// what the codec round-trips, whichever store is plugged in.
//
// Concurrent updates of one chat never lose each other's writes: from the
// moment an update first uses its session (before its handler runs, when
// strict) until its change is committed, the update holds the lock of its
// session key. A store that locks across processes ([Locker]: Redis,
// PostgreSQL) does it for every process; any other store is locked in a
// table shared by the whole process. Updates with different keys, and lazy
// updates that never use their session, run in parallel.
package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"reflect"
	"strings"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// Context is one update on its way through the handlers. It carries the
// update, the bot, a context.Context for cancellation of storage calls,
// and the session installed by a session middleware. A Context serves one
// update; build a new one for each (see [NewContext]).
//
// The session state of the update lives behind a pointer, so copies of a
// Context share it: a handler may copy the Context to give it a deadline
// (c2 := *c; c2.Context = ctx) and use either, from several goroutines at
// once. Storage calls made through a copy use the copy's context.Context.
// Once the handler has returned, the accessors report [ErrSessionClosed].
type Context[S any] struct {
	context.Context                  // nil means context.Background()
	Bot             *tgbotapi.BotAPI // may be nil, e.g. in tests
	Update          tgbotapi.Update
	// Raw is the update's JSON as Telegram sent it, when it came through
	// package runner's sources or telegramtest (nil when built by hand):
	// it keeps what tgbotapi v5.5.1 drops (message_thread_id,
	// business_connection_id, update kinds it does not know).
	Raw json.RawMessage

	sess *state[S]
}

// NewContext returns the Context for one update.
func NewContext[S any](ctx context.Context, bot *tgbotapi.BotAPI, u tgbotapi.Update) *Context[S] {
	// One allocation for the Context and its session state.
	w := &withState[S]{c: Context[S]{Context: ctx, Bot: bot, Update: u}}
	w.c.sess = &w.st
	return &w.c
}

type withState[S any] struct {
	c  Context[S]
	st state[S]
}

// Handler handles one update.
type Handler[S any] func(*Context[S]) error

// Options configures a session: where and how it is stored, how its key
// is found, what a new one holds, and how the middleware runs. The zero
// Options is a strict per-chat session in a new [Memory] store, starting
// from the zero value of S, stored as JSON and never expiring.
//
// For [NewMulti], the fields from Storage to Migrations belong to each
// fragment ([NewFragment]); the multi session's own Options set only Lazy,
// ChatMigration, Clock and Hooks.
type Options[S any] struct {
	// Storage keeps the sessions. Nil means a new [Memory] store private
	// to this session, as in grammY. To share sessions between several
	// sessions (or processes), give them the same store.
	Storage Store
	// Codec encodes sessions for Storage. Nil means [JSON], grammY's
	// format. Migrations, and a TTL on a store that is not an [Expirer],
	// need JSON.
	Codec Codec
	// Key maps an update to its session key. Nil means [ByChat].
	Key KeyFunc
	// Prefix is prepended to every key given to Storage.
	Prefix string
	// Initial returns the value of a new session. It is called once per
	// new session, so sessions never share memory. Nil means the zero
	// value, which must not be nil (a pointer or map S needs Initial).
	Initial func() S
	// TTL, when > 0, makes a session expire once it has gone unused for
	// TTL: it lives at least TTL after the last update that used it (read
	// or changed), and is gone 1.5×TTL after it at the latest. A store
	// that is an [Expirer] expires it natively, exactly TTL after that
	// last use; any other store keeps the expiry in grammY's envelope
	// (field "e", at most one extra write per TTL/2 to push it out).
	TTL time.Duration
	// Migrations maps a version to the migration that turns data stored
	// at the previous version (the next lower key; for the lowest, data
	// stored without a version) into that version's shape: grammY's
	// enhanced storage. Versions compare as numbers. A non-nil map must
	// not be empty.
	Migrations map[float64]Migration

	// Lazy loads the session on first access instead of before the
	// handler (grammY's lazySession): an update that never touches its
	// session costs no storage call and no lock. What is serialised is
	// then the session, not the handler: the part of a handler before its
	// first access runs alongside other updates of the same key.
	Lazy bool
	// ChatMigration follows a group when Telegram turns it into a
	// supergroup, which gets a new chat id: on the service messages that
	// announce it, the session stored under the old chat's key moves to
	// the new chat's key, and a forward left at the old key sends the old
	// chat's later updates there (see the README's chat migrations
	// section). Fragments whose key does not depend on the chat stay.
	ChatMigration bool
	// Clock replaces time.Now for the expiry kept in the envelope, so
	// tests can move time without sleeping. Give a [Memory] store the same
	// clock.
	Clock func() time.Time
	// Hooks, if set, are told of every update: its lock wait, load,
	// handler and commit times, bytes read and written, and outcome (see
	// [Hooks]; package otelsession makes spans and metrics of them).
	Hooks *Hooks
}

// Errors that callers branch on with errors.Is.
var (
	// ErrNoSessionKey: the update has no session key (an inline query has
	// no chat, say, or the key function returned an empty key), so it has
	// no session. No storage call was made.
	ErrNoSessionKey = errors.New("session: no session key for this update")
	// ErrNoMiddleware: the Context did not pass through a session middleware.
	ErrNoMiddleware = errors.New("session: no session middleware on this context")
	// ErrSessionClosed: the session was used after the handler of its
	// update returned (from a goroutine it left running, say). The session
	// has been committed already; this use would be lost, so it fails.
	//
	// The accessors can report this; a *S pointer kept from an earlier
	// Session call cannot. A goroutine that writes through such a pointer
	// after the handler returned changes memory nobody will save (the write
	// is lost, silently) and races with the commit (go test -race reports
	// it). The pattern: copy what the goroutine needs before it starts,
	// never the pointer; send its results back (a channel, or an update of
	// your own) and apply them in a handler, under that update's session:
	//
	//	s, _ := c.Session()
	//	query := s.Query // a copy, not s
	//	go func() { results <- search(query) }()
	ErrSessionClosed = errors.New("session: used after its handler returned")
)

// Session is a configured session: its middleware, its key function (the
// order the runner keeps) and its listing.
type Session[S any] struct {
	eng *engine[S]
}

// New builds a session of one value per key from opts. Every
// configuration mistake is an error wrapping [ErrConfig] that names it.
func New[S any](opts Options[S]) (*Session[S], error) {
	p, err := newFragment("", func(s *S) *S { return s }, opts, opts.Clock)
	if err != nil {
		return nil, err
	}
	return newSession(opts, p)
}

// NewMulti builds a multi session: each fragment a field of S, stored
// with its own options (see [NewFragment]), loaded and committed on its
// own. opts sets only what is common to the fragments: Lazy,
// ChatMigration, Clock and Hooks. A fragment whose key function gives no key for
// an update is an error only when the handler accesses it. Fragments may
// live in different stores, so their commit is not atomic: if one fails,
// the update returns that error (joined with any others) while the
// fragments already committed stay committed.
func NewMulti[S any](opts Options[S], fragments ...Part[S]) (*Session[S], error) {
	if opts.Storage != nil || opts.Codec != nil || opts.Key != nil || opts.Prefix != "" || opts.Initial != nil || opts.TTL != 0 || opts.Migrations != nil {
		return nil, fmt.Errorf("%w: NewMulti: Storage, Codec, Key, Prefix, Initial, TTL and Migrations belong to each fragment's options", ErrConfig)
	}
	if len(fragments) == 0 {
		return nil, fmt.Errorf("%w: NewMulti needs at least one fragment", ErrConfig)
	}
	parts := make([]part[S], len(fragments))
	names := make(map[string]bool, len(fragments))
	for i, f := range fragments {
		if isNil(f) {
			return nil, fmt.Errorf("%w: NewMulti: fragment %d is nil", ErrConfig, i)
		}
		p, err := f.build(opts.Clock)
		if err != nil {
			return nil, err
		}
		info := p.info()
		if info.name == "" || names[info.name] {
			return nil, fmt.Errorf("%w: NewMulti: fragment name %q is empty or used twice", ErrConfig, info.name)
		}
		names[info.name] = true
		for _, q := range parts[:i] {
			if qi := q.info(); qi.lockID == info.lockID && qi.prefix == info.prefix {
				return nil, fmt.Errorf("%w: NewMulti: fragments %q and %q share one store and the prefix %q, so their keys would collide", ErrConfig, qi.name, info.name, info.prefix)
			}
		}
		parts[i] = p
	}
	return newSession(opts, parts...)
}

func newSession[S any](opts Options[S], parts ...part[S]) (*Session[S], error) {
	if opts.ChatMigration {
		for _, p := range parts {
			// The value keeps the store alive, so its identity (an
			// address) cannot be reused by another store.
			migrating.Store(p.info().lockID, p.info())
		}
	}
	return &Session[S]{eng: &engine[S]{
		parts:     parts,
		lazy:      opts.Lazy,
		single:    len(parts) == 1 && parts[0].info().name == "",
		migration: opts.ChatMigration,
		hooks:     opts.Hooks,
	}}, nil
}

// Middleware wraps next with the session: next runs with the session
// available on its Context, and the session is committed after it returns
// nil. After an error or a panic nothing is written, the locks are
// released, and the error or panic goes on to the caller. A nil next
// panics with an error wrapping [ErrConfig].
func (s *Session[S]) Middleware(next Handler[S]) Handler[S] {
	if s == nil || s.eng == nil {
		configErr("a Session must be built by session.New or session.NewMulti")
	}
	if next == nil {
		configErr("session middleware given a nil handler")
	}
	h := s.eng.middleware(next)
	if s.eng.migration {
		return s.eng.migrations(h)
	}
	return h
}

// Key returns the session key of u, before any Prefix: the key a runner
// orders updates by. A multi session orders by its first fragment's key.
func (s *Session[S]) Key(u Update) (string, bool) {
	if s == nil || s.eng == nil {
		return "", false
	}
	var sl slot
	sl.resolve(s.eng.parts[0].info(), u)
	return sl.key, sl.ok
}

// Entries yields every stored session with its key (before any Prefix),
// decoded and migrated, skipping expired ones: for broadcasts and admin
// tools. It needs a store that is a [Lister] and a single session;
// otherwise it yields one error wrapping errors.ErrUnsupported. The
// sequence stops at the first error; cancelling ctx ends it with the
// context's error.
func (s *Session[S]) Entries(ctx context.Context) iter.Seq2[Entry[S], error] {
	return func(yield func(Entry[S], error) bool) {
		if s == nil || s.eng == nil {
			yield(Entry[S]{}, fmt.Errorf("%w: a Session must be built by session.New or session.NewMulti", ErrConfig))
			return
		}
		if !s.eng.single {
			yield(Entry[S]{}, fmt.Errorf("session: a multi session cannot list its sessions: %w", errors.ErrUnsupported))
			return
		}
		s.eng.parts[0].entries(ctx, func(key string, v *S) bool { return yield(Entry[S]{Key: key, Value: *v}, nil) },
			func(err error) { yield(Entry[S]{}, err) })
	}
}

// Entry is one stored session: its key and value.
type Entry[S any] struct {
	Key   string
	Value S
}

// Session returns the session of this update, loading it first under lazy
// sessions. The handler reads and changes it in place. Under a multi
// session it loads every fragment.
func (c *Context[S]) Session() (*S, error) {
	st, err := c.open()
	if err != nil {
		return nil, err
	}
	defer st.mu.Unlock()
	if err := st.each(c, func(p part[S], sl *slot) error { return st.access(c, p, sl) }); err != nil {
		return nil, err
	}
	return &st.val, nil
}

// SetSession replaces the session with v. Under lazy sessions this needs
// no decoding of what is stored: v is written after the handler succeeds.
func (c *Context[S]) SetSession(v S) error {
	st, err := c.open()
	if err != nil {
		return err
	}
	defer st.mu.Unlock()
	return st.each(c, func(p part[S], sl *slot) error { return p.set(c, st, sl, &v) })
}

// ClearSession empties the session: after the handler succeeds it is
// deleted from storage, so the next update starts from the initial value.
func (c *Context[S]) ClearSession() error {
	st, err := c.open()
	if err != nil {
		return err
	}
	defer st.mu.Unlock()
	return st.each(c, func(p part[S], sl *slot) error { return p.clear(c, st, sl) })
}

// SessionKey returns the key the session's key function gave for this
// update, before any Prefix. A multi session has one key per fragment:
// see [Fragment.Key].
func (c *Context[S]) SessionKey() (string, bool) {
	st := c.sess
	if st == nil {
		return "", false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.eng == nil || !st.eng.single {
		return "", false
	}
	return st.slots[0].key, st.slots[0].ok
}

// open locks the update's session state for an accessor, and checks that
// there is a session to access.
func (c *Context[S]) open() (*state[S], error) {
	st := c.sess
	if st == nil {
		return nil, ErrNoMiddleware
	}
	st.mu.Lock()
	switch {
	case st.eng == nil:
		st.mu.Unlock()
		return nil, ErrNoMiddleware
	case st.closed:
		st.mu.Unlock()
		return nil, ErrSessionClosed
	}
	return st, nil
}

// configErr panics with an error wrapping ErrConfig, for the few entry
// points that return no error.
func configErr(format string, args ...any) {
	panic(fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
}

// isNil reports whether v is nil, including a typed nil pointer (or map,
// func, chan, slice) inside an interface: (*Memory)(nil) as a Store passes
// a v == nil check and panics on the first call.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// what names a part in messages.
func (p *partInfo) what() string {
	if p.name == "" {
		return "session"
	}
	return fmt.Sprintf("fragment %q", p.name)
}

// errorf names the fragment and the storage key in an error.
func (p *partInfo) errorf(sl *slot, op string, err error) error {
	if p.name != "" {
		return fmt.Errorf("session: fragment %q: %s %q: %w", p.name, op, sl.storeKey, err)
	}
	return fmt.Errorf("session: %s %q: %w", op, sl.storeKey, err)
}

// noKey is the error of an access to a part that has no key for this
// update.
func (p *partInfo) noKey(sl *slot) error {
	how := "the custom key function returned none"
	switch {
	case sl.empty:
		how = "the key function returned an empty key, which would share one session between every update that gets it"
	case p.defaultKey:
		how = "the default key function ByChat found no chat"
	}
	if p.name != "" {
		return fmt.Errorf("%w: fragment %q: %s", ErrNoSessionKey, p.name, how)
	}
	return fmt.Errorf("%w: %s", ErrNoSessionKey, how)
}

// hasPrefixKey reports whether a stored key belongs to a part with this
// prefix, and returns the session key.
func hasPrefixKey(stored, prefix string) (string, bool) {
	if isAuxKey(stored) || !strings.HasPrefix(stored, prefix) {
		return "", false
	}
	return stored[len(prefix):], true
}
