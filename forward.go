package session

import (
	"context"
	"fmt"
	"sync"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// A chat migration moves a session to the new chat's key and leaves a
// forward beside the old one: updates of the old chat still queued when
// the group became a supergroup (or sent again later) follow it to the new
// key instead of starting a session nobody reads again. The forward lives
// under forwardKey, so the old key itself holds nothing, and it is looked
// for only when a session is missing: a session that exists costs nothing
// more.

// forwardSuffix marks the key that holds a forward. No key function of
// this package produces a unit separator, and storage backends (Redis,
// PostgreSQL text, bbolt) accept it.
const forwardSuffix = "\x1fmoved"

func forwardKey(key string) string { return key + forwardSuffix }

// migrating holds the lock identities of the stores a session with
// ChatMigration keeps its sessions in: only their parts look for forwards.
// Every process of a bot builds the same sessions, so they agree.
var migrating sync.Map // lockID -> *partInfo

func (p *partInfo) migrating() bool {
	_, ok := migrating.Load(p.lockID)
	return ok
}

// maxForwards bounds how many forwards one update follows (a group
// becomes a supergroup once; more means a cycle).
const maxForwards = 4

// forwards looks, right after the leases were taken and before anything
// is handed to the handler, for a chat migration's forward at each key
// that holds no session, in stores a session with ChatMigration uses. It
// points each forwarded slot at the new key and reports whether any was:
// then lock takes the leases again, in order. A forward is written under
// the old key's lease, so none can appear while this update holds it.
// st.mu is held.
func (st *state[S]) forwards(c *Context[S]) (bool, error) {
	if st.eng.mover {
		return false, nil
	}
	moved := false
	for i, p := range st.eng.parts {
		sl, info := &st.slots[i], p.info()
		if sl.lease == nil {
			continue
		}
		if _, found := sl.lease.Value(); found || !info.migrating() {
			continue // the registry is looked up on a miss only
		}
		to, ok, err := info.store.Read(c, forwardKey(sl.storeKey))
		if err != nil {
			return false, info.errorf(sl, "read forward", err)
		}
		if !ok {
			continue
		}
		if sl.hops++; sl.hops > maxForwards {
			return false, info.errorf(sl, "follow chat migration", fmt.Errorf("more than %d forwards", maxForwards))
		}
		// An update applied to the old chat before the migration is
		// recorded there, not at the new key.
		sl.hopped = sl.hopped || sl.applied
		sl.moved, moved = string(to), true
	}
	return moved, nil
}

// migrations wraps h with the moves of chat migrations: on the service
// message that announces one (Message.MigrateToChatID in the old chat,
// Message.MigrateFromChatID in the new one), every part whose key depends
// on the chat moves from the old chat's key to the new one's, under the
// leases of both, so no update of either chat runs in between. It is
// idempotent: Telegram sends both messages, and the second finds nothing
// left to move. The message in the old chat ends here (that chat no longer
// exists, and a session there would recreate its key); the one in the new
// chat goes on to h.
func (e *engine[S]) migrations(h Handler[S]) Handler[S] {
	doubled := make([]part[S], 0, 2*len(e.parts))
	for _, p := range e.parts {
		doubled = append(doubled, p, p)
	}
	mover := &engine[S]{parts: doubled, mover: true}
	return func(c *Context[S]) error {
		msg := c.Update.Message
		if msg == nil || msg.Chat == nil || (msg.MigrateToChatID == 0 && msg.MigrateFromChatID == 0) {
			return h(c)
		}
		if err := mover.move(c, e.parts); err != nil {
			return err
		}
		if msg.MigrateToChatID != 0 {
			return nil
		}
		return h(c)
	}
}

// move plans the old and new key of every part, takes all their leases,
// and moves each part whose keys differ.
func (e *engine[S]) move(c *Context[S], parts []part[S]) error {
	if c.Context == nil {
		c = &Context[S]{Context: context.Background(), Bot: c.Bot, Update: c.Update, sess: c.sess}
	}
	msg := c.Update.Message
	oldU, newU := &c.Update, &c.Update
	if msg.MigrateToChatID != 0 {
		newU = withChat(c.Update, msg.MigrateToChatID)
	} else {
		oldU = withChat(c.Update, msg.MigrateFromChatID)
	}
	st := &state[S]{eng: e, slots: make([]slot, len(e.parts))}
	defer st.unlock() // installed before locking: a panic midway releases what was taken
	for i, p := range parts {
		from, to := &st.slots[2*i], &st.slots[2*i+1]
		from.resolve(p.info(), Update{oldU, c.Raw})
		to.resolve(p.info(), Update{newU, c.Raw})
		if !from.ok || !to.ok || from.key == to.key {
			from.ok, to.ok = false, false // nothing to move for this part
		}
	}
	if err := st.lock(c); err != nil {
		return err
	}
	for i, p := range parts {
		if from, to := &st.slots[2*i], &st.slots[2*i+1]; from.ok {
			if err := p.move(c, from, to); err != nil {
				return err
			}
		}
	}
	return nil
}

// withChat returns a copy of u whose message is in chat id.
func withChat(u tgbotapi.Update, id int64) *tgbotapi.Update {
	msg := *u.Message
	chat := *msg.Chat
	chat.ID = id
	msg.Chat = &chat
	u.Message = &msg
	return &u
}
