package session

import (
	"bytes"
	"context"
	"fmt"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// part is one stored value of a session, seen by the engine without its
// type. A single session has one part; a multi session has one per
// fragment. [Fragment] is the only implementation. Every method is called
// with the state's mutex held.
type part[S any] interface {
	info() *partInfo
	load(c *Context[S], st *state[S], sl *slot) error   // read storage into the session
	access(c *Context[S], st *state[S], sl *slot) error // load unless already available
	blind(c *Context[S], st *state[S], sl *slot) error  // before a set or clear without a read
	set(st *state[S], sl *slot, from *S)
	clear(st *state[S], sl *slot) error
	commit(ctx context.Context, st *state[S], sl *slot) error // write, delete or touch after success
	move(ctx context.Context, from, to *slot) error           // for chat migration, with both locks held
}

// partInfo is what the engine needs of a part besides its value.
type partInfo struct {
	name       string // "" for a single session
	key        KeyFunc
	defaultKey bool
	prefix     string
	table      *keyLocks[string] // guards the part's stored keys, if the store has one
	locker     Locker            // guards them otherwise
	lockID     any               // identity of the lock table
	forwards   bool              // the store can hold a chat migration's forward
	rank       uintptr           // order of that table among others
}

// resolve finds the slot's key for u. An empty key is no key: it would
// put every update that gets one into a single session shared by all.
func (sl *slot) resolve(p *partInfo, u *tgbotapi.Update) {
	sl.key, sl.ok = p.key(u)
	if sl.ok && sl.key == "" {
		sl.ok, sl.empty = false, true
	}
}

// what names the part in messages.
func (p *partInfo) what() string {
	if p.name == "" {
		return "the session"
	}
	return fmt.Sprintf("fragment %q", p.name)
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

// errorf names the fragment and the storage key in an error.
func (p *partInfo) errorf(sl *slot, op string, err error) error {
	if p.name != "" {
		return fmt.Errorf("session: fragment %q: %s %q: %w", p.name, op, sl.storeKey, err)
	}
	return fmt.Errorf("session: %s %q: %w", op, sl.storeKey, err)
}

// Fragment is one named, separately stored part of a multi session,
// bound to a field of the session value S of type F. Create it with
// [NewFragment]; use it in handlers to reach just that part.
type Fragment[S, F any] struct {
	partInfo
	field   func(*S) *F
	store   StorageAdapter[F]
	raw     rawStore[F] // non-nil for byte stores: compare encodings
	toucher Toucher     // non-nil if the store can restart an expiry
	fwd     forwarder   // non-nil if the store can hold a chat migration's forward
	initial func() F
	snap    jsonCodec[F] // compares the values of a store that keeps Go values
}

func newFragment[S, F any](name string, field func(*S) *F, opts Options[F]) *Fragment[S, F] {
	what := "session"
	if name != "" {
		what = fmt.Sprintf("fragment %q", name)
	}
	if opts.Storage == nil {
		opts.Storage = NewMemory[F]()
	}
	checkOptions(what, opts)
	f := &Fragment[S, F]{
		partInfo: partInfo{name: name, key: opts.Key, prefix: opts.Prefix},
		field:    field,
		store:    opts.Storage,
		initial:  opts.Initial,
		snap:     jsonCodecFor[F](),
	}
	if f.key == nil {
		f.key, f.defaultKey = ByChat, true
	}
	f.raw, _ = f.store.(rawStore[F])
	f.toucher, _ = f.store.(Toucher)
	f.fwd, f.forwards = f.store.(forwarder)
	root := lockRoot(f.store)
	if t, ok := root.(ownLocks); ok {
		f.table = t.keyTable()
		f.lockID = storeIdentity(f.table)
	} else {
		f.locker = lockerOf(root)
		f.lockID = storeIdentity(root)
	}
	f.rank = lockRank(f.lockID)
	return f
}

// single is the one part of a plain session: the whole value.
func single[S any](opts Options[S]) part[S] {
	return newFragment("", func(s *S) *S { return s }, opts)
}

// Get returns the fragment's value for this update, reading it first
// under lazy sessions. The handler changes it in place.
func (f *Fragment[S, F]) Get(c *Context[S]) (*F, error) {
	st, sl, err := f.open(c)
	if err != nil {
		return nil, err
	}
	defer st.mu.Unlock()
	if err := f.access(c, st, sl); err != nil {
		return nil, err
	}
	return f.field(&st.val), nil
}

// Set replaces the fragment's value; under lazy sessions without a read.
func (f *Fragment[S, F]) Set(c *Context[S], v F) error {
	st, sl, err := f.open(c)
	if err != nil {
		return err
	}
	defer st.mu.Unlock()
	if err := f.blind(c, st, sl); err != nil {
		return err
	}
	f.assign(st, sl, v)
	return nil
}

// Clear empties the fragment; it is deleted after the handler succeeds.
func (f *Fragment[S, F]) Clear(c *Context[S]) error {
	st, sl, err := f.open(c)
	if err != nil {
		return err
	}
	defer st.mu.Unlock()
	if err := f.blind(c, st, sl); err != nil {
		return err
	}
	return f.clear(st, sl)
}

// Key returns the key the fragment's key function gave for this update,
// before any prefix.
func (f *Fragment[S, F]) Key(c *Context[S]) (string, bool) {
	st := c.sess
	if st == nil {
		return "", false
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	if st.eng == nil {
		return "", false
	}
	i := st.indexOf(f)
	if i < 0 {
		return "", false
	}
	return st.slots[i].key, st.slots[i].ok
}

// open locks c's session state and finds the fragment's slot, with its
// lock taken; on success st.mu is held.
func (f *Fragment[S, F]) open(c *Context[S]) (*state[S], *slot, error) {
	st, err := c.open()
	if err != nil {
		return nil, nil, err
	}
	sl, err := st.slotOf(c, f)
	if err != nil {
		st.mu.Unlock()
		return nil, nil, err
	}
	return st, sl, nil
}

func (f *Fragment[S, F]) info() *partInfo { return &f.partInfo }

func (f *Fragment[S, F]) newValue() F {
	if f.initial != nil {
		return f.initial()
	}
	var zero F
	return zero
}

func (f *Fragment[S, F]) load(c *Context[S], st *state[S], sl *slot) error {
	v := f.field(&st.val)
	var err error
	if f.raw != nil {
		sl.stored, sl.found, err = f.raw.readRaw(c, sl.storeKey, v)
	} else {
		*v, sl.found, err = f.store.Read(c, sl.storeKey)
	}
	if err != nil {
		var zero F
		*v = zero
		return f.errorf(sl, "read", err)
	}
	if !sl.found && f.fwd != nil && f.migrating() {
		to, moved, err := f.fwd.forwardOf(c, sl.storeKey)
		if err != nil {
			return f.errorf(sl, "read forward", err)
		}
		if moved {
			return movedError{to}
		}
	}
	sl.read = true
	if !sl.found {
		*v = f.newValue()
	}
	return f.snapshot(st, sl, loaded)
}

// snapshot records what the value is now, so commit can tell whether the
// handler changed it: its encoding, which the stores of this package give
// with the value (so it is made here only for a new or cleared session).
// A store of the caller's own that keeps Go values is compared by the
// values' JSON; a value JSON cannot encode is always written.
func (f *Fragment[S, F]) snapshot(st *state[S], sl *slot, to slotState) error {
	v := f.field(&st.val)
	switch {
	case f.raw == nil:
		sl.stored, _ = f.snap.marshal(v)
	case to == cleared || !sl.found:
		var err error
		if sl.stored, err = f.raw.encode(sl.storeKey, v); err != nil {
			return f.errorf(sl, "snapshot", err)
		}
	}
	sl.state = to
	return nil
}

func (f *Fragment[S, F]) access(c *Context[S], st *state[S], sl *slot) error {
	for sl.state == untouched {
		if err := f.load(c, st, sl); err != nil {
			if err := st.follow(c, st.indexOf(f), err, false); err != nil {
				return err
			}
		}
	}
	return nil
}

// blind prepares a write that needs no read (Set, Clear): in a store a
// chat migration moves sessions in, it must land where the session moved.
func (f *Fragment[S, F]) blind(c *Context[S], st *state[S], sl *slot) error {
	for sl.state == untouched && f.fwd != nil && f.migrating() {
		to, moved, err := f.fwd.forwardOf(c, sl.storeKey)
		if err != nil {
			return f.errorf(sl, "read forward", err)
		}
		if !moved {
			return nil
		}
		if err := st.follow(c, st.indexOf(f), movedError{to}, false); err != nil {
			return err
		}
	}
	return nil
}

func (f *Fragment[S, F]) set(st *state[S], sl *slot, from *S) {
	f.assign(st, sl, *f.field(from))
}

// assign replaces the live value; without a read it is always written.
func (f *Fragment[S, F]) assign(st *state[S], sl *slot, v F) {
	*f.field(&st.val) = v
	if sl.state == untouched {
		sl.state = replaced
	}
}

func (f *Fragment[S, F]) clear(st *state[S], sl *slot) error {
	*f.field(&st.val) = f.newValue()
	return f.snapshot(st, sl, cleared)
}

// commit writes the value if it differs from what is stored (for byte
// stores: if its encoding differs from the stored bytes), deletes a
// cleared session that the handler left empty, and touches one that was
// used and left as it was.
func (f *Fragment[S, F]) commit(ctx context.Context, st *state[S], sl *slot) error {
	if sl.state == untouched {
		return nil
	}
	v := f.field(&st.val)
	var data []byte
	var same bool
	if f.raw != nil {
		var err error
		if data, err = f.raw.encode(sl.storeKey, v); err != nil {
			return f.errorf(sl, "encode", err)
		}
		same = sl.state != replaced && sl.stored != nil && bytes.Equal(data, sl.stored)
	} else if sl.state != replaced && sl.stored != nil {
		now, err := f.snap.marshal(v)
		same = err == nil && bytes.Equal(now, sl.stored)
	}
	var err error
	switch {
	case !same && f.raw != nil:
		err = f.raw.writeRaw(ctx, sl.storeKey, data)
	case !same:
		err = f.store.Write(ctx, sl.storeKey, *v)
	case sl.state == cleared:
		if sl.read && !sl.found {
			return nil // nothing stored to delete
		}
		if err = f.store.Delete(ctx, sl.storeKey); err != nil {
			return f.errorf(sl, "delete", err)
		}
		return nil
	case sl.found && f.toucher != nil:
		if err = f.toucher.Touch(ctx, sl.storeKey); err != nil {
			return f.errorf(sl, "touch", err)
		}
		return nil
	}
	if err != nil {
		return f.errorf(sl, "write", err)
	}
	return nil
}

// move stores the value of from under to and deletes from, unless from
// has nothing or to has something already.
func (f *Fragment[S, F]) move(ctx context.Context, from, to *slot) error {
	v, found, err := f.store.Read(ctx, from.storeKey)
	if err != nil {
		return f.errorf(from, "read", err)
	}
	if found {
		if _, taken, err := f.store.Read(ctx, to.storeKey); err != nil {
			return f.errorf(to, "read", err)
		} else if taken {
			return nil // never overwrite what the new chat has; both stay
		}
		if err := f.store.Write(ctx, to.storeKey, v); err != nil {
			return f.errorf(to, "write", err)
		}
	}
	// Before the old key is deleted: an update of the old chat that comes
	// later (still queued, or sent again) follows the forward, even when
	// the old chat had no session yet.
	if err := f.fwd.setForward(ctx, from.storeKey, to.storeKey); err != nil {
		return f.errorf(from, "write forward", err)
	}
	if found {
		if err := f.store.Delete(ctx, from.storeKey); err != nil {
			return f.errorf(from, "delete", err)
		}
	}
	return nil
}
