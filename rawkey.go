package session

import "encoding/json"

// Key functions that need what tgbotapi v5.5.1 drops: forum topics
// (message_thread_id, is_topic_message) and business connections. They
// read [Update.Raw]; for an update built by hand without it they fall back
// as their docs say.

// ByChatTopic keys sessions by chat and forum topic, as
// "<chatID>/<threadID>", so each topic of a forum supergroup (and each
// topic of a private chat with topics) has its own session. A message
// outside any topic (the General topic, an ordinary group) is keyed by its
// chat alone, as [ByChat] keys it. Replies in an ordinary group also carry
// a message_thread_id (the thread of the reply); only is_topic_message
// makes it a topic, so those stay in the chat's session.
func ByChatTopic(u Update) (string, bool) {
	chat, ok := ByChat(u)
	if !ok {
		return "", false
	}
	if thread, ok := topicOf(u.Raw); ok {
		return chat + "/" + formatID(thread), true
	}
	return chat, true
}

// ByUserInTopic keys sessions by user, chat and forum topic, as
// "<userID>/<chatID>/<threadID>" (or "<userID>/<chatID>" outside a
// topic): each member's own state in each topic.
func ByUserInTopic(u Update) (string, bool) {
	inChat, ok := ByUserInChat(u)
	if !ok {
		return "", false
	}
	if thread, ok := topicOf(u.Raw); ok {
		return inChat + "/" + formatID(thread), true
	}
	return inChat, true
}

// ByBusinessConnection keys sessions by business connection and chat, as
// "<connectionID>/<chatID>", for bots that answer on behalf of business
// accounts: each customer chat of each connected account has its own
// session. Updates without a business connection have no session: keying
// them by chat alone would mix a business account's chats with the bot's
// own.
func ByBusinessConnection(u Update) (string, bool) {
	var r rawUpdate
	if len(u.Raw) == 0 || json.Unmarshal(u.Raw, &r) != nil {
		return "", false
	}
	for _, m := range r.messages() {
		if m != nil && m.BusinessConnectionID != "" && m.Chat.ID != 0 {
			return m.BusinessConnectionID + "/" + formatID(m.Chat.ID), true
		}
	}
	if c := r.BusinessConnection; c != nil && c.ID != "" && c.User.ID != 0 {
		return c.ID + "/" + formatID(c.User.ID), true
	}
	return "", false
}

// rawUpdate is what the key functions read from an update's JSON.
type rawUpdate struct {
	Message               *rawMessage `json:"message"`
	EditedMessage         *rawMessage `json:"edited_message"`
	ChannelPost           *rawMessage `json:"channel_post"`
	EditedChannelPost     *rawMessage `json:"edited_channel_post"`
	BusinessMessage       *rawMessage `json:"business_message"`
	EditedBusinessMessage *rawMessage `json:"edited_business_message"`
	DeletedBusiness       *rawMessage `json:"deleted_business_messages"`
	CallbackQuery         *struct {
		Message *rawMessage `json:"message"`
	} `json:"callback_query"`
	MessageReaction *struct {
		Chat rawChatRef `json:"chat"`
	} `json:"message_reaction"`
	MessageReactionCount *struct {
		Chat rawChatRef `json:"chat"`
	} `json:"message_reaction_count"`
	ChatBoost *struct {
		Chat rawChatRef `json:"chat"`
	} `json:"chat_boost"`
	RemovedChatBoost *struct {
		Chat rawChatRef `json:"chat"`
	} `json:"removed_chat_boost"`
	BusinessConnection *struct {
		ID   string `json:"id"`
		User struct {
			ID int64 `json:"id"`
		} `json:"user"`
	} `json:"business_connection"`
}

type rawMessage struct {
	ThreadID             int64      `json:"message_thread_id"`
	IsTopic              bool       `json:"is_topic_message"`
	BusinessConnectionID string     `json:"business_connection_id"`
	Chat                 rawChatRef `json:"chat"`
}

type rawChatRef struct {
	ID int64 `json:"id"`
}

// messages lists the messages an update carries, in the order tgbotapi's
// fields are looked at.
func (r *rawUpdate) messages() []*rawMessage {
	ms := []*rawMessage{r.Message, r.EditedMessage, r.ChannelPost, r.EditedChannelPost, r.BusinessMessage, r.EditedBusinessMessage, r.DeletedBusiness}
	if r.CallbackQuery != nil {
		ms = append(ms, r.CallbackQuery.Message)
	}
	return ms
}

// topicOf returns the forum topic of the update's message, if it is a
// topic message.
func topicOf(raw json.RawMessage) (int64, bool) {
	var r rawUpdate
	if len(raw) == 0 || json.Unmarshal(raw, &r) != nil {
		return 0, false
	}
	for _, m := range r.messages() {
		if m != nil {
			if m.IsTopic && m.ThreadID != 0 {
				return m.ThreadID, true
			}
			return 0, false // the first message found is the update's
		}
	}
	return 0, false
}

// rawChat finds the chat of an update kind tgbotapi does not know
// (business messages, reactions, boosts) in its JSON.
func rawChat(raw json.RawMessage) (int64, bool) {
	var r rawUpdate
	if len(raw) == 0 || json.Unmarshal(raw, &r) != nil {
		return 0, false
	}
	for _, m := range []*rawMessage{r.BusinessMessage, r.EditedBusinessMessage, r.DeletedBusiness} {
		if m != nil {
			return present(m.Chat.ID)
		}
	}
	for _, c := range []*struct {
		Chat rawChatRef `json:"chat"`
	}{r.MessageReaction, r.MessageReactionCount, r.ChatBoost, r.RemovedChatBoost} {
		if c != nil {
			return present(c.Chat.ID)
		}
	}
	return 0, false
}
