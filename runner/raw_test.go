package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// Telegram's JSON for a message in a forum topic and for a business
// message: tgbotapi v5.5.1 drops message_thread_id, is_topic_message and
// is_forum, and knows no business_message at all.
const (
	topicJSON = `{"update_id":%d,"message":{"message_id":5,"message_thread_id":42,"is_topic_message":true,` +
		`"from":{"id":7,"is_bot":false,"first_name":"Ann"},"date":1700000000,` +
		`"chat":{"id":-1001,"type":"supergroup","title":"Forum","is_forum":true},"text":"in the topic"}}`
	businessJSON = `{"update_id":%d,"business_message":{"business_connection_id":"abc","message_id":9,` +
		`"from":{"id":8,"is_bot":false,"first_name":"Bob"},"date":1700000000,` +
		`"chat":{"id":8,"type":"private","first_name":"Bob"},"text":"for the business"}}`
)

// rawFields are the fields of those updates that tgbotapi drops.
type rawFields struct {
	UpdateID int `json:"update_id"`
	Message  *struct {
		MessageThreadID int  `json:"message_thread_id"`
		IsTopicMessage  bool `json:"is_topic_message"`
		Chat            struct {
			Type    string `json:"type"`
			IsForum bool   `json:"is_forum"`
		} `json:"chat"`
	} `json:"message"`
	BusinessMessage *struct {
		BusinessConnectionID string `json:"business_connection_id"`
		Text                 string `json:"text"`
	} `json:"business_message"`
}

// seen is what a handler saw of one update.
type seen struct {
	u   tgbotapi.Update
	raw json.RawMessage
}

// recordingHandler sends what it sees on the returned channel, which
// holds n updates.
func recordingHandler(n int) (session.Handler[struct{}], <-chan seen) {
	ch := make(chan seen, n)
	return func(c *session.Context[struct{}]) error {
		ch <- seen{c.Update, c.Raw}
		return nil
	}, ch
}

// byID receives n updates from ch, by update id.
func byID(t *testing.T, ch <-chan seen, n int) map[int]seen {
	t.Helper()
	got := make(map[int]seen, n)
	for range n {
		s := receive(t, ch, "an update handled")
		got[s.u.UpdateID] = s
	}
	return got
}

// checkTopic asserts that s is the forum topic message of id: decoded by
// tgbotapi, with the fields it drops in s.raw, which is want byte for byte.
func checkTopic(t *testing.T, s seen, id int, want string) {
	t.Helper()
	assert.Equal(t, want, string(s.raw), "the raw JSON byte for byte")
	require.NotNil(t, s.u.Message, "tgbotapi decodes the message")
	assert.Equal(t, "in the topic", s.u.Message.Text)
	assert.Equal(t, int64(-1001), s.u.Message.Chat.ID)
	var f rawFields
	require.NoError(t, json.Unmarshal(s.raw, &f))
	assert.Equal(t, id, f.UpdateID)
	require.NotNil(t, f.Message)
	assert.Equal(t, 42, f.Message.MessageThreadID)
	assert.True(t, f.Message.IsTopicMessage)
	assert.Equal(t, "supergroup", f.Message.Chat.Type)
	assert.True(t, f.Message.Chat.IsForum)
}

// checkBusiness asserts that s is the business message of id: an update
// kind tgbotapi does not know, handled all the same, with its JSON.
func checkBusiness(t *testing.T, s seen, id int, want string) {
	t.Helper()
	assert.Equal(t, want, string(s.raw), "the raw JSON byte for byte")
	assert.Equal(t, id, s.u.UpdateID)
	assert.Nil(t, s.u.Message, "tgbotapi knows no business_message")
	var f rawFields
	require.NoError(t, json.Unmarshal(s.raw, &f))
	require.NotNil(t, f.BusinessMessage)
	assert.Equal(t, "abc", f.BusinessMessage.BusinessConnectionID)
	assert.Equal(t, "for the business", f.BusinessMessage.Text)
}

// Polling a real tgbotapi client: each handler gets its update's JSON as
// Telegram sent it, the fields and update kinds tgbotapi drops included,
// and an update of a kind tgbotapi does not know is handled too.
func TestPollingGivesTheRawJSON(t *testing.T) {
	srv, bot := fakeBot(t)
	topic, business := sprintf(topicJSON, 3), sprintf(businessJSON, 4)
	require.Equal(t, 3, srv.AddRawUpdate([]byte(topic)))
	require.Equal(t, 4, srv.AddRawUpdate([]byte(business)))
	plain := srv.SendMessage(1, 1, "plain")

	h, ch := recordingHandler(3)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	errs := newErrorLog()
	done := startRun(ctx, bot, byChat(t), h, Options{OnError: errs.onError})
	got := byID(t, ch, 3)
	eventually(t, func() bool { return srv.Pending() == 0 }, "all confirmed")
	cancel()
	require.NoError(t, result(t, done))
	assert.Empty(t, errs.snapshot())

	checkTopic(t, got[3], 3, topic)
	checkBusiness(t, got[4], 4, business)
	p := got[plain]
	require.NotNil(t, p.u.Message)
	var u tgbotapi.Update
	require.NoError(t, json.Unmarshal(p.raw, &u), "SendMessage's raw is tgbotapi's encoding")
	assert.Equal(t, plain, u.UpdateID)
	assert.Equal(t, "plain", u.Message.Text)
}

