package session

import (
	"fmt"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// ChatMigration returns an opt-in middleware that follows a group when
// Telegram turns it into a supergroup, which gets a new chat id. On the
// service message that announces it (Message.MigrateToChatID in the old
// chat, Message.MigrateFromChatID in the new one), it moves the session
// stored under the old chat's key to the new chat's key.
//
// Put it outside the session middleware, over the same Options and so the
// same Storage:
//
//	h := session.ChatMigration(opts)(session.Strict(opts)(handler))
//
// The move holds the locks of both keys (the storage's, so across
// processes where the storage locks across them), so no update of either
// chat runs in between. It is idempotent: Telegram sends both service
// messages, and the second finds nothing left to move. It never overwrites
// a session the new chat already has (both are then left as they are), and
// it never recreates the old key: the message in the old chat is consumed
// here, since that chat no longer exists, and next does not see it. The
// message in the new chat goes on to next, which sees the moved session.
//
// The move leaves a forward at the old key, so updates of the old chat
// still queued or sent again later follow the session to the new key
// instead of starting one nobody reads (see the README's chat migrations
// section). Storage must be able to hold it: [Memory], or a byte store
// through [Encoded] or [Enhance]; otherwise ChatMigration panics with
// [ErrConfig].
//
// The new key is what opts.Key gives for the update with the chat id
// replaced, so any key function that depends on the chat works; a session
// whose key does not depend on the chat (ByUser) is not moved. Storage
// must be set: a nil Storage would be a private store this middleware does
// not share with the session's; ChatMigration panics with [ErrConfig].
func ChatMigration[S any](opts Options[S]) Middleware[S] {
	if opts.Storage == nil {
		panic(fmt.Errorf("%w: ChatMigration needs the Storage of the session it migrates", ErrConfig))
	}
	return newMigration(single(opts))
}

// MultiChatMigration is [ChatMigration] for a multi session: it moves
// every fragment whose key depends on the chat, under the locks of all
// their old and new keys at once.
func MultiChatMigration[S any](fragments ...Part[S]) Middleware[S] {
	return newMigration(checkParts(fragments)...)
}

// migration moves parts from one key to another. Its engine lists every
// part twice, for the old key and the new, so taking the locks reuses the
// engine's deadlock-free ordering.
type migration[S any] struct {
	parts []part[S]
	eng   *engine[S]
}

func newMigration[S any](parts ...part[S]) Middleware[S] {
	doubled := make([]part[S], 0, 2*len(parts))
	for _, p := range parts {
		info := p.info()
		if !info.forwards {
			configErr("chat migration: the store of %s cannot hold the forward a move leaves for the old chat's later updates; use session.Memory, or a byte store through session.Encoded or session.Enhance", info.what())
		}
		migrating.Store(info.lockID, struct{}{})
		doubled = append(doubled, p, p)
	}
	m := &migration[S]{parts: parts, eng: &engine[S]{parts: doubled}}
	return m.middleware
}

func (m *migration[S]) middleware(next Handler[S]) Handler[S] {
	if next == nil {
		configErr("chat migration middleware given a nil handler")
	}
	return func(c *Context[S]) error {
		msg := c.Update.Message
		if msg == nil || msg.Chat == nil || (msg.MigrateToChatID == 0 && msg.MigrateFromChatID == 0) {
			return next(c)
		}
		if err := m.move(c); err != nil {
			return err
		}
		if msg.MigrateToChatID != 0 {
			return nil // the old chat is gone: a session there would recreate its key
		}
		return next(c)
	}
}

// move plans the old and new key of every part, locks them all, and moves
// each part whose keys differ.
func (m *migration[S]) move(c *Context[S]) error {
	msg := c.Update.Message
	oldU, newU := &c.Update, &c.Update
	if msg.MigrateToChatID != 0 {
		newU = withChat(c.Update, msg.MigrateToChatID)
	} else {
		oldU = withChat(c.Update, msg.MigrateFromChatID)
	}
	st := &state[S]{eng: m.eng, slots: make([]slot, len(m.eng.parts))}
	for i, p := range m.parts {
		from, to := &st.slots[2*i], &st.slots[2*i+1]
		from.resolve(p.info(), oldU)
		to.resolve(p.info(), newU)
		if !from.ok || !to.ok || from.key == to.key {
			from.ok, to.ok = false, false // nothing to move for this part
		}
	}
	defer st.unlock() // before locking: a panic midway releases what was taken
	if err := st.lock(c); err != nil {
		return err
	}
	for i, p := range m.parts {
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
