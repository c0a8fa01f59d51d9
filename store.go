package session

import (
	"context"
	"errors"
	"iter"
	"time"
)

// Store keeps sessions as bytes by key: the encoding the session's
// [Codec] produced (JSON by default), so what an update sees is what the
// codec round-trips, whatever the store. Writing one takes three methods;
// [storagetest.Run] checks it.
//
// Implementations must be safe for concurrent use and must honour ctx: a
// call whose context is cancelled returns the context's error. Read
// reports a missing key with found == false and a nil error; deleting a
// missing key is not an error. A store may keep the slices it is given
// (the caller does not change them afterwards), and the caller must not
// change a slice it got from Read.
//
// A store may have optional capabilities, each an interface of its own:
// [Locker] (locking across processes), [Expirer] (native expiry) and
// [Lister] (listing keys). The middleware finds them on the store, or on
// what its Unwrap method returns, and so on down (see [Unwrap]).
type Store interface {
	Read(ctx context.Context, key string) (value []byte, found bool, err error)
	Write(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
}

// Locker is an optional capability of a [Store]: exclusive access to one
// key among every user of the storage, across processes. The middleware
// holds the lock of a session key from before it reads the session until
// it has committed the update's change, so two updates of one chat never
// lose each other's writes.
//
// Lock blocks until the key is free or ctx ends (then it returns an error
// wrapping ctx.Err()). The [Lease] it returns owns everything about that
// hold: the value read with the lock, the fencing, and the commit. A store
// that locks across processes renews its lease for as long as the Lease is
// neither committed nor released, and no longer.
//
// mark names the update the lock is taken for, "<bot id>:<update id>", or
// is "" for none. With a mark, the lock also reads the key's record of
// applied updates ([Lease.Applied]) and a Commit adds the mark to it in
// the same step, keeping at least the last [AppliedWindow] marks for
// [AppliedTTL]: so a redelivered update cannot apply its change twice,
// even after a crash between the commit and Telegram's acknowledgement.
// A Release records nothing.
//
// For a store without Locker, the middleware locks keys in a table shared
// by the whole process, keyed by the store and the key: every middleware
// over one store excludes the others, but other processes are not seen.
// Its record of applied updates is kept beside the key with the store's
// own methods, if the store is an [Expirer] (so that it expires): written
// after the change, so a crash between the two can apply an update twice
// but never lose one.
type Locker interface {
	Lock(ctx context.Context, key, mark string) (Lease, error)
}

// Lease is one hold of a key's lock, returned by [Locker.Lock]. Exactly
// one Commit or Release ends it; the middleware guarantees one of them on
// every path, a panic included.
type Lease interface {
	// Value returns what was stored under the key when the lock was
	// taken: the lock and the read are one step.
	Value() (value []byte, found bool)
	// Applied reports whether the mark given to Lock is in the key's
	// record: a Commit of an earlier lease with the same mark applied
	// that update to the key. Always false without a mark.
	Applied() bool
	// Commit applies c, fenced by the lease, and releases the lock in
	// the same step, recording the lease's mark (if any) in the key's
	// record of applied updates. If the lease was lost (it expired and
	// another holder may have written since), nothing is changed, nor
	// recorded, and the error wraps
	// [ErrConflict]; if ctx is cancelled, nothing is changed and the error
	// wraps ctx.Err(). Commit ends the lease whatever it returns. A Commit
	// after the lease ended (a second Commit, or after Release) changes
	// nothing, frees nothing, and returns an error.
	Commit(ctx context.Context, c Change) error
	// Release ends the lease without a change. It does nothing after
	// Commit or a first Release, and never waits for long: a release
	// that cannot reach the server leaves the lease to expire.
	Release()
}

// Change is what an update does to its session key at commit.
type Change struct {
	Op    Op
	Value []byte // for OpWrite: the new encoding
	// TTL, for OpWrite and OpTouch on a store that is an [Expirer]: the
	// key expires TTL from now. Zero: no expiry. Stores without Expirer
	// are given zero.
	TTL time.Duration
}

// Op says what a [Change] does.
type Op uint8

const (
	OpKeep   Op = iota // nothing: just release the lock
	OpWrite            // store Change.Value
	OpTouch            // restart the key's expiry (Change.TTL); a missing key stays missing
	OpDelete           // delete the key
)

// Expirer is an optional capability of a [Store] whose backend expires
// keys itself (Redis PX, a PostgreSQL expiry column, bbolt with a purge,
// Memory). With a session TTL, the middleware writes through WriteTTL and
// restarts the expiry of a session an update used without changing it
// with Touch, so a session lives exactly TTL after the last update that
// used it. A store without Expirer gets the TTL in the stored data
// instead (grammY's envelope, field "e").
type Expirer interface {
	// WriteTTL stores value under key, to expire ttl from now.
	WriteTTL(ctx context.Context, key string, value []byte, ttl time.Duration) error
	// Touch makes a live key expire ttl from now; a missing key is not
	// an error and stays missing.
	Touch(ctx context.Context, key string, ttl time.Duration) error
}

// Lister is an optional capability of a [Store]: listing every stored
// key, for a bot's own code (broadcasts, admin tools) through
// [Session.Entries]. The sequence stops at the first error, which it
// yields with an empty key; cancelling ctx ends it with the context's
// error. Keys may be yielded in any order; a key written or deleted during
// the listing may or may not be yielded. Besides sessions, a store without
// a Locker holds the middleware's own keys, which contain the byte 0x1f (a
// session's record of applied updates, a chat migration's forward):
// [Session.Entries] skips them.
type Lister interface {
	Keys(ctx context.Context) iter.Seq2[string, error]
}

// Unwrap is the convention by which a wrapper of a [Store] (one that logs,
// counts or traces calls) keeps its base's capabilities without
// re-implementing them, as http.ResponseController does with
// http.ResponseWriter: a wrapper with a method
//
//	Unwrap() session.Store
//
// is searched through. For each capability the middleware takes the first
// store in the chain store, store.Unwrap(), ... that has it. Calls made
// through a capability found below the wrapper bypass the wrapper (a
// lease's commit writes to the base store directly): a wrapper that must
// see them implements the capability itself.
//
// Unwrap returns the capability C of store, searched that way.
func Unwrap[C any](store Store) (C, bool) {
	for range maxUnwrap {
		if c, ok := store.(C); ok {
			return c, true
		}
		w, ok := store.(interface{ Unwrap() Store })
		if !ok {
			break
		}
		if store = w.Unwrap(); store == nil || isNil(store) {
			break
		}
	}
	var zero C
	return zero, false
}

// maxUnwrap bounds the chain, so a wrapper that returns itself cannot
// hang the middleware.
const maxUnwrap = 32

// ErrConflict reports a change refused because the lock it was made under
// was lost (its lease expired and another process may have written
// since). Nothing was written; the update's changes are not saved, and
// the error is returned from the handler chain so the update can be
// retried. Errors that wrap it name the key.
var ErrConflict = errors.New("session: write conflict: the lock on the key was lost")

// ErrCorrupt reports stored data that cannot be decoded into the session
// type. Errors that wrap it name the key.
var ErrCorrupt = errors.New("session: corrupt stored data")

// ErrConfig reports a configuration mistake, found when a session or a
// store is built: [New], [NewMulti] and the adapters' constructors return
// an error wrapping it that names what is wrong.
var ErrConfig = errors.New("session: invalid configuration")
