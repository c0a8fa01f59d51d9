package session

import (
	"encoding/json"
	"strconv"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// Update is an update as a key function sees it: tgbotapi's decoding
// (its fields are promoted: u.Message) and, when the update came through
// package runner or telegramtest, the JSON Telegram sent ([Context.Raw]),
// which keeps what tgbotapi v5.5.1 drops. Update may be nil for an update
// built by hand only in its Raw.
type Update struct {
	*tgbotapi.Update
	Raw json.RawMessage
}

// KeyFunc maps an update to its session key; ok == false means the update
// has no session, so the middleware neither loads nor saves one for it.
// It takes an [Update] rather than a *tgbotapi.Update so that it can read
// the fields tgbotapi drops (forum topics, business connections) from the
// raw JSON; a key function written for tgbotapi's fields changes only its
// signature.
//
// A KeyFunc runs on every update, so it must be cheap and must never panic
// on a partially filled update: Telegram omits fields freely, and tests and
// handlers build updates by hand. It must give the same key every time it
// sees the same update: the runner orders by it and the middleware locks by
// it.
type KeyFunc func(u Update) (key string, ok bool)

// ByChat keys sessions by chat ID, so everyone in a group shares one
// session and a private chat gets its own. It is the default because most
// bots keep conversation state per chat.
//
// Updates that do not belong to a chat (inline queries, chosen inline
// results, callback queries from inline messages, polls, poll answers,
// shipping and pre-checkout queries) have no session.
func ByChat(u Update) (string, bool) {
	id, ok := chatID(u.Update)
	if !ok {
		id, ok = rawChat(u.Raw)
	}
	if !ok {
		return "", false
	}
	return formatID(id), true
}

// ByUser keys sessions by the sending user's ID, so a user carries one
// session across every chat and also into inline mode and payments, which
// have no chat. Updates without a sender (polls, channel posts signed only
// by the channel) have no session.
func ByUser(u Update) (string, bool) {
	id, ok := userID(u.Update)
	if !ok {
		return "", false
	}
	return formatID(id), true
}

// ByUserInChat keys sessions by user and chat together, as
// "<userID>/<chatID>", so each member of a group has private state in that
// group. Both must be present: an update that lacks either has no session,
// because falling back to one of them would silently merge sessions.
func ByUserInChat(u Update) (string, bool) {
	uid, ok := userID(u.Update)
	if !ok {
		return "", false
	}
	cid, ok := chatID(u.Update)
	if !ok {
		return "", false
	}
	return formatID(uid) + "/" + formatID(cid), true
}

// chatID finds the chat an update belongs to. It reads fields directly
// rather than calling tgbotapi's FromChat, which does not cover every
// update kind and dereferences pointers without checking them.
func chatID(u *tgbotapi.Update) (int64, bool) {
	switch {
	case u == nil:
		return 0, false
	case u.Message != nil:
		return msgChatID(u.Message)
	case u.EditedMessage != nil:
		return msgChatID(u.EditedMessage)
	case u.ChannelPost != nil:
		return msgChatID(u.ChannelPost)
	case u.EditedChannelPost != nil:
		return msgChatID(u.EditedChannelPost)
	case u.CallbackQuery != nil:
		// A callback from a button on an inline message has no Message,
		// and so no chat.
		return msgChatID(u.CallbackQuery.Message)
	case u.MyChatMember != nil:
		return present(u.MyChatMember.Chat.ID)
	case u.ChatMember != nil:
		return present(u.ChatMember.Chat.ID)
	case u.ChatJoinRequest != nil:
		return present(u.ChatJoinRequest.Chat.ID)
	}
	return 0, false
}

// userID finds the user who caused an update. Like chatID it avoids
// tgbotapi's SentFrom, which misses several update kinds.
func userID(u *tgbotapi.Update) (int64, bool) {
	switch {
	case u == nil:
		return 0, false
	case u.Message != nil:
		return msgUserID(u.Message)
	case u.EditedMessage != nil:
		return msgUserID(u.EditedMessage)
	case u.ChannelPost != nil:
		return msgUserID(u.ChannelPost)
	case u.EditedChannelPost != nil:
		return msgUserID(u.EditedChannelPost)
	case u.InlineQuery != nil:
		return userPtrID(u.InlineQuery.From)
	case u.ChosenInlineResult != nil:
		return userPtrID(u.ChosenInlineResult.From)
	case u.CallbackQuery != nil:
		return userPtrID(u.CallbackQuery.From)
	case u.ShippingQuery != nil:
		return userPtrID(u.ShippingQuery.From)
	case u.PreCheckoutQuery != nil:
		return userPtrID(u.PreCheckoutQuery.From)
	case u.PollAnswer != nil:
		// User is a value here, so absence shows up as a zero ID.
		return present(u.PollAnswer.User.ID)
	case u.MyChatMember != nil:
		return present(u.MyChatMember.From.ID)
	case u.ChatMember != nil:
		return present(u.ChatMember.From.ID)
	case u.ChatJoinRequest != nil:
		return present(u.ChatJoinRequest.From.ID)
	}
	return 0, false
}

func msgChatID(m *tgbotapi.Message) (int64, bool) {
	if m == nil || m.Chat == nil {
		return 0, false
	}
	return present(m.Chat.ID)
}

func msgUserID(m *tgbotapi.Message) (int64, bool) {
	if m == nil {
		return 0, false
	}
	return userPtrID(m.From)
}

func userPtrID(p *tgbotapi.User) (int64, bool) {
	if p == nil {
		return 0, false
	}
	return present(p.ID)
}

// present treats a zero ID as absent: Telegram never issues ID 0, so a zero
// can only come from a missing object decoded into a value field, and
// keying on it would lump unrelated updates into one session.
func present(id int64) (int64, bool) {
	return id, id != 0
}

func formatID(id int64) string { return strconv.FormatInt(id, 10) }
