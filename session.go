// Package session keeps per-chat or per-user data for Telegram bots built
// on tgbotapi: counters, wizard steps, carts. A middleware resolves a
// session key from the update, loads the value from a [StorageAdapter],
// lets the handler use it through a typed [Context], and writes it back
// if, and only if, the handler succeeded and the value changed.
//
// Four variants share one engine and one adapter interface: [Strict]
// (load before the handler), [Lazy] (load on first access), [Multi] and
// [LazyMulti] (named fragments, each with its own storage and key).
//
// Concurrent updates of one chat never lose each other's writes: from the
// moment an update first uses its session (before its handler runs, under
// Strict) until the session is written back, the update holds the lock of
// its session key. The lock belongs to the storage (see [Locker]), so
// every middleware over one store, in one process or, with a store that
// locks across processes, in many, takes the same lock. Updates with
// different keys, and lazy updates that never use their session, run in
// parallel.
package session

import (
	"context"
	"errors"
	"fmt"
	"sync"

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

// Middleware wraps a Handler, like func(http.Handler) http.Handler.
type Middleware[S any] func(Handler[S]) Handler[S]

// Options configures a session: where it is stored, how its key is found,
// and what a new session holds. The zero Options is a per-chat session in
// a new [Memory] store starting from the zero value of S.
type Options[S any] struct {
	// Storage keeps the sessions. Nil means a new [Memory] store private
	// to this middleware (or fragment), as in grammY: two middlewares
	// built with a nil Storage do not see each other's sessions. To share
	// sessions, give every middleware the same store.
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
	// ErrSessionClosed: the session was used after the handler of its
	// update returned (from a goroutine it left running, say). The session
	// has been written back already; this use would be lost, so it fails.
	//
	// The accessors can report this; a *S pointer kept from an earlier
	// Session call cannot. A goroutine that writes through such a pointer
	// after the handler returned changes memory nobody will save (the write
	// is lost, silently) and races with the write-back (go test -race
	// reports it). The pattern: copy what the goroutine needs before it
	// starts, never the pointer; send its results back (a channel, or an
	// update of your own through the runner) and apply them in a handler,
	// under that update's session:
	//
	//	s, _ := c.Session()
	//	query := s.Query // a copy, not s
	//	go func() { results <- search(query) }()
	ErrSessionClosed = errors.New("session: used after its handler returned")
)

// Strict returns the default session middleware: the session is read
// before the handler runs. After the handler returns nil, a cleared
// session is deleted and a changed one is written; an unchanged one costs
// no write (a store with a TTL is touched instead, see [Toucher]). After
// an error or a panic nothing is written.
func Strict[S any](opts Options[S]) Middleware[S] {
	return newEngine(false, single(opts)).middleware
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
	if err := st.each(c, func(p part[S], sl *slot) error { return p.access(c, st, sl) }); err != nil {
		return nil, err
	}
	return &st.val, nil
}

// SetSession replaces the session with v. Under lazy sessions this needs
// no read: the value is written after the handler succeeds.
func (c *Context[S]) SetSession(v S) error {
	st, err := c.open()
	if err != nil {
		return err
	}
	defer st.mu.Unlock()
	return st.each(c, func(p part[S], sl *slot) error {
		if err := p.blind(c, st, sl); err != nil {
			return err
		}
		p.set(st, sl, &v)
		return nil
	})
}

// ClearSession empties the session: after the handler succeeds it is
// deleted from storage, so the next update starts from the initial value.
// Under lazy sessions this needs no read.
func (c *Context[S]) ClearSession() error {
	st, err := c.open()
	if err != nil {
		return err
	}
	defer st.mu.Unlock()
	return st.each(c, func(p part[S], sl *slot) error {
		if err := p.blind(c, st, sl); err != nil {
			return err
		}
		return p.clear(st, sl)
	})
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

// engine runs every session variant: it resolves the keys of its parts,
// takes their locks, loads them (now or on first access), runs the handler
// and commits. A single session is an engine with one part.
type engine[S any] struct {
	parts  []part[S]
	lazy   bool
	single bool
}

// state is the per-update session state. Every copy of the update's
// Context points to it, and mu makes the accessors safe from several
// goroutines.
type state[S any] struct {
	mu     sync.Mutex
	eng    *engine[S]
	slots  []slot
	inline [2]slot
	locked bool // every keyed slot holds its lock
	closed bool // the handler returned: no more access
	val    S    // what the handler sees
}

// slot is the per-update state of one part.
type slot struct {
	key      string // from the key function
	storeKey string // Prefix + key, set when locked
	ok       bool   // the update has a key for this part
	empty    bool   // the key function gave "", which counts as no key
	moved    string // the store key a chat migration forwarded this one to
	hops     uint8  // forwards followed
	state    slotState
	read     bool             // storage was read
	found    bool             // and had a value
	stored   []byte           // byte stores: the encoding that means unchanged; nil: write
	held     *keyLock[string] // the lock, when taken from a table
	unlock   func()           // the lock, when taken from a Locker
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
	}
}

func (e *engine[S]) middleware(next Handler[S]) Handler[S] {
	if next == nil {
		panic(fmt.Errorf("%w: session middleware given a nil handler", ErrConfig))
	}
	return func(c *Context[S]) error {
		st, err := e.begin(c)
		if err != nil {
			return err
		}
		// Installed before any lock is taken: whatever happens from here
		// (an error, or a panic in a store, a codec, a migration, Initial
		// or the handler), no access after this update and no lock left
		// behind. On success commit ends the session itself, so the
		// state's mutex is taken once, not twice.
		ended := false
		defer func() {
			if !ended {
				st.end()
			}
		}()
		if !e.lazy {
			if err := st.loadAll(c); err != nil {
				return err
			}
		}
		ctx := c.Context
		if err := next(c); err != nil {
			return err
		}
		ended = true
		return st.commit(ctx)
	}
}

// begin installs the engine's per-update state in c and resolves the keys
// of its parts. It takes no lock: the caller installs the release first.
func (e *engine[S]) begin(c *Context[S]) (*state[S], error) {
	st := c.sess
	if st == nil { // a Context not made by NewContext
		st = new(state[S])
		c.sess = st
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.eng != nil {
		return nil, errReused
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
		st.slots[i].resolve(p.info(), &c.Update)
	}
	return st, nil
}

// loadAll locks and reads every keyed part, for strict sessions.
func (st *state[S]) loadAll(c *Context[S]) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.lock(c); err != nil {
		return err
	}
	for i := 0; i < len(st.eng.parts); i++ {
		if sl := &st.slots[i]; sl.ok {
			if err := st.eng.parts[i].load(c, st, sl); err != nil {
				if err = st.follow(c, i, err, true); err != nil {
					return err
				}
				i = -1 // every part again, under the new locks
			}
		}
	}
	return nil
}

// commit closes the session to the handler's goroutines, writes back
// every part with the locks still held, then releases them (as end does;
// a panic in a store still releases them, through end).
func (st *state[S]) commit(ctx context.Context) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	if !st.locked {
		return nil // lazy and never touched: nothing to write, no lock held
	}
	defer st.unlock()
	var errs error
	for i, p := range st.eng.parts {
		if sl := &st.slots[i]; sl.ok {
			if err := p.commit(ctx, st, sl); err != nil {
				errs = errors.Join(errs, err)
			}
		}
	}
	return errs
}

