package session

import (
	"context"
	"errors"
	"sync"
	"time"
)

// engine runs every session variant: it resolves the keys of its parts,
// takes their leases, loads them (now or on first access), runs the
// handler and commits. A single session is an engine with one part.
type engine[S any] struct {
	parts     []part[S]
	lazy      bool
	single    bool
	migration bool // move sessions on chat migrations
	mover     bool // the engine of those moves: it sees forwards as they are
	hooks     *Hooks
}

// state is the per-update session state. Every copy of the update's
// Context points to it, and mu makes the accessors safe from several
// goroutines.
type state[S any] struct {
	mu     sync.Mutex
	eng    *engine[S]
	slots  []slot
	inline [2]slot
	locked bool      // every keyed slot holds its lease
	closed bool      // the handler returned: no more access
	update updateRef // names the update for its mark (zero: none); see applied.go
	watch  *watch    // what the hooks are told; nil without hooks
	val    S         // what the handler sees
}

// slot is the per-update state of one part.
type slot struct {
	key      string // from the key function
	storeKey string // Prefix + key (or where a chat migration forwarded it), set when locked
	ok       bool   // the update has a key for this part
	empty    bool   // the key function gave "", which counts as no key
	moved    string // the store key a chat migration forwarded this one to
	hops     uint8  // forwards followed
	state    slotState
	found    bool       // a live session was stored
	applied  bool       // the lease's record holds the update's mark
	hopped   bool       // the record of a key forwarded from held it
	stale    bool       // expired data is stored: deleted unless written
	same     []byte     // the encoding that means unchanged; nil: write
	lease    Lease      // the lock, with the value read under it
	local    localLease // the lease of a store without a Locker
}

type slotState uint8

const (
	untouched slotState = iota // lazy and not accessed yet
	loaded                     // read, or initial when storage had nothing
	replaced                   // set without a read: always written
	cleared                    // deleted unless the handler fills it again
)

var errReused = errors.New("session: this Context already passed through a session middleware; use one Context per update and one session (NewMulti for several values)")

// resolve finds the slot's key for u. An empty key is no key: it would
// put every update that gets one into a single session shared by all.
func (sl *slot) resolve(p *partInfo, u Update) {
	sl.key, sl.ok = p.key(u)
	if sl.ok && sl.key == "" {
		sl.ok, sl.empty = false, true
	}
}

func (e *engine[S]) middleware(next Handler[S]) Handler[S] {
	return func(c *Context[S]) (err error) {
		st, err := e.begin(c)
		if err != nil {
			return err
		}
		// Installed before any lease is taken: whatever happens from here
		// (an error, or a panic in a store, the codec, a migration,
		// Initial or the handler), no access after this update and no
		// lease left behind, so nothing renews it; and the hooks hear of
		// it.
		ended, returned := false, false
		defer func() {
			if !ended {
				st.end()
			}
			if st.watch != nil && e.hooks.End != nil {
				st.report(c.Context, e.hooks, c, err, !returned)
			}
		}()
		if h := e.hooks; h != nil && (h.Begin != nil || h.End != nil) {
			st.watch = newWatch(len(e.parts))
			if h.Begin != nil {
				if ctx := h.Begin(c.Context, Update{&c.Update, c.Raw}); ctx != nil {
					c.Context = ctx
				}
			}
		}
		if !e.lazy {
			if err = st.loadAll(c); err != nil {
				returned = true
				return err
			}
		}
		ctx := c.Context
		var t time.Time
		if st.watch != nil {
			t = time.Now()
		}
		err = next(c)
		returned = true
		if st.watch != nil {
			st.watch.add(phaseHandler, t)
		}
		if err != nil {
			return err
		}
		ended = true
		if st.watch == nil {
			return st.commit(ctx)
		}
		t = time.Now()
		err = st.commit(ctx)
		st.watch.add(phaseCommit, t)
		return err
	}
}

// begin installs the engine's per-update state in c and resolves the keys
// of its parts. It takes no lease: the caller installs the release first.
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
	if !e.mover { // the move of a chat migration must not mark the keys it moves
		var bot int64
		if c.Bot != nil {
			bot = c.Bot.Self.ID
		}
		st.update = updateOf(bot, c.Update.UpdateID)
	}
	if len(e.parts) <= len(st.inline) {
		st.slots = st.inline[:len(e.parts)]
	} else {
		st.slots = make([]slot, len(e.parts))
	}
	for i, p := range e.parts {
		st.slots[i].resolve(p.info(), Update{&c.Update, c.Raw})
	}
	return st, nil
}

// loadAll takes the leases and loads every keyed part, for strict
// sessions.
func (st *state[S]) loadAll(c *Context[S]) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	if err := st.lock(c); err != nil {
		return err
	}
	var t time.Time
	if st.watch != nil {
		t = time.Now()
	}
	for i, p := range st.eng.parts {
		if sl := &st.slots[i]; sl.ok {
			if err := p.load(c, st, sl); err != nil {
				return err
			}
		}
	}
	if st.watch != nil {
		st.watch.add(phaseLoad, t)
	}
	return nil
}

