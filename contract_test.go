package session

import (
	"context"
	"errors"
	"fmt"
	"iter"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// lockStore is a fake store with a Locker of its own, as Redis and
// PostgreSQL have: it records every Lock, Commit and Release, so a test
// sees exactly what the middleware asks of a cross-process store.
type lockStore struct {
	mem       *Memory
	commitErr error // returned by every Commit, which then changes nothing

	mu      sync.Mutex
	held    map[string]chan struct{} // closed when the key is freed
	waiting int                      // Locks blocked on a held key
	events  []string
	marks   map[string]bool // "key mark" of every committed mark
}

func newLockStore(opts ...MemoryOptions) *lockStore {
	return &lockStore{mem: NewMemory(opts...), held: map[string]chan struct{}{}}
}

func (s *lockStore) Read(ctx context.Context, key string) ([]byte, bool, error) {
	s.log("read " + key)
	return s.mem.Read(ctx, key)
}

func (s *lockStore) Write(ctx context.Context, key string, v []byte) error {
	s.log("write " + key + " " + string(v))
	return s.mem.Write(ctx, key, v)
}

func (s *lockStore) Delete(ctx context.Context, key string) error {
	s.log("delete " + key)
	return s.mem.Delete(ctx, key)
}

func (s *lockStore) log(e string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.events = append(s.events, e)
}

// take returns the events so far and forgets them.
func (s *lockStore) take() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.events
	s.events = nil
	return e
}

// waiters counts the Locks blocked on a held key.
func (s *lockStore) waiters() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.waiting
}

