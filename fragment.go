package session

import (
	"bytes"
	"context"
	"fmt"
	"reflect"
	"time"
)

// part is one stored value of a session, seen by the engine without its
// type. A single session has one part; a multi session has one per
// fragment. [Fragment] is the only implementation. Every method but
// entries is called with the state's mutex held.
type part[S any] interface {
	info() *partInfo
	load(c *Context[S], st *state[S], sl *slot) error   // decode the value read with the lease
	access(c *Context[S], st *state[S], sl *slot) error // load unless already available
	set(c *Context[S], st *state[S], sl *slot, from *S) error
	clear(c *Context[S], st *state[S], sl *slot) error
	change(st *state[S], sl *slot) (Change, error)  // what commit does
	move(ctx context.Context, from, to *slot) error // chat migration, with both leases held
	entries(ctx context.Context, yield func(key string, v *S) bool, fail func(error))
}

// partInfo is what the engine needs of a part besides its value.
type partInfo struct {
	name       string // "" for a single session
	key        KeyFunc
	defaultKey bool
	prefix     string
	store      Store
	locker     Locker            // nil: the process-wide table
	expirer    Expirer           // nil: no native expiry
	lister     Lister            // nil: cannot list
	table      *keyLocks[string] // the process-wide table, without a Locker
	lockID     any               // identity of the lock table
	rank       uintptr           // order of that table among others
	ttl        time.Duration
}

// lock takes key's lease: the store's own, or one of the process-wide
// table, kept in local (which belongs to the update's slot, so it costs
// no allocation).
func (p *partInfo) lock(ctx context.Context, key string, u updateRef, local *localLease) (Lease, error) {
	if p.locker != nil {
		return p.locker.Lock(ctx, key, u.mark())
	}
	if err := local.lock(ctx, p.table, p.store, p.expirer, key, u); err != nil {
		return nil, err
	}
	return local, nil
}

// nativeTTL is the TTL given to the store with each write and touch.
func (p *partInfo) nativeTTL() time.Duration {
	if p.expirer == nil {
		return 0
	}
	return p.ttl
}

// Fragment is one named, separately stored part of a multi session,
// bound to a field of the session value S of type F. Create it with
// [NewFragment] and give it to [NewMulti]; use it in handlers to reach
// just that part.
type Fragment[S, F any] struct {
	partInfo
	field   func(*S) *F
	opts    Options[F]
	initial func() F
	vc      *valueCodec[F]
	built   bool
}

// Part is a fragment of a multi session as [NewMulti] takes it; every
// [*Fragment] is one.
type Part[S any] interface {
	build(clock func() time.Time) (part[S], error)
}

// NewFragment declares one fragment of a multi session: the field of S
// that field points to, stored with its own Options (Storage, Codec, Key,
// Prefix, Initial, TTL, Migrations; the defaults are those of a single
// session). Unless opts.Prefix is set, stored keys are prefixed with
// name + ":", so fragments that share one store never overwrite each
// other. [NewMulti] checks the options.
func NewFragment[S, F any](name string, field func(*S) *F, opts Options[F]) *Fragment[S, F] {
	if opts.Prefix == "" {
		opts.Prefix = name + ":"
	}
	return &Fragment[S, F]{partInfo: partInfo{name: name}, field: field, opts: opts}
}

func (f *Fragment[S, F]) build(clock func() time.Time) (part[S], error) {
	if f.built {
		return f, nil
	}
	if f.field == nil {
		return nil, fmt.Errorf("%w: fragment %q has no field accessor", ErrConfig, f.name)
	}
	if f.opts.Lazy || f.opts.ChatMigration || f.opts.Clock != nil || f.opts.Hooks != nil {
		return nil, fmt.Errorf("%w: fragment %q: Lazy, ChatMigration, Clock and Hooks are set on the multi session, not on a fragment", ErrConfig, f.name)
	}
	if err := f.setup(f.opts, clock); err != nil {
		return nil, err
	}
	f.built = true
	return f, nil
}

func newFragment[S, F any](name string, field func(*S) *F, opts Options[F], clock func() time.Time) (*Fragment[S, F], error) {
	f := &Fragment[S, F]{partInfo: partInfo{name: name}, field: field}
	if err := f.setup(opts, clock); err != nil {
		return nil, err
	}
	f.built = true
	return f, nil
}

