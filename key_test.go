package session

import (
	"context"
	"encoding/json"
	"strconv"
	"strings"
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
					require.NotPanics(t, func() { key, ok = f.fn(Update{Update: &c.update}) })
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
				require.NotPanics(t, func() { _, ok = fn(Update{Update: &u}) })
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
		if _, ok := ByChat(Update{Update: &u}); !ok {
			b.Fatal("no key")
		}
	}
}

func TestKeyFuncsNilUpdate(t *testing.T) {
	for name, fn := range map[string]KeyFunc{"ByChat": ByChat, "ByUser": ByUser, "ByUserInChat": ByUserInChat} {
		var ok bool
		require.NotPanics(t, func() { _, ok = fn(Update{}) }, name)
		assert.False(t, ok, name)
	}
}

// decodeRaw decodes an update's JSON as the runner does: tgbotapi's
// decoding and the raw bytes.
func decodeRaw(t *testing.T, raw string) Update {
	t.Helper()
	var u tgbotapi.Update
	require.NoError(t, json.Unmarshal([]byte(raw), &u))
	return Update{Update: &u, Raw: json.RawMessage(raw)}
}

// Updates built from Telegram's documented JSON, with the fields tgbotapi
// v5.5.1 drops.
const (
	rawTopicMessage = `{"update_id":1,"message":{"message_id":5,"message_thread_id":42,"is_topic_message":true,
		"from":{"id":7,"is_bot":false,"first_name":"A"},"chat":{"id":-1001,"type":"supergroup","is_forum":true},"date":1,"text":"hi"}}`
	rawGeneralTopic = `{"update_id":2,"message":{"message_id":6,
		"from":{"id":7,"is_bot":false,"first_name":"A"},"chat":{"id":-1001,"type":"supergroup","is_forum":true},"date":1,"text":"hi"}}`
	rawReplyThread = `{"update_id":3,"message":{"message_id":8,"message_thread_id":6,
		"from":{"id":7,"is_bot":false,"first_name":"A"},"chat":{"id":-2002,"type":"supergroup"},"date":1,"text":"re"}}`
	rawTopicButton = `{"update_id":4,"callback_query":{"id":"q","from":{"id":7,"is_bot":false,"first_name":"A"},"data":"x",
		"message":{"message_id":9,"message_thread_id":42,"is_topic_message":true,"chat":{"id":-1001,"type":"supergroup","is_forum":true},"date":1}}}`
	rawBusinessMessage = `{"update_id":5,"business_message":{"message_id":1,"business_connection_id":"abc",
		"from":{"id":9,"is_bot":false,"first_name":"C"},"chat":{"id":9,"type":"private"},"date":1,"text":"hello"}}`
	rawReaction = `{"update_id":6,"message_reaction":{"chat":{"id":-3003,"type":"group"},"message_id":1,"date":1,"old_reaction":[],"new_reaction":[]}}`
)

func TestKeyFuncsReadTheRawUpdate(t *testing.T) {
	cases := []struct {
		name, raw              string
		chat, topic, userTopic string
		business               string
	}{
		{"topic message", rawTopicMessage, "-1001", "-1001/42", "7/-1001/42", ""},
		{"general topic", rawGeneralTopic, "-1001", "-1001", "7/-1001", ""},
		{"reply thread in a group is not a topic", rawReplyThread, "-2002", "-2002", "7/-2002", ""},
		{"button under a topic message", rawTopicButton, "-1001", "-1001/42", "7/-1001/42", ""},
		{"business message, a kind tgbotapi does not know", rawBusinessMessage, "9", "9", "", "abc/9"},
		{"reaction, a kind tgbotapi does not know", rawReaction, "-3003", "-3003", "", ""},
	}
	check := func(t *testing.T, what string, f KeyFunc, u Update, want string) {
		t.Helper()
		got, ok := f(u)
		if want == "" {
			assert.False(t, ok, "%s: no key, got %q", what, got)
			return
		}
		assert.True(t, ok, what)
		assert.Equal(t, want, got, what)
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			u := decodeRaw(t, c.raw)
			check(t, "ByChat", ByChat, u, c.chat)
			check(t, "ByChatTopic", ByChatTopic, u, c.topic)
			check(t, "ByUserInTopic", ByUserInTopic, u, c.userTopic)
			check(t, "ByBusinessConnection", ByBusinessConnection, u, c.business)
		})
	}
	t.Run("built by hand, without raw JSON", func(t *testing.T) {
		u := Update{Update: &tgbotapi.Update{Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 5}, From: &tgbotapi.User{ID: 6}}}}
		check(t, "ByChatTopic", ByChatTopic, u, "5")
		check(t, "ByUserInTopic", ByUserInTopic, u, "6/5")
		check(t, "ByBusinessConnection", ByBusinessConnection, u, "")
		check(t, "ByChat of nothing", ByChat, Update{}, "")
		check(t, "ByChatTopic of junk", ByChatTopic, Update{Update: &tgbotapi.Update{}, Raw: json.RawMessage(`{"message":`)}, "")
	})
}

// Two topics of one forum keep two sessions; the chat's other messages a
// third, under ByChatTopic.
func TestScenarioForumTopicsKeepTheirOwnSessions(t *testing.T) {
	sess := mustNew(t, Options[counter]{Key: ByChatTopic})
	counts := map[string]int{}
	h := sess.Middleware(func(c *Context[counter]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count++
		key, _ := c.SessionKey()
		counts[key] = s.Count
		return nil
	})
	other := strings.Replace(rawTopicMessage, `"message_thread_id":42`, `"message_thread_id":43`, 1)
	for _, raw := range []string{rawTopicMessage, other, rawTopicMessage, rawGeneralTopic} {
		u := decodeRaw(t, raw)
		c := NewContext[counter](context.Background(), nil, *u.Update)
		c.Raw = u.Raw
		require.NoError(t, h(c))
	}
	assert.Equal(t, map[string]int{"-1001/42": 2, "-1001/43": 1, "-1001": 1}, counts)
}