// end closes the session and releases its locks.
func (st *state[S]) end() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	st.unlock()
}

// each runs f on every part after checking that each has a key and that
// the locks are held; it is how the Context methods reach the parts.
// st.mu is held.
func (st *state[S]) each(c *Context[S], f func(part[S], *slot) error) error {
	for i, p := range st.eng.parts {
		if !st.slots[i].ok {
			return p.info().noKey(&st.slots[i])
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
// st.mu is held.
func (st *state[S]) slotOf(c *Context[S], p part[S]) (*slot, error) {
	i := st.indexOf(p)
	if i < 0 {
		return nil, fmt.Errorf("session: fragment %q is not part of this context's session", p.info().name)
	}
	sl := &st.slots[i]
	if !sl.ok {
		return nil, p.info().noKey(sl)
	}
	return sl, st.lock(c)
}

// indexOf returns the index of part p in this update's session, or -1.
func (st *state[S]) indexOf(p part[S]) int {
	for i, q := range st.eng.parts {
		if q == p {
			return i
		}
	}
	return -1
}

// lock takes the lock of every keyed slot, once per update, in the order
// of (stored key, lock table): two updates that need the same keys take
// them in the same order and so cannot deadlock, whatever stores their
// fragments use. Slots whose keys lead to one key of one lock table share
// its lock. Lazy sessions call lock on first access, so an update that
// never touches its session takes no lock at all. st.mu is held.
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
			if sl.moved != "" {
				sl.storeKey = sl.moved
			}
		}
	}
	// Selection in order without sorting: parts are few, and this
	// allocates nothing.
	prev := -1
	for {
		next := -1
		for i := range st.slots {
			if st.slots[i].ok && (prev < 0 || st.before(prev, i)) && (next < 0 || st.before(i, next)) {
				next = i
			}
		}
		if next < 0 {
			st.locked = true
			return nil
		}
		if !st.sharesLock(next) {
			sl, info := &st.slots[next], st.eng.parts[next].info()
			var err error
			if info.table != nil {
				sl.held, err = info.table.lock(c, sl.storeKey, sl.storeKey)
			} else {
				sl.unlock, err = info.locker.Lock(c, sl.storeKey)
			}
			if err != nil {
				st.unlock() // all or nothing, so a later access can try again
				return info.errorf(sl, "lock", err)
			}
		}
		prev = next
	}
}

// before orders slots i and j for locking.
func (st *state[S]) before(i, j int) bool {
	a, b := &st.slots[i], &st.slots[j]
	if a.storeKey != b.storeKey {
		return a.storeKey < b.storeKey
	}
	ra, rb := st.eng.parts[i].info().rank, st.eng.parts[j].info().rank
	if ra != rb {
		return ra < rb
	}
	return i < j
}

// sharesLock reports whether a slot locked before slot i holds the lock
// slot i needs.
func (st *state[S]) sharesLock(i int) bool {
	id := st.eng.parts[i].info().lockID
	for j := range st.slots {
		if j != i && st.slots[j].ok && st.before(j, i) && st.slots[j].storeKey == st.slots[i].storeKey && st.eng.parts[j].info().lockID == id {
			return true
		}
	}
	return false
}

func (st *state[S]) unlock() {
	for i := range st.slots {
		sl := &st.slots[i]
		if sl.held != nil {
			sl.held.unlock()
			sl.held = nil
		}
		if sl.unlock != nil {
			sl.unlock()
			sl.unlock = nil
		}
	}
	st.locked = false
}