// setup checks opts and fills in the fragment from them.
func (f *Fragment[S, F]) setup(opts Options[F], clock func() time.Time) error {
	what := f.partInfo.what()
	fail := func(format string, args ...any) error {
		return fmt.Errorf("%w: %s: "+format, append([]any{ErrConfig, what}, args...)...)
	}
	t := reflect.TypeFor[F]()
	switch {
	case opts.Storage != nil && isNil(opts.Storage):
		return fail("Options.Storage is a nil %T", opts.Storage)
	case opts.Codec != nil && isNil(opts.Codec):
		return fail("Options.Codec is a nil %T", opts.Codec)
	case clock != nil && isNil(clock):
		return fail("Options.Clock is nil")
	case opts.Initial == nil && (t.Kind() == reflect.Pointer || t.Kind() == reflect.Map):
		return fail("the zero value of %v is nil, so a new session could not be used: set Options.Initial", t)
	case opts.TTL < 0:
		return fail("negative Options.TTL %v", opts.TTL)
	}
	if _, custom := opts.Codec.(JSON); opts.Codec == nil || custom {
		if err := jsonProblem(t); err != nil {
			return fail("sessions are stored as JSON: %w", err)
		}
	}
	if clock == nil {
		clock = time.Now
	}
	if opts.Storage == nil {
		opts.Storage = NewMemory(MemoryOptions{Clock: clock})
	}
	f.key, f.defaultKey = opts.Key, opts.Key == nil
	if f.key == nil {
		f.key = ByChat
	}
	f.prefix = opts.Prefix
	f.store = opts.Storage
	f.locker, _ = Unwrap[Locker](opts.Storage)
	f.expirer, _ = Unwrap[Expirer](opts.Storage)
	f.lister, _ = Unwrap[Lister](opts.Storage)
	f.ttl = opts.TTL
	f.initial = opts.Initial
	if f.locker != nil {
		f.lockID = storeIdentity(f.locker)
	} else {
		base := root(opts.Storage) // a wrapper with Unwrap shares its base's locks
		f.lockID = storeIdentity(base)
		f.table = tableFor(base, f.lockID)
	}
	f.rank = lockRank(f.lockID)
	dataTTL := opts.TTL
	if f.expirer != nil {
		dataTTL = 0
	}
	vc, err := newValueCodec[F](opts.Codec, dataTTL, opts.Migrations, clock)
	if err != nil {
		return fmt.Errorf("%s: %w", what, err)
	}
	vc.expires = opts.TTL > 0 // natively too; without a TTL, "e" is ignored, as in grammY
	f.vc = vc
	return nil
}

// Get returns the fragment's value for this update, loading it first
// under lazy sessions. The handler changes it in place.
func (f *Fragment[S, F]) Get(c *Context[S]) (*F, error) {
	st, sl, err := f.open(c)
	if err != nil {
		return nil, err
	}
	defer st.mu.Unlock()
	if err := st.access(c, f, sl); err != nil {
		return nil, err
	}
	return f.field(&st.val), nil
}