// access loads part p if it is not loaded yet (a lazy session's first
// access), timed for the hooks.
func (st *state[S]) access(c *Context[S], p part[S], sl *slot) error {
	if st.watch == nil {
		return p.access(c, st, sl)
	}
	t := time.Now()
	err := p.access(c, st, sl)
	st.watch.add(phaseLoad, t)
	return err
}

// commit closes the session to the handler's goroutines and commits every
// lease: the part's change, fenced, and the release, in one step each.
func (st *state[S]) commit(ctx context.Context) error {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	if !st.locked {
		return nil // lazy and never touched: nothing to write, no lease held
	}
	defer st.unlock() // a panic in a codec or a store releases the rest
	var errs error
	for i, p := range st.eng.parts {
		sl := &st.slots[i]
		if sl.lease == nil {
			continue
		}
		if sl.applied {
			// An earlier delivery of this update committed here: its
			// change is already stored. (The update ran because another
			// part had not been committed when that delivery stopped.)
			continue // released by unlock
		}
		change, err := p.change(st, sl)
		if err != nil {
			if st.watch != nil {
				st.watch.committed(i, Change{}, err)
			}
			errs = errors.Join(errs, err)
			continue // released by unlock
		}
		// The lease stays in the slot until Commit returns: if a store
		// panics in it, unlock releases it (Release after a Commit does
		// nothing).
		err = sl.lease.Commit(ctx, change)
		sl.lease = nil
		if st.watch != nil {
			st.watch.committed(i, change, err)
		}
		if err != nil {
			errs = errors.Join(errs, p.info().errorf(sl, "commit", err))
		}
	}
	return errs
}

// end closes the session and releases its leases.
func (st *state[S]) end() {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.closed = true
	st.unlock()
}

// each runs f on every part after checking that each has a key and that
// the leases are held; it is how the Context methods reach the parts.
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

// slotOf finds the slot of part p, checks its key and takes the leases.
// st.mu is held.
func (st *state[S]) slotOf(c *Context[S], p part[S]) (*slot, error) {
	i := st.indexOf(p)
	if i < 0 {
		return nil, errNotPart(p.info().name)
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

// lock takes the lease of every keyed slot, once per update, in the order
// of (stored key, lock table): two updates that need the same keys take
// them in the same order and so cannot deadlock, whatever stores their
// fragments use. Lazy sessions call lock on first access, so an update
// that never touches its session takes no lease at all. All or nothing: a
// failure releases what was taken, so a later access can try again.
// st.mu is held.
func (st *state[S]) lock(c *Context[S]) error {
	if st.locked {
		return nil
	}
	if st.watch != nil {
		defer st.watch.add(phaseLock, time.Now())
	}
	for {
		if err := st.acquire(c); err != nil {
			return err
		}
		moved, err := st.forwards(c)
		if err != nil {
			st.unlock()
			return err
		}
		if !moved {
			if err := st.duplicate(); err != nil {
				st.unlock()
				return err
			}
			st.locked = true
			return nil
		}
		st.unlock() // and again, in order, with the new keys
	}
}

// acquire takes the leases of lock. st.mu is held.
func (st *state[S]) acquire(c *Context[S]) error {
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
			return nil
		}
		sl, info := &st.slots[next], st.eng.parts[next].info()
		lease, err := info.lock(c, sl.storeKey, st.update, &sl.local)
		if err != nil {
			st.unlock()
			return info.errorf(sl, "lock", err)
		}
		sl.lease = lease
		sl.applied = st.update.marked() && (sl.hopped || lease.Applied())
		if st.watch != nil {
			st.watch.read(next, lease)
		}
		prev = next
	}
}

// duplicate returns an error wrapping ErrDuplicate if every lease taken
// says this update was applied to its key already. st.mu is held.
func (st *state[S]) duplicate() error {
	if !st.update.marked() {
		return nil
	}
	first := -1
	for i := range st.slots {
		if sl := &st.slots[i]; sl.lease != nil {
			if !sl.applied {
				return nil
			}
			if first < 0 {
				first = i
			}
		}
	}
	if first < 0 {
		return nil
	}
	return st.eng.parts[first].info().errorf(&st.slots[first], "update "+st.update.mark(), ErrDuplicate)
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

// unlock releases every lease still held.
func (st *state[S]) unlock() {
	for i := range st.slots {
		if sl := &st.slots[i]; sl.lease != nil {
			lease := sl.lease
			sl.lease = nil
			st.release(lease)
		}
	}
	st.locked = false
}

// release ends one lease; if its Release panics (a store's bug), the
// other leases are released before the panic goes on.
func (st *state[S]) release(lease Lease) {
	done := false
	defer func() {
		if !done {
			st.unlock()
		}
	}()
	lease.Release()
	done = true
}
