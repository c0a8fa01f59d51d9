package session

import (
	"fmt"
)

// part is one stored value of a session, seen by the engine without its
// type. A single session has one part; a multi session has one per
// fragment. [Fragment] is the only implementation.
type part[S any] interface {
	info() *partInfo
	load(c *Context[S], sl *slot) error   // read storage into the session
	access(c *Context[S], sl *slot) error // load unless already available
	set(c *Context[S], sl *slot, from *S) error
	clear(c *Context[S], sl *slot) error
	commit(c *Context[S], sl *slot) error // write or delete after success
}

// partInfo is what the engine needs of a part besides its value.
type partInfo struct {
	name       string // "" for a single session
	key        KeyFunc
	defaultKey bool
	prefix     string
}

func (p *partInfo) noKey() error {
	how := "the custom key function returned none"
	if p.defaultKey {
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
	initial func() F
	ops     valueOps[F]
}

func newFragment[S, F any](name string, field func(*S) *F, opts Options[F]) *Fragment[S, F] {
	f := &Fragment[S, F]{
		partInfo: partInfo{name: name, key: opts.Key, prefix: opts.Prefix},
		field:    field,
		store:    opts.Storage,
		initial:  opts.Initial,
		ops:      opsFor[F](),
	}
	if f.key == nil {
		f.key, f.defaultKey = ByChat, true
	}
	if f.store == nil {
		f.store = NewMemory[F]()
	}
	return f
}

// single is the one part of a plain session: the whole value.
func single[S any](opts Options[S]) part[S] {
	return newFragment("", func(s *S) *S { return s }, opts)
}

// Get returns the fragment's value for this update, reading it first
// under lazy sessions. The handler changes it in place.
func (f *Fragment[S, F]) Get(c *Context[S]) (*F, error) {
	sl, err := c.sess.slotOf(c, f)
	if err != nil {
		return nil, err
	}
	if err := f.access(c, sl); err != nil {
		return nil, err
	}
	return f.field(&c.sess.val), nil
}

// Set replaces the fragment's value; under lazy sessions without a read.
func (f *Fragment[S, F]) Set(c *Context[S], v F) error {
	sl, err := c.sess.slotOf(c, f)
	if err != nil {
		return err
	}
	f.assign(c, sl, v)
	return nil
}

// Clear empties the fragment; it is deleted after the handler succeeds.
func (f *Fragment[S, F]) Clear(c *Context[S]) error {
	sl, err := c.sess.slotOf(c, f)
	if err != nil {
		return err
	}
	return f.clear(c, sl)
}

// Key returns the key the fragment's key function gave for this update,
// before any prefix.
func (f *Fragment[S, F]) Key(c *Context[S]) (string, bool) {
	i := c.sess.indexOf(f)
	if i < 0 {
		return "", false
	}
	return c.sess.slots[i].key, c.sess.slots[i].ok
}

func (f *Fragment[S, F]) info() *partInfo { return &f.partInfo }

func (f *Fragment[S, F]) newValue() F {
	if f.initial != nil {
		return f.initial()
	}
	var zero F
	return zero
}

func (f *Fragment[S, F]) load(c *Context[S], sl *slot) error {
	v, found, err := f.store.Read(c, sl.storeKey)
	if err != nil {
		return f.errorf(sl, "read", err)
	}
	if !found {
		v = f.newValue()
	}
	sl.read, sl.found = true, found
	*f.field(&c.sess.val) = v
	return f.snapshot(c, sl, loaded)
}

func (f *Fragment[S, F]) snapshot(c *Context[S], sl *slot, to slotState) error {
	snap, err := f.ops.snapshot(f.field(&c.sess.val), f.field(&c.sess.orig))
	if err != nil {
		return f.errorf(sl, "snapshot", err)
	}
	sl.snap, sl.state = snap, to
	return nil
}

func (f *Fragment[S, F]) access(c *Context[S], sl *slot) error {
	if sl.state != untouched {
		return nil
	}
	return f.load(c, sl)
}

func (f *Fragment[S, F]) set(c *Context[S], sl *slot, from *S) error {
	f.assign(c, sl, *f.field(from))
	return nil
}

// assign replaces the live value; without a read it is always written.
func (f *Fragment[S, F]) assign(c *Context[S], sl *slot, v F) {
	*f.field(&c.sess.val) = v
	if sl.state == untouched {
		sl.state = replaced
	}
}

func (f *Fragment[S, F]) clear(c *Context[S], sl *slot) error {
	*f.field(&c.sess.val) = f.newValue()
	return f.snapshot(c, sl, cleared)
}

func (f *Fragment[S, F]) commit(c *Context[S], sl *slot) error {
	switch sl.state {
	case untouched:
		return nil
	case replaced:
		return f.write(c, sl)
	}
	changed, err := f.ops.changed(f.field(&c.sess.val), f.field(&c.sess.orig), sl.snap)
	switch {
	case err != nil:
		return f.errorf(sl, "compare", err)
	case changed:
		return f.write(c, sl)
	case sl.state == cleared && !(sl.read && !sl.found):
		if err := f.store.Delete(c, sl.storeKey); err != nil {
			return f.errorf(sl, "delete", err)
		}
	}
	return nil
}

func (f *Fragment[S, F]) write(c *Context[S], sl *slot) error {
	if err := f.store.Write(c, sl.storeKey, *f.field(&c.sess.val)); err != nil {
		return f.errorf(sl, "write", err)
	}
	return nil
}
