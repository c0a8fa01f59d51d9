package session

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
)

// A chat migration moves a session to the new chat's key and leaves a
// forward at the old one: updates of the old chat still queued when the
// group became a supergroup follow it to the new key instead of starting a
// session nobody reads again. The forward lives beside the old key (under
// forwardKey), so the old key itself holds nothing, and it is only looked
// for when a session is missing: a session that exists costs nothing more.

// forwarder is implemented by the stores of this package: [Memory], and
// [Encoded] and [Enhance] over any byte store.
type forwarder interface {
	// forwardOf returns the key that key's session moved to, if any.
	forwardOf(ctx context.Context, key string) (to string, ok bool, err error)
	// setForward records that key's session moved to to.
	setForward(ctx context.Context, key, to string) error
}

// forwardSuffix marks the key that holds a forward. No key function of
// this package produces a unit separator, and storage backends (Redis,
// PostgreSQL text, bbolt) accept it.
const forwardSuffix = "\x1fmoved"

func forwardKey(key string) string { return key + forwardSuffix }

// isForwardKey reports whether a stored key is a forward, which listings
// skip: it is not a session.
func isForwardKey(key string) bool { return strings.HasSuffix(key, forwardSuffix) }

func (b byteBase) forwardOf(ctx context.Context, key string) (string, bool, error) {
	to, ok, err := b.store.Read(ctx, forwardKey(key))
	if err != nil || !ok {
		return "", false, err
	}
	return string(to), true, nil
}

func (b byteBase) setForward(ctx context.Context, key, to string) error {
	return b.store.Write(ctx, forwardKey(key), []byte(to))
}

// migrating holds the lock identities of the stores a chat migration
// middleware moves sessions in: only their parts look for forwards. Every
// process of a bot builds the same middlewares, so they agree.
var migrating sync.Map // lockID -> struct{}

func (p *partInfo) migrating() bool {
	_, ok := migrating.Load(p.lockID)
	return ok
}

// movedError is what a part's load returns when it finds a forward
// instead of a session.
type movedError struct{ to string }

func (m movedError) Error() string { return "session: moved to " + m.to }

// maxForwards bounds how many forwards one load follows (a group becomes a
// supergroup once; more means a cycle).
const maxForwards = 4

// follow handles a forward found while part i was being accessed: it
// points the slot at the new key and takes the locks again, in order,
// since the new key may sort before keys already held. Before the handler
// has seen anything (reload true) that is always safe, and every part is
// read again; after the handler has used another part of this session, that
// part's lock cannot be let go, so the access fails with ErrConflict. st.mu
// is held.
func (st *state[S]) follow(c *Context[S], i int, err error, reload bool) error {
	var m movedError
	if !errors.As(err, &m) {
		return err
	}
	sl, info := &st.slots[i], st.eng.parts[i].info()
	if sl.hops++; sl.hops > maxForwards {
		return info.errorf(sl, "follow chat migration", fmt.Errorf("more than %d forwards", maxForwards))
	}
	for j := range st.slots {
		if j != i && st.slots[j].state != untouched {
			if !reload {
				return info.errorf(sl, "follow chat migration", fmt.Errorf("%w: the chat moved to %q while this update held other fragments", ErrConflict, m.to))
			}
			st.slots[j].state, st.slots[j].read, st.slots[j].found, st.slots[j].stored = untouched, false, false, nil
		}
	}
	st.unlock()
	sl.moved = m.to
	return st.lock(c)
}