// Through the webhook, the raw JSON is the request body.
func TestWebhookGivesTheRawJSON(t *testing.T) {
	h, ch := recordingHandler(2)
	errs := newErrorLog()
	w := &Webhook{Secret: secret}
	stop := runWebhook(t, w, h, Options{OnError: errs.onError})
	topic, business := sprintf(topicJSON, 10), sprintf(businessJSON, 11)
	for _, body := range []string{topic, business} {
		assert.Equal(t, http.StatusOK, serve(w, post(context.Background(), secret, []byte(body))))
	}
	got := byID(t, ch, 2)
	require.NoError(t, stop())
	assert.Empty(t, errs.snapshot())

	checkTopic(t, got[10], 10, topic)
	checkBusiness(t, got[11], 11, business)
}

// A custom source may have no JSON: the handler's Raw is then nil.
func TestPutWithoutRawGivesNilRaw(t *testing.T) {
	h, ch := recordingHandler(1)
	src := newSliceSource(chatMsg(1, 1, 1))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startRun(ctx, nil, byChat(t), h, Options{Source: src})
	s := receive(t, ch, "the update handled")
	cancel()
	require.NoError(t, result(t, done))
	assert.Equal(t, 1, s.u.UpdateID)
	assert.Nil(t, s.raw)
}

// sprintf fills an update id into one of the JSON templates above.
func sprintf(format string, id int) string { return fmt.Sprintf(format, id) }

// Polling calls getUpdates with exactly the parameters tgbotapi's
// GetUpdates sends for the same UpdateConfig.
func TestPollingSendsGetUpdatesParameters(t *testing.T) {
	srv, bot := fakeBot(t)
	srv.SendMessage(1, 1, "hi")
	opts := PollingOptions{Timeout: 1, Limit: 5, AllowedUpdates: []string{"message", "business_message"}}
	_, err := bot.GetUpdates(tgbotapi.UpdateConfig{Limit: opts.Limit, Timeout: opts.Timeout, AllowedUpdates: opts.AllowedUpdates})
	require.NoError(t, err)

	h, ch := recordingHandler(1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startRun(ctx, bot, byChat(t), h, Options{Source: NewPolling(bot, opts)})
	receive(t, ch, "the update handled")
	cancel()
	require.NoError(t, result(t, done))

	reqs := srv.Requests()
	require.GreaterOrEqual(t, len(reqs), 3)
	require.Equal(t, "getUpdates", reqs[1].Method)
	require.Equal(t, "getUpdates", reqs[2].Method)
	assert.Equal(t, reqs[1].Params, reqs[2].Params, "Run's first getUpdates is tgbotapi's")
	assert.Equal(t, `["message","business_message"]`, reqs[2].Params.Get("allowed_updates"))
}

// Polling a real tgbotapi client with a session keyed by forum topic and
// one keyed by business connection: each topic and each business chat
// keeps its own session, from what tgbotapi drops.
func TestPollingSessionsPerTopicAndBusinessConnection(t *testing.T) {
	srv, bot := fakeBot(t)
	other := strings.Replace(topicJSON, `"message_thread_id":42`, `"message_thread_id":43`, 1)
	for i, raw := range []string{topicJSON, other, topicJSON, businessJSON, businessJSON} {
		require.Equal(t, i+1, srv.AddRawUpdate([]byte(sprintf(raw, i+1))))
	}
	type count struct{ N int }
	sess, err := session.New(session.Options[count]{Key: func(u session.Update) (string, bool) {
		if k, ok := session.ByBusinessConnection(u); ok {
			return "business " + k, true
		}
		return session.ByChatTopic(u)
	}})
	require.NoError(t, err)
	seenKeys := make(chan string, 5)
	h := func(c *session.Context[count]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.N++
		key, _ := c.SessionKey()
		seenKeys <- fmt.Sprintf("%s=%d", key, s.N)
		return nil
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := startRun(ctx, bot, sess, h, Options{})
	var got []string
	for range 5 {
		got = append(got, receive(t, seenKeys, "an update handled"))
	}
	cancel()
	require.NoError(t, result(t, done))
	assert.ElementsMatch(t, []string{"-1001/42=1", "-1001/43=1", "-1001/42=2", "business abc/8=1", "business abc/8=2"}, got)
}