// Set replaces the fragment's value; it is written after the handler
// succeeds, whatever was stored.
func (f *Fragment[S, F]) Set(c *Context[S], v F) error {
	st, sl, err := f.open(c)
	if err != nil {
		return err
	}
	defer st.mu.Unlock()
	f.prepare(sl)
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
	return f.clear(c, st, sl)
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

// open locks c's session state and finds the fragment's slot, with the
// leases taken; on success st.mu is held.
func (f *Fragment[S, F]) open(c *Context[S]) (*state[S], *slot, error) {
	st, err := c.open()
	if err != nil {
		return nil, nil, err
	}
	ok := false
	defer func() { // a panic while locking (in a store, say) must not keep st.mu
		if !ok {
			st.mu.Unlock()
		}
	}()
	sl, err := st.slotOf(c, f)
	if err != nil {
		return nil, nil, err
	}
	ok = true
	return st, sl, nil
}

func errNotPart(name string) error {
	return fmt.Errorf("session: fragment %q is not part of this context's session", name)
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
	var zero F
	*v = zero
	data, found := sl.lease.Value()
	if found {
		d, err := f.vc.decode(sl.storeKey, data, v)
		if err != nil {
			return f.errorf(sl, "read", err)
		}
		sl.same = d.same
		if !d.live {
			found, sl.stale = false, true
		}
	}
	if !found {
		*v = f.newValue()
		var err error
		if sl.same, err = f.vc.encode(v); err != nil { // a new session the handler leaves as it is is not written
			return f.errorf(sl, "encode", err)
		}
	}
	sl.found = found
	sl.state = loaded
	return nil
}

func (f *Fragment[S, F]) access(c *Context[S], st *state[S], sl *slot) error {
	if sl.state != untouched {
		return nil
	}
	return f.load(c, st, sl)
}

// prepare readies a slot for a change that needs no decoding of what is
// stored (Set, Clear): it notes whether a session is stored.
func (f *Fragment[S, F]) prepare(sl *slot) {
	if sl.state == untouched {
		_, sl.found = sl.lease.Value()
	}
}

func (f *Fragment[S, F]) set(c *Context[S], st *state[S], sl *slot, from *S) error {
	f.prepare(sl)
	f.assign(st, sl, *f.field(from))
	return nil
}

// assign replaces the live value; without a load it is always written.
func (f *Fragment[S, F]) assign(st *state[S], sl *slot, v F) {
	*f.field(&st.val) = v
	if sl.state == untouched {
		sl.state = replaced
	}
}

func (f *Fragment[S, F]) clear(c *Context[S], st *state[S], sl *slot) error {
	f.prepare(sl)
	v := f.field(&st.val)
	*v = f.newValue()
	var err error
	if sl.same, err = f.vc.encode(v); err != nil {
		return f.errorf(sl, "encode", err)
	}
	sl.state = cleared
	return nil
}

// change is what commit does with the slot: write the value if its
// encoding differs from what is stored, delete a cleared (or expired)
// session that the handler left empty, restart the expiry of one that
// was used and left as it was.
func (f *Fragment[S, F]) change(st *state[S], sl *slot) (Change, error) {
	if sl.state == untouched {
		return Change{Op: OpKeep}, nil
	}
	data, err := f.vc.encode(f.field(&st.val))
	if err != nil {
		return Change{}, f.errorf(sl, "encode", err)
	}
	same := sl.state != replaced && sl.same != nil && bytes.Equal(data, sl.same)
	switch {
	case !same:
		return Change{Op: OpWrite, Value: f.vc.wrap(data), TTL: f.nativeTTL()}, nil
	case sl.state == cleared && sl.found, sl.stale:
		return Change{Op: OpDelete}, nil
	case sl.found && f.nativeTTL() > 0:
		return Change{Op: OpTouch, TTL: f.nativeTTL()}, nil
	}
	return Change{Op: OpKeep}, nil
}

// move stores the session of from under to, leaves a forward at from
// and deletes it, unless to has a session already (then both stay).
func (f *Fragment[S, F]) move(ctx context.Context, from, to *slot) error {
	data, found := from.lease.Value()
	if _, taken := to.lease.Value(); found && taken {
		return nil // never overwrite what the new chat has
	}
	if found {
		err := to.lease.Commit(ctx, Change{Op: OpWrite, Value: data, TTL: f.nativeTTL()})
		to.lease = nil // after Commit: a panic in it leaves the lease to the caller's release
		if err != nil {
			return f.errorf(to, "write", err)
		}
	}
	// Before the old key is deleted: an update of the old chat that comes
	// later (still queued, or sent again) follows the forward, even when
	// the old chat had no session yet.
	fwd, ttl := forwardKey(from.storeKey), f.nativeTTL()
	var err error
	if ttl > 0 {
		err = f.expirer.WriteTTL(ctx, fwd, []byte(to.storeKey), ttl)
	} else {
		err = f.store.Write(ctx, fwd, []byte(to.storeKey))
	}
	if err != nil {
		return f.errorf(from, "write forward", err)
	}
	if found {
		err := from.lease.Commit(ctx, Change{Op: OpDelete})
		from.lease = nil
		if err != nil {
			return f.errorf(from, "delete", err)
		}
	}
	return nil
}

// entries yields every stored session of this part, decoded.
func (f *Fragment[S, F]) entries(ctx context.Context, yield func(key string, v *S) bool, fail func(error)) {
	if f.lister == nil {
		fail(fmt.Errorf("session: %T cannot list its sessions: %w", f.store, errNoLister))
		return
	}
	var s S
	for stored, err := range f.lister.Keys(ctx) {
		if err != nil {
			fail(err)
			return
		}
		key, ok := hasPrefixKey(stored, f.prefix)
		if !ok {
			continue
		}
		data, found, err := f.store.Read(ctx, stored)
		if err != nil {
			fail(fmt.Errorf("session: read %q: %w", stored, err))
			return
		}
		if !found {
			continue // deleted since it was listed
		}
		v := f.field(&s)
		var zero F
		*v = zero
		d, err := f.vc.decode(stored, data, v)
		if err != nil {
			fail(err)
			return
		}
		if d.live && !yield(key, &s) {
			return
		}
	}
}
