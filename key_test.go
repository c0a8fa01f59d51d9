package session

import (
	"strconv"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const (
	testUserID = int64(123456789)
	testChatID = int64(-1001234567890) // a supergroup: negative, with the -100 prefix
)

func testUser() *tgbotapi.User { return &tgbotapi.User{ID: testUserID} }
func testChat() *tgbotapi.Chat { return &tgbotapi.Chat{ID: testChatID} }

func testMessage() *tgbotapi.Message {
	return &tgbotapi.Message{MessageID: 1, From: testUser(), Chat: testChat()}
}

// keyCase is one update kind with the key each KeyFunc must produce for it;
// an empty string means the KeyFunc must report ok == false.
type keyCase struct {
	name       string
	update     tgbotapi.Update
	chat       string
	user       string
	userInChat string
}

func keyCases() []keyCase {
	const (
		chat = "-1001234567890"
		user = "123456789"
		both = user + "/" + chat
	)
	member := &tgbotapi.ChatMemberUpdated{Chat: *testChat(), From: *testUser()}
	return []keyCase{
		{name: "message", update: tgbotapi.Update{Message: testMessage()}, chat: chat, user: user, userInChat: both},
		{name: "edited message", update: tgbotapi.Update{EditedMessage: testMessage()}, chat: chat, user: user, userInChat: both},
		{name: "channel post", update: tgbotapi.Update{ChannelPost: testMessage()}, chat: chat, user: user, userInChat: both},
		{
			name:   "channel post without sender",
			update: tgbotapi.Update{ChannelPost: &tgbotapi.Message{Chat: testChat()}},
			chat:   chat,
		},
		{name: "edited channel post", update: tgbotapi.Update{EditedChannelPost: testMessage()}, chat: chat, user: user, userInChat: both},
		{
			name:   "callback query with message",
			update: tgbotapi.Update{CallbackQuery: &tgbotapi.CallbackQuery{ID: "cb", From: testUser(), Message: testMessage()}},
			chat:   chat, user: user, userInChat: both,
		},
		{
			name:   "callback query without message (inline)",
			update: tgbotapi.Update{CallbackQuery: &tgbotapi.CallbackQuery{ID: "cb", From: testUser(), InlineMessageID: "im"}},
			user:   user,
		},
		{
			name:   "callback query with message without chat",
			update: tgbotapi.Update{CallbackQuery: &tgbotapi.CallbackQuery{ID: "cb", From: testUser(), Message: &tgbotapi.Message{}}},
			user:   user,
		},
		{name: "callback query without sender", update: tgbotapi.Update{CallbackQuery: &tgbotapi.CallbackQuery{Message: testMessage()}}, chat: chat},
		{name: "inline query", update: tgbotapi.Update{InlineQuery: &tgbotapi.InlineQuery{ID: "iq", From: testUser()}}, user: user},
		{name: "inline query without sender", update: tgbotapi.Update{InlineQuery: &tgbotapi.InlineQuery{ID: "iq"}}},
		{name: "chosen inline result", update: tgbotapi.Update{ChosenInlineResult: &tgbotapi.ChosenInlineResult{ResultID: "r", From: testUser()}}, user: user},
		{name: "chosen inline result without sender", update: tgbotapi.Update{ChosenInlineResult: &tgbotapi.ChosenInlineResult{ResultID: "r"}}},
		{name: "shipping query", update: tgbotapi.Update{ShippingQuery: &tgbotapi.ShippingQuery{ID: "sq", From: testUser()}}, user: user},
		{name: "shipping query without sender", update: tgbotapi.Update{ShippingQuery: &tgbotapi.ShippingQuery{ID: "sq"}}},
		{name: "pre-checkout query", update: tgbotapi.Update{PreCheckoutQuery: &tgbotapi.PreCheckoutQuery{ID: "pq", From: testUser()}}, user: user},
		{name: "pre-checkout query without sender", update: tgbotapi.Update{PreCheckoutQuery: &tgbotapi.PreCheckoutQuery{ID: "pq"}}},
		{name: "poll", update: tgbotapi.Update{Poll: &tgbotapi.Poll{ID: "p"}}},
		{name: "poll answer", update: tgbotapi.Update{PollAnswer: &tgbotapi.PollAnswer{PollID: "p", User: *testUser()}}, user: user},
		{name: "poll answer with zero user", update: tgbotapi.Update{PollAnswer: &tgbotapi.PollAnswer{PollID: "p"}}},
		{name: "my_chat_member", update: tgbotapi.Update{MyChatMember: member}, chat: chat, user: user, userInChat: both},
		{name: "chat_member", update: tgbotapi.Update{ChatMember: member}, chat: chat, user: user, userInChat: both},
		{name: "chat_member with zero ids", update: tgbotapi.Update{ChatMember: &tgbotapi.ChatMemberUpdated{}}},
		{
			name:   "chat_join_request",
			update: tgbotapi.Update{ChatJoinRequest: &tgbotapi.ChatJoinRequest{Chat: *testChat(), From: *testUser()}},
			chat:   chat, user: user, userInChat: both,
		},
		{name: "chat_join_request with zero ids", update: tgbotapi.Update{ChatJoinRequest: &tgbotapi.ChatJoinRequest{}}},
		{name: "empty update", update: tgbotapi.Update{UpdateID: 7}},
		{name: "message with nil chat", update: tgbotapi.Update{Message: &tgbotapi.Message{From: testUser()}}, user: user},
		{name: "message with nil from", update: tgbotapi.Update{Message: &tgbotapi.Message{Chat: testChat()}}, chat: chat},
		{name: "message with nil chat and nil from", update: tgbotapi.Update{Message: &tgbotapi.Message{}}},
		{
			name:   "message with zero ids",
			update: tgbotapi.Update{Message: &tgbotapi.Message{From: &tgbotapi.User{}, Chat: &tgbotapi.Chat{}}},
		},
		{
			name:   "private chat",
			update: tgbotapi.Update{Message: &tgbotapi.Message{From: testUser(), Chat: &tgbotapi.Chat{ID: testUserID, Type: "private"}}},
			chat:   user, user: user, userInChat: user + "/" + user,
		},
		{
			name:   "basic group",
			update: tgbotapi.Update{EditedMessage: &tgbotapi.Message{From: &tgbotapi.User{ID: 7}, Chat: &tgbotapi.Chat{ID: -4001}}},
			chat:   "-4001", user: "7", userInChat: "7/-4001",
		},
	}
}

func TestKeyFuncs(t *testing.T) {
	funcs := []struct {
		name string
		fn   KeyFunc
		want func(keyCase) string
	}{
		{"ByChat", ByChat, func(c keyCase) string { return c.chat }},
		{"ByUser", ByUser, func(c keyCase) string { return c.user }},
		{"ByUserInChat", ByUserInChat, func(c keyCase) string { return c.userInChat }},
	}
	for _, f := range funcs {
		t.Run(f.name, func(t *testing.T) {
			for _, c := range keyCases() {
				t.Run(c.name, func(t *testing.T) {
					want := f.want(c)
					var (
						key string
						ok  bool
					)
					require.NotPanics(t, func() { key, ok = f.fn(&c.update) })
					if want == "" {
						assert.False(t, ok, "expected no session")
						assert.Empty(t, key)
						return
					}
					assert.True(t, ok, "expected a session")
					assert.Equal(t, want, key)
				})
			}
		})
	}
}

// TestKeyFuncNilSafety sets every pointer field of Update, one at a time, to
// an otherwise empty value: no KeyFunc may panic or invent a key.
func TestKeyFuncNilSafety(t *testing.T) {
	updates := map[string]tgbotapi.Update{
		"Message":            {Message: &tgbotapi.Message{}},
		"EditedMessage":      {EditedMessage: &tgbotapi.Message{}},
		"ChannelPost":        {ChannelPost: &tgbotapi.Message{}},
		"EditedChannelPost":  {EditedChannelPost: &tgbotapi.Message{}},
		"InlineQuery":        {InlineQuery: &tgbotapi.InlineQuery{}},
		"ChosenInlineResult": {ChosenInlineResult: &tgbotapi.ChosenInlineResult{}},
		"CallbackQuery":      {CallbackQuery: &tgbotapi.CallbackQuery{}},
		"ShippingQuery":      {ShippingQuery: &tgbotapi.ShippingQuery{}},
		"PreCheckoutQuery":   {PreCheckoutQuery: &tgbotapi.PreCheckoutQuery{}},
		"Poll":               {Poll: &tgbotapi.Poll{}},
		"PollAnswer":         {PollAnswer: &tgbotapi.PollAnswer{}},
		"MyChatMember":       {MyChatMember: &tgbotapi.ChatMemberUpdated{}},
		"ChatMember":         {ChatMember: &tgbotapi.ChatMemberUpdated{}},
		"ChatJoinRequest":    {ChatJoinRequest: &tgbotapi.ChatJoinRequest{}},
	}
	for name, u := range updates {
		for fname, fn := range map[string]KeyFunc{"ByChat": ByChat, "ByUser": ByUser, "ByUserInChat": ByUserInChat} {
			t.Run(name+"/"+fname, func(t *testing.T) {
				var ok bool
				require.NotPanics(t, func() { _, ok = fn(&u) })
				assert.False(t, ok)
			})
		}
	}
}

func TestFormatID(t *testing.T) {
	ids := []int64{
		0, 1, -1, 9, 10, 99, 100, -100, 42, 123456789, 7000000000,
		testChatID, -1001000000000, -1009999999999, -4001,
		1<<31 - 1, -1 << 31, 1<<63 - 1, -1 << 63,
	}
	for i := int64(0); i < 10000; i++ {
		ids = append(ids, i*7919, -1001000000000-i*104729)
	}
	for _, id := range ids {
		if got, want := formatID(id), strconv.FormatInt(id, 10); got != want {
			assert.Equal(t, want, got, "id %d", id)
		}
	}
}

func BenchmarkByChat(b *testing.B) {
	u := tgbotapi.Update{Message: testMessage()}
	b.ReportAllocs()
	for i := 0; i < b.N; i++ {
		if _, ok := ByChat(&u); !ok {
			b.Fatal("no key")
		}
	}
}

func TestKeyFuncsNilUpdate(t *testing.T) {
	for name, fn := range map[string]KeyFunc{"ByChat": ByChat, "ByUser": ByUser, "ByUserInChat": ByUserInChat} {
		var ok bool
		require.NotPanics(t, func() { _, ok = fn(nil) }, name)
		assert.False(t, ok, name)
	}
}