// heldKeys lists the keys whose lease is neither committed nor released.
func (s *lockStore) heldKeys() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.held {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func (s *lockStore) Lock(ctx context.Context, key, mark string) (Lease, error) {
	for {
		s.mu.Lock()
		busy, ok := s.held[key]
		if !ok {
			s.held[key] = make(chan struct{})
			s.events = append(s.events, "lock "+key)
			s.mu.Unlock()
			break
		}
		s.waiting++
		s.mu.Unlock()
		select {
		case <-busy:
			s.mu.Lock()
			s.waiting--
			s.mu.Unlock()
		case <-ctx.Done():
			s.mu.Lock()
			s.waiting--
			s.mu.Unlock()
			return nil, fmt.Errorf("lock %q: %w", key, ctx.Err())
		}
	}
	v, found, err := s.mem.Read(ctx, key)
	if err != nil {
		s.free(key)
		return nil, err
	}
	s.mu.Lock()
	applied := mark != "" && s.marks[key+" "+mark]
	s.mu.Unlock()
	return &fakeLease{s: s, key: key, mark: mark, applied: applied, value: v, found: found}, nil
}

func (s *lockStore) free(key string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	close(s.held[key])
	delete(s.held, key)
}

type fakeLease struct {
	s       *lockStore
	key     string
	mark    string
	applied bool
	value   []byte
	found   bool
	done    bool
}

func (l *fakeLease) Value() ([]byte, bool) { return l.value, l.found }

func (l *fakeLease) Applied() bool { return l.applied }

func (l *fakeLease) Commit(ctx context.Context, c Change) error {
	if l.done {
		return errors.New("fake lease: Commit after the lease ended")
	}
	l.done = true
	defer l.s.free(l.key)
	e := "commit " + l.key + " "
	switch c.Op {
	case OpKeep:
		e += "keep"
	case OpWrite:
		e += "write " + string(c.Value)
	case OpTouch:
		e += "touch"
	case OpDelete:
		e += "delete"
	}
	if c.TTL > 0 {
		e += " ttl=" + c.TTL.String()
	}
	l.s.log(e)
	if l.s.commitErr != nil {
		return l.s.commitErr
	}
	if l.mark != "" {
		l.s.mu.Lock()
		if l.s.marks == nil {
			l.s.marks = make(map[string]bool)
		}
		l.s.marks[l.key+" "+l.mark] = true
		l.s.mu.Unlock()
	}
	switch c.Op {
	case OpWrite:
		if c.TTL > 0 {
			return l.s.mem.WriteTTL(ctx, l.key, c.Value, c.TTL)
		}
		return l.s.mem.Write(ctx, l.key, c.Value)
	case OpTouch:
		return l.s.mem.Touch(ctx, l.key, c.TTL)
	case OpDelete:
		return l.s.mem.Delete(ctx, l.key)
	}
	return nil
}

func (l *fakeLease) Release() {
	if l.done {
		return
	}
	l.done = true
	l.s.log("release " + l.key)
	l.s.free(l.key)
}

// lockExpStore is a lockStore with native expiry too.
type lockExpStore struct{ *lockStore }

func (s lockExpStore) WriteTTL(ctx context.Context, key string, v []byte, ttl time.Duration) error {
	s.log("writettl " + key + " " + string(v) + " ttl=" + ttl.String())
	return s.mem.WriteTTL(ctx, key, v, ttl)
}

func (s lockExpStore) Touch(ctx context.Context, key string, ttl time.Duration) error {
	s.log("touch " + key + " ttl=" + ttl.String())
	return s.mem.Touch(ctx, key, ttl)
}

// logStore is a user's logging wrapper that follows the Unwrap
// convention: it logs the three methods and keeps its base's
// capabilities.
type logStore struct {
	base Store
	mu   sync.Mutex
	log  []string
}

func (l *logStore) note(e string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.log = append(l.log, e)
}

func (l *logStore) Read(ctx context.Context, k string) ([]byte, bool, error) {
	l.note("read " + k)
	return l.base.Read(ctx, k)
}

func (l *logStore) Write(ctx context.Context, k string, v []byte) error {
	l.note("write " + k)
	return l.base.Write(ctx, k, v)
}

func (l *logStore) Delete(ctx context.Context, k string) error {
	l.note("delete " + k)
	return l.base.Delete(ctx, k)
}

func (l *logStore) Unwrap() Store { return l.base }

// opaqueStore is a wrapper without Unwrap: it has the three methods only,
// whatever its base can do.
type opaqueStore struct{ base Store }

func (o opaqueStore) Read(ctx context.Context, k string) ([]byte, bool, error) {
	return o.base.Read(ctx, k)
}
func (o opaqueStore) Write(ctx context.Context, k string, v []byte) error {
	return o.base.Write(ctx, k, v)
}
func (o opaqueStore) Delete(ctx context.Context, k string) error { return o.base.Delete(ctx, k) }

// selfWrapper unwraps to itself: a mistake that must not hang.
type selfWrapper struct{ plainStore }

func (s *selfWrapper) Unwrap() Store { return s }

// nilWrapper unwraps to a typed nil.
type nilWrapper struct{ plainStore }

func (nilWrapper) Unwrap() Store { return (*Memory)(nil) }

func TestUnwrap(t *testing.T) {
	mem := NewMemory()
	ls := newLockStore()
	t.Run("a store's own capabilities", func(t *testing.T) {
		_, ok := Unwrap[Expirer](mem)
		assert.True(t, ok)
		_, ok = Unwrap[Lister](mem)
		assert.True(t, ok)
		_, ok = Unwrap[Locker](mem)
		assert.False(t, ok, "Memory has no Locker: the process-wide table locks it")
		l, ok := Unwrap[Locker](ls)
		assert.True(t, ok)
		assert.Same(t, ls, l)
	})
	t.Run("through wrappers with Unwrap", func(t *testing.T) {
		twice := &logStore{base: &logStore{base: ls}}
		l, ok := Unwrap[Locker](twice)
		require.True(t, ok)
		assert.Same(t, ls, l, "found two wrappers down")
		e, ok := Unwrap[Expirer](&logStore{base: mem})
		require.True(t, ok)
		assert.Same(t, mem, e)
	})
	t.Run("the first in the chain wins", func(t *testing.T) {
		outer := lockExpStore{newLockStore()}
		l, ok := Unwrap[Locker](&logStore{base: outer})
		require.True(t, ok)
		assert.Equal(t, outer, l)
	})
	t.Run("a wrapper without Unwrap claims nothing", func(t *testing.T) {
		_, ok := Unwrap[Locker](opaqueStore{ls})
		assert.False(t, ok)
		_, ok = Unwrap[Expirer](opaqueStore{mem})
		assert.False(t, ok)
		_, ok = Unwrap[Lister](opaqueStore{mem})
		assert.False(t, ok)
		_, ok = Unwrap[Locker](&logStore{base: opaqueStore{ls}})
		assert.False(t, ok, "the chain stops at the first store without Unwrap")
	})
	t.Run("cycles and nils end the search", func(t *testing.T) {
		_, ok := Unwrap[Locker](&selfWrapper{newPlainStore()})
		assert.False(t, ok)
		_, ok = Unwrap[Expirer](nilWrapper{newPlainStore()})
		assert.False(t, ok, "a typed nil is not searched")
		_, ok = Unwrap[Expirer](&logStore{base: nil})
		assert.False(t, ok)
	})
}

// TestScenarioLoggingWrapperKeepsCrossProcessLocking: a bot that wraps
// its Redis store in a logging wrapper used to lose the store's Locker
// (the wrapper had the three methods only), and with it the locking
// across processes: two replicas lost each other's writes. A wrapper with
// Unwrap keeps it: the store's own Lock takes the key, its lease commits,
// and the wrapper still sees the reads and writes made through it.
func TestScenarioLoggingWrapperKeepsCrossProcessLocking(t *testing.T) {
	ls := newLockStore()
	wrapped := &logStore{base: ls}
	h := with(t, Options[counter]{Storage: wrapped}, increment)
	require.NoError(t, run(h, msg(1, 1)))
	assert.Equal(t, []string{"lock 1", `commit 1 write {"Count":1}`}, ls.take(), "the base store's Lock and lease")
	assert.Empty(t, wrapped.log, "the lease read and committed: nothing went through the wrapper")
	assert.Zero(t, heldIn(ls), "the local table is not used")

	// The same store without Unwrap is locked in this process only.
	opaque := opaqueStore{ls}
	require.NoError(t, run(with(t, Options[counter]{Storage: opaque}, increment), msg(1, 1)))
	assert.Equal(t, []string{"read 1", `write 1 {"Count":2}`}, ls.take(), "no Lock: a wrapper without Unwrap claims no capability")
}

// TestScenarioWrapperWithoutUnwrapClaimsNothing: a wrapper without Unwrap
// over Memory is a store with no capabilities: the TTL goes into grammY's
// envelope, and Entries cannot list it. The same wrapper with Unwrap uses
// the base's native expiry and listing.
func TestScenarioWrapperWithoutUnwrapClaimsNothing(t *testing.T) {
	clock := newTestClock()
	ctx := context.Background()
	for name, tc := range map[string]struct {
		wrap     func(Store) Store
		envelope bool
	}{
		"with Unwrap":    {func(s Store) Store { return &logStore{base: s} }, false},
		"without Unwrap": {func(s Store) Store { return opaqueStore{s} }, true},
	} {
		t.Run(name, func(t *testing.T) {
			mem := NewMemory(MemoryOptions{Clock: clock.Now})
			sess := mustNew(t, Options[counter]{Storage: tc.wrap(mem), TTL: time.Hour, Clock: clock.Now})
			require.NoError(t, run(sess.Middleware(increment), msg(1, 1)))
			raw, ok := rawOf(t, mem, "1")
			require.True(t, ok)
			if tc.envelope {
				assert.Equal(t, fmt.Sprintf(`{"__d":{"Count":1},"e":%d}`, clock.Now().Add(90*time.Minute).UnixMilli()), raw)
				for _, err := range sess.Entries(ctx) {
					assert.ErrorIs(t, err, errors.ErrUnsupported)
				}
			} else {
				assert.Equal(t, `{"Count":1}`, raw, "expired natively by Memory")
				var keys []string
				for e, err := range sess.Entries(ctx) {
					require.NoError(t, err)
					keys = append(keys, e.Key)
				}
				assert.Equal(t, []string{"1"}, keys)
			}
		})
	}
}

// TestCommitsPerUpdate is what a store with a Locker sees of each kind
// of update: one Lock (the lock and the read in one step) and one Commit
// or Release, with the change the update made.
func TestCommitsPerUpdate(t *testing.T) {
	const ttl = time.Hour
	read := func(c *Context[counter]) error { _, err := c.Session(); return err }
	fail := errors.New("handler failed")
	for _, tc := range []struct {
		name    string
		native  bool // the store is an Expirer too
		ttl     time.Duration
		lazy    bool
		stored  string // "" for none
		handler Handler[counter]
		want    []string
		err     error
	}{
		{name: "new, unchanged", handler: read, want: []string{"lock 1", "commit 1 keep"}},
		{name: "new, changed", handler: increment, want: []string{"lock 1", `commit 1 write {"Count":1}`}},
		{name: "stored, unchanged", stored: `{"Count":4}`, handler: read, want: []string{"lock 1", "commit 1 keep"}},
		{name: "stored, changed", stored: `{"Count":4}`, handler: increment, want: []string{"lock 1", `commit 1 write {"Count":5}`}},
		{name: "stored, cleared", stored: `{"Count":4}`, handler: func(c *Context[counter]) error { return c.ClearSession() },
			want: []string{"lock 1", "commit 1 delete"}},
		{name: "new, cleared", handler: func(c *Context[counter]) error { return c.ClearSession() },
			want: []string{"lock 1", "commit 1 keep"}},
		{name: "handler error", stored: `{"Count":4}`, handler: func(c *Context[counter]) error { _ = increment(c); return fail },
			want: []string{"lock 1", "release 1"}, err: fail},
		{name: "lazy, untouched", lazy: true, stored: `{"Count":4}`, handler: func(*Context[counter]) error { return nil }},
		{name: "lazy, set", lazy: true, stored: `{"Count":4}`, handler: func(c *Context[counter]) error { return c.SetSession(counter{9}) },
			want: []string{"lock 1", `commit 1 write {"Count":9}`}},
		{name: "native TTL, new, changed", native: true, ttl: ttl, handler: increment,
			want: []string{"lock 1", `commit 1 write {"Count":1} ttl=1h0m0s`}},
		{name: "native TTL, stored, unchanged", native: true, ttl: ttl, stored: `{"Count":4}`, handler: read,
			want: []string{"lock 1", "commit 1 touch ttl=1h0m0s"}},
		{name: "native TTL, new, unchanged: nothing to touch", native: true, ttl: ttl, handler: read,
			want: []string{"lock 1", "commit 1 keep"}},
		{name: "native TTL, stored, cleared", native: true, ttl: ttl, stored: `{"Count":4}`,
			handler: func(c *Context[counter]) error { return c.ClearSession() }, want: []string{"lock 1", "commit 1 delete"}},
		{name: "no expirer: the TTL in the envelope", ttl: ttl, handler: increment,
			want: []string{"lock 1", `commit 1 write {"__d":{"Count":1},"e":1700005400000}`}},
		{name: "no expirer, fresh envelope, unchanged", ttl: ttl, stored: `{"__d":{"Count":4},"e":1700005400000}`, handler: read,
			want: []string{"lock 1", "commit 1 keep"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			clock := newTestClock()
			ls := newLockStore(MemoryOptions{Clock: clock.Now})
			var store Store = ls
			if tc.native {
				store = lockExpStore{ls}
			}
			if tc.stored != "" {
				require.NoError(t, ls.mem.Write(context.Background(), "1", []byte(tc.stored)))
			}
			h := with(t, Options[counter]{Storage: store, TTL: tc.ttl, Lazy: tc.lazy, Clock: clock.Now}, tc.handler)
			err := run(h, msg(1, 1))
			if tc.err != nil {
				assert.ErrorIs(t, err, tc.err)
			} else {
				assert.NoError(t, err)
			}
			assert.Equal(t, tc.want, ls.take())
			assert.Empty(t, ls.heldKeys(), "every lease ended")
		})
	}
}

// TestCommitConflictSavesNothing: a lease lost before the commit (it
// expired and another process took the key) makes the commit fail with
// ErrConflict, which reaches the caller naming the key, so the update can
// be retried.
func TestCommitConflictSavesNothing(t *testing.T) {
	ls := newLockStore()
	ls.commitErr = fmt.Errorf("fenced: %w", ErrConflict)
	err := run(with(t, Options[counter]{Storage: ls, Prefix: "p:"}, increment), msg(1, 1))
	require.ErrorIs(t, err, ErrConflict)
	assert.ErrorContains(t, err, `"p:1"`)
	_, found := rawOf(t, ls.mem, "p:1")
	assert.False(t, found)
}

// TestMultiCommitsEveryFragmentAndJoinsErrors: fragments in different
// stores commit one by one; one that fails does not stop the others, and
// the update returns the failure.
func TestMultiCommitsEveryFragmentAndJoinsErrors(t *testing.T) {
	type both struct{ A, B counter }
	failing, fine := newLockStore(), newLockStore()
	failing.commitErr = ErrConflict
	a := NewFragment("a", func(b *both) *counter { return &b.A }, Options[counter]{Storage: failing})
	b := NewFragment("b", func(b *both) *counter { return &b.B }, Options[counter]{Storage: fine})
	err := run(mustMulti(t, Options[both]{}, func(c *Context[both]) error {
		s, err := c.Session()
		if err == nil {
			s.A.Count++
			s.B.Count++
		}
		return err
	}, a, b), msg(1, 1))
	require.ErrorIs(t, err, ErrConflict)
	assert.ErrorContains(t, err, `fragment "a"`)
	assert.Equal(t, []string{"lock a:1", `commit a:1 write {"Count":1}`}, failing.take())
	assert.Equal(t, []string{"lock b:1", `commit b:1 write {"Count":1}`}, fine.take(), "the other fragment is committed")
	assert.Equal(t, 1, countIn(t, fine.mem, "b:1"))
}

// TestLockerExcludesAcrossSessions: two sessions over one Locker store
// (two processes, say) are serialised by the store's own lock, not by
// this process's table.
func TestLockerExcludesAcrossSessions(t *testing.T) {
	ls := newLockStore()
	entered, release := make(chan struct{}), make(chan struct{})
	first := with(t, Options[counter]{Storage: ls}, func(c *Context[counter]) error {
		close(entered)
		<-release
		return increment(c)
	})
	second := with(t, Options[counter]{Storage: &logStore{base: ls}}, increment)
	done := make(chan error, 2)
	go func() { done <- run(first, msg(1, 1)) }()
	<-entered
	go func() { done <- run(second, msg(1, 1)) }()
	require.True(t, settles(func() bool { return ls.waiters() == 1 }), "the second update waits in the store's Lock")
	select {
	case <-done:
		t.Fatal("the second update ran while the first held the key")
	default:
	}
	assert.Zero(t, heldIn(ls), "the process-wide table is not used for a store with a Locker")
	close(release)
	require.NoError(t, <-done)
	require.NoError(t, <-done)
	assert.Equal(t, 2, countIn(t, ls.mem, "1"))
}

// TestEntries lists stored sessions through Session.Entries: decoded,
// migrated, without the prefix, skipping other prefixes, forwards and
// expired sessions; and refuses where it cannot list.
func TestEntries(t *testing.T) {
	ctx := context.Background()
	clock := newTestClock()
	t.Run("a listing store", func(t *testing.T) {
		store := listStore{newPlainStore(MemoryOptions{Clock: clock.Now})}
		w := func(k, v string) { require.NoError(t, store.Write(ctx, k, []byte(v))) }
		w("s:1", `{"Count":1}`)                                 // bare: version 0, migrated
		w("s:2", `{"__d":{"Count":2},"v":1,"e":1700000060000}`) // current
		w("s:3", `{"__d":{"Count":3},"v":1,"e":1700000000000}`) // expired
		w("other:4", `{"Count":4}`)                             // another session's
		w("s:5"+forwardSuffix, "s:6")                           // a chat migration's forward
		sess := mustNew(t, Options[counter]{
			Storage: store, Prefix: "s:", TTL: time.Minute, Clock: clock.Now,
			Migrations: map[float64]Migration{1: Migrate(func(c counter) (counter, error) { c.Count *= 10; return c, nil })},
		})
		got := map[string]int{}
		for e, err := range sess.Entries(ctx) {
			require.NoError(t, err)
			got[e.Key] = e.Value.Count
		}
		assert.Equal(t, map[string]int{"1": 10, "2": 2}, got)
	})
	t.Run("Memory, natively expired", func(t *testing.T) {
		mem := NewMemory(MemoryOptions{Clock: clock.Now})
		require.NoError(t, mem.WriteTTL(ctx, "1", []byte(`{"Count":1}`), time.Minute))
		require.NoError(t, mem.Write(ctx, "2", []byte(`{"Count":2}`)))
		clock.Advance(time.Minute)
		var keys []string
		for e, err := range mustNew(t, Options[counter]{Storage: mem}).Entries(ctx) {
			require.NoError(t, err)
			keys = append(keys, e.Key)
		}
		assert.Equal(t, []string{"2"}, keys)
	})
	t.Run("corrupt data ends the listing", func(t *testing.T) {
		mem := NewMemory()
		require.NoError(t, mem.Write(ctx, "1", []byte(`{"Count":"x"}`)))
		var errs []error
		for _, err := range mustNew(t, Options[counter]{Storage: mem}).Entries(ctx) {
			errs = append(errs, err)
		}
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], ErrCorrupt)
	})
	t.Run("breaking out stops it", func(t *testing.T) {
		mem := NewMemory()
		for i := range 10 {
			require.NoError(t, mem.Write(ctx, fmt.Sprint(i), []byte(`{}`)))
		}
		n := 0
		for range mustNew(t, Options[counter]{Storage: mem}).Entries(ctx) {
			n++
			break
		}
		assert.Equal(t, 1, n)
	})
	t.Run("cancelled", func(t *testing.T) {
		mem := NewMemory()
		require.NoError(t, mem.Write(ctx, "1", []byte(`{}`)))
		cancelled, cancel := context.WithCancel(ctx)
		cancel()
		var errs []error
		for _, err := range mustNew(t, Options[counter]{Storage: mem}).Entries(cancelled) {
			errs = append(errs, err)
		}
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], context.Canceled)
	})
	t.Run("unsupported", func(t *testing.T) {
		type both struct{ A counter }
		multi, err := NewMulti(Options[both]{}, NewFragment("a", func(b *both) *counter { return &b.A }, Options[counter]{}))
		require.NoError(t, err)
		for name, seq := range map[string]iter.Seq2[Entry[counter], error]{
			"a store without Lister": mustNew(t, Options[counter]{Storage: newPlainStore()}).Entries(ctx),
		} {
			var errs []error
			for _, err := range seq {
				errs = append(errs, err)
			}
			require.Len(t, errs, 1, name)
			assert.ErrorIs(t, errs[0], errors.ErrUnsupported, name)
		}
		var errs []error
		for _, err := range multi.Entries(ctx) {
			errs = append(errs, err)
		}
		require.Len(t, errs, 1)
		assert.ErrorIs(t, errs[0], errors.ErrUnsupported, "a multi session")
	})
}
