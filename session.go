// Package session keeps per-chat or per-user data for Telegram bots built
// on tgbotapi: counters, wizard steps, carts. A middleware resolves a
// session key from the update, loads the value from a [StorageAdapter],
// lets the handler use it through a typed [Context], and writes it back
// if, and only if, the handler succeeded and the value changed.
//
// Four variants share one engine and one adapter interface: [Strict]
// (load before the handler), [Lazy] (load on first access), [Multi] and
// [LazyMulti] (named fragments, each with its own storage and key).
// Updates with the same session key never run their handlers at the same
// time, so concurrent updates of one chat never lose each other's writes.
package session

import (
	"context"
	"errors"
	"fmt"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// Context is one update on its way through the handlers. It carries the
// update, the bot, a context.Context for cancellation of storage calls,
// and the session installed by a session middleware. A Context serves one
// update; build a new one for each (see [NewContext]).
type Context[S any] struct {
	context.Context                  // nil means context.Background()
	Bot             *tgbotapi.BotAPI // may be nil, e.g. in tests
	Update          tgbotapi.Update

	sess state[S]
}

// NewContext returns the Context for one update.
func NewContext[S any](ctx context.Context, bot *tgbotapi.BotAPI, u tgbotapi.Update) *Context[S] {
	return &Context[S]{Context: ctx, Bot: bot, Update: u}
}

// Handler handles one update.
type Handler[S any] func(*Context[S]) error

// Middleware wraps a Handler, like func(http.Handler) http.Handler.
type Middleware[S any] func(Handler[S]) Handler[S]

// Options configures a session: where it is stored, how its key is found,
// and what a new session holds. The zero Options is a per-chat session in
// a new [Memory] store starting from the zero value of S.
type Options[S any] struct {
	// Storage keeps the sessions. Nil means NewMemory[S]().
	Storage StorageAdapter[S]
	// Key maps an update to its session key. Nil means ByChat.
	Key KeyFunc
	// Prefix is prepended to every key given to Storage.
	Prefix string
	// Initial returns the value of a new session. It is called once per
	// new session, so sessions never share memory. Nil means the zero value.
	Initial func() S
}

// Errors that callers branch on with errors.Is.
var (
	// ErrNoSessionKey: the update has no session key (an inline query has
	// no chat, say), so it has no session. No storage call was made.
	ErrNoSessionKey = errors.New("session: no session key for this update")
	// ErrNoMiddleware: the Context did not pass through a session middleware.
	ErrNoMiddleware = errors.New("session: no session middleware on this context")
)

// Strict returns the default session middleware: the session is read
// before the handler runs. After the handler returns nil, a cleared
// session is deleted and a changed one is written; an unchanged one costs
// no write. After an error or a panic nothing is written.
func Strict[S any](opts Options[S]) Middleware[S] {
	return newEngine(false, single(opts)).middleware
}

// Session returns the session of this update, loading it first under lazy
// sessions. The handler reads and changes it in place. Under a multi
// session it loads every fragment.
func (c *Context[S]) Session() (*S, error) {
	if err := c.sess.each(c, func(p part[S], sl *slot) error { return p.access(c, sl) }); err != nil {
		return nil, err
	}
	return &c.sess.val, nil
}

// SetSession replaces the session with v. Under lazy sessions this needs
// no read: the value is written after the handler succeeds.
func (c *Context[S]) SetSession(v S) error {
	return c.sess.each(c, func(p part[S], sl *slot) error { return p.set(c, sl, &v) })
}

// ClearSession empties the session: after the handler succeeds it is
// deleted from storage, so the next update starts from the initial value.
// Under lazy sessions this needs no read.
func (c *Context[S]) ClearSession() error {
	return c.sess.each(c, func(p part[S], sl *slot) error { return p.clear(c, sl) })
}

// SessionKey returns the key the session's key function gave for this
// update, before any Prefix. A multi session has one key per fragment:
// see [Fragment.Key].
func (c *Context[S]) SessionKey() (string, bool) {
	e := c.sess.eng
	if e == nil || !e.single {
		return "", false
	}
	return c.sess.slots[0].key, c.sess.slots[0].ok
}

// engine runs every session variant: it resolves the keys of its parts,
// takes their locks, loads them (now or on first access), runs the handler
// and commits. A single session is an engine with one part.
type engine[S any] struct {
	parts  []part[S]
	lazy   bool
	single bool
	locks  *keyLocks
}

// state is the per-update session state, kept inside the Context so that
// an update costs no extra allocation.
type state[S any] struct {
	eng    *engine[S]
	slots  []slot
	inline [2]slot
	locked bool
	val    S // what the handler sees
	orig   S // snapshot of val at load, for change detection of flat types
}

// slot is the per-update state of one part.
type slot struct {
	key      string // from the key function
	storeKey string // Prefix + key, set when locked
	ok       bool   // the update has a key for this part
	state    slotState
	read     bool   // storage was read
	found    bool   // and had a value
	snap     []byte // snapshot of types that are not flat
	lock     *keyLock
}

type slotState uint8

const (
	untouched slotState = iota // lazy and not accessed yet
	loaded                     // read, or initial when storage had nothing
	replaced                   // set without a read: always written
	cleared                    // deleted unless the handler fills it again
)

var errReused = errors.New("session: this Context already passed through a session middleware; use one Context per update and one session middleware (Multi for several values)")

func newEngine[S any](lazy bool, parts ...part[S]) *engine[S] {
	return &engine[S]{
		parts:  parts,
		lazy:   lazy,
		single: len(parts) == 1 && parts[0].info().name == "",
		locks:  newKeyLocks(),
	}
}

func (e *engine[S]) middleware(next Handler[S]) Handler[S] {
	return func(c *Context[S]) error {
		st := &c.sess
		if st.eng != nil {
			return errReused
		}
		if c.Context == nil {
			c.Context = context.Background()
		}
		st.eng = e
		if len(e.parts) <= len(st.inline) {
			st.slots = st.inline[:len(e.parts)]
		} else {
			st.slots = make([]slot, len(e.parts))
		}
		for i, p := range e.parts {
			sl := &st.slots[i]
			sl.key, sl.ok = p.info().key(&c.Update)
		}
		defer func() {
			if st.locked {
				st.unlock()
			}
		}()
		if !e.lazy {
			if err := st.lock(c); err != nil {
				return err
			}
			for i, p := range e.parts {
				if sl := &st.slots[i]; sl.ok {
					if err := p.load(c, sl); err != nil {
						return err
					}
				}
			}
		}
		if err := next(c); err != nil {
			return err
		}
		if !st.locked {
			return nil // lazy and never touched: nothing to write
		}
		var errs error
		for i, p := range e.parts {
			if sl := &st.slots[i]; sl.ok {
				if err := p.commit(c, sl); err != nil {
					errs = errors.Join(errs, err)
				}
			}
		}
		return errs
	}
}

// each runs f on every part after checking that each has a key and that
// the locks are held; it is how the Context methods reach the parts.
func (st *state[S]) each(c *Context[S], f func(part[S], *slot) error) error {
	if st.eng == nil {
		return ErrNoMiddleware
	}
	for i, p := range st.eng.parts {
		if !st.slots[i].ok {
			return p.info().noKey()
		}
	}
	if err := st.lock(c); err != nil {
		return err
	}
	for i, p := range st.eng.parts {
		if err := f(p, &st.slots[i]); err != nil {
			return err
		}
	}
	return nil
}

// slotOf finds the slot of part p, checks its key and takes the locks.
func (st *state[S]) slotOf(c *Context[S], p part[S]) (*slot, error) {
	if st.eng == nil {
		return nil, ErrNoMiddleware
	}
	i := st.indexOf(p)
	if i < 0 {
		return nil, fmt.Errorf("session: fragment %q is not part of this context's session", p.info().name)
	}
	sl := &st.slots[i]
	if !sl.ok {
		return nil, p.info().noKey()
	}
	return sl, st.lock(c)
}

// indexOf returns the index of part p in this update's session, or -1.
func (st *state[S]) indexOf(p part[S]) int {
	if st.eng == nil {
		return -1
	}
	for i, q := range st.eng.parts {
		if q == p {
			return i
		}
	}
	return -1
}

// lock takes the lock of every keyed slot, once per update, in ascending
// key order: two updates that need the same keys take them in the same
// order and so cannot deadlock. Lazy sessions call it on first access, so
// an update that never touches its session takes no lock at all.
func (st *state[S]) lock(c *Context[S]) error {
	if st.locked {
		return nil
	}
	for i, p := range st.eng.parts {
		if sl := &st.slots[i]; sl.ok {
			sl.storeKey = sl.key
			if prefix := p.info().prefix; prefix != "" {
				sl.storeKey = prefix + sl.key
			}
		}
	}
	// Selection in key order without sorting: parts are few, and this
	// allocates nothing. Slots sharing a key share its lock.
	prev, first := "", true
	for {
		next := -1
		for i := range st.slots {
			sl := &st.slots[i]
			if sl.ok && (first || sl.storeKey > prev) && (next < 0 || sl.storeKey < st.slots[next].storeKey) {
				next = i
			}
		}
		if next < 0 {
			st.locked = true
			return nil
		}
		sl := &st.slots[next]
		kl, err := st.eng.locks.lock(c, sl.storeKey)
		if err != nil {
			st.unlock() // all or nothing, so a later access can try again
			return fmt.Errorf("session: wait for %q: %w", sl.storeKey, err)
		}
		sl.lock = kl
		prev, first = sl.storeKey, false
	}
}

func (st *state[S]) unlock() {
	for i := range st.slots {
		if sl := &st.slots[i]; sl.lock != nil {
			st.eng.locks.unlock(sl.lock)
			sl.lock = nil
		}
	}
}
