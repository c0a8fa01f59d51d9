package telegramtest_test

import (
	"encoding/json"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/telegramtest"
)

// rawResult calls getUpdates and returns each update's JSON as served.
func rawResult(t *testing.T, bot *tgbotapi.BotAPI, offset int) []json.RawMessage {
	t.Helper()
	params := tgbotapi.Params{}
	params.AddNonZero("offset", offset)
	resp, err := bot.MakeRequest("getUpdates", params)
	require.NoError(t, err)
	var raws []json.RawMessage
	require.NoError(t, json.Unmarshal(resp.Result, &raws))
	return raws
}

// AddRawUpdate serves Telegram's JSON byte for byte, with the fields and
// update kinds tgbotapi v5.5.1 does not know, in update_id order with the
// updates of AddUpdate, and picks the id only where it is missing or 0.
func TestAddRawUpdateServesTheJSONByteForByte(t *testing.T) {
	srv, bot := newBot(t, telegramtest.WithFirstUpdateID(1))

	topic := `{"update_id":10, "message":{"message_id":5,"message_thread_id":42,"is_topic_message":true,` +
		`"date":1700000000,"chat":{"id":-1001,"type":"supergroup","title":"Forum","is_forum":true},"text":"hi"}}`
	business := `{"business_message":{"business_connection_id":"abc","message_id":1,"date":1700000000,"chat":{"id":7,"type":"private"},"text":"yo"}}`
	assert.Equal(t, 10, srv.AddRawUpdate([]byte(topic)))
	assert.Equal(t, 11, srv.AddRawUpdate([]byte(business)), "a missing update_id picks the next one")
	assert.Equal(t, 12, srv.AddRawUpdate([]byte(" {  \"update_id\" : 0 ,\"x\":{\"update_id\":0}}")), "0 picks the next one")
	assert.Equal(t, 13, srv.AddRawUpdate([]byte(`{}`)))
	assert.Equal(t, 14, srv.SendMessage(1, 1, "plain"), "AddUpdate goes on from there")
	assert.Equal(t, 9, srv.AddRawUpdate([]byte(`{"update_id":9,"extra":[1, 2]}`)), "out of order above the confirmed offset")

	raws := rawResult(t, bot, 0)
	require.Len(t, raws, 6)
	assert.Equal(t, `{"update_id":9,"extra":[1, 2]}`, string(raws[0]))
	assert.Equal(t, topic, string(raws[1]))
	assert.Equal(t, `{"update_id":11,`+business[1:], string(raws[2]))
	assert.Equal(t, "{  \"update_id\" : 12 ,\"x\":{\"update_id\":0}}", string(raws[3]), "only the top-level id changes; the array drops the leading space")
	assert.Equal(t, `{"update_id":13}`, string(raws[4]))
	var plain tgbotapi.Update
	require.NoError(t, json.Unmarshal(raws[5], &plain))
	assert.Equal(t, 14, plain.UpdateID)
	assert.Equal(t, "plain", plain.Message.Text, "AddUpdate's raw is tgbotapi's encoding")

	// tgbotapi decodes them all; the topic message's chat is remembered.
	us, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)
	require.Len(t, us, 6)
	assert.Equal(t, 11, us[2].UpdateID)
	assert.Nil(t, us[2].Message, "tgbotapi does not know business_message")
	chat, err := bot.GetChat(tgbotapi.ChatInfoConfig{ChatConfig: tgbotapi.ChatConfig{ChatID: -1001}})
	require.NoError(t, err)
	assert.Equal(t, "supergroup", chat.Type)

	_ = rawResult(t, bot, 15)
	assert.Equal(t, 0, srv.Pending())
}

// AddRawUpdate copies its argument.
func TestAddRawUpdateCopies(t *testing.T) {
	srv, bot := newBot(t)
	raw := []byte(`{"update_id":3,"k":"a"}`)
	srv.AddRawUpdate(raw)
	raw[len(raw)-3] = 'b'
	raws := rawResult(t, bot, 0)
	require.Len(t, raws, 1)
	assert.Equal(t, `{"update_id":3,"k":"a"}`, string(raws[0]))
}

// AddRawUpdate panics with session.ErrConfig on JSON that is no update,
// and on update ids AddUpdate refuses, leaving the server as it was.
func TestAddRawUpdateMistakesPanicWithErrConfig(t *testing.T) {
	srv, bot := newBot(t, telegramtest.WithFirstUpdateID(1))
	require.Equal(t, 5, srv.AddRawUpdate([]byte(`{"update_id":5}`)))
	cases := []struct {
		name, raw, want string
	}{
		{"not JSON", `{"update_id":`, "AddRawUpdate:"},
		{"not an object", `[1]`, "AddRawUpdate:"},
		{"null", `null`, "not a JSON object"},
		{"a known field of the wrong type", `{"message":"text"}`, "AddRawUpdate:"},
		{"a negative id", `{"update_id":-3}`, "AddRawUpdate: UpdateID -3 is negative"},
		{"a pending id", `{"update_id":5}`, "AddRawUpdate: UpdateID 5 is already pending"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := panicOf(t, func() { srv.AddRawUpdate([]byte(tc.raw)) })
			assert.ErrorIs(t, err, session.ErrConfig)
			assert.ErrorContains(t, err, tc.want)
		})
	}
	assert.Equal(t, 1, srv.Pending(), "no update was queued")

	_ = rawResult(t, bot, 6)
	err := panicOf(t, func() { srv.AddRawUpdate([]byte(`{"update_id":4}`)) })
	assert.ErrorIs(t, err, session.ErrConfig)
	assert.ErrorContains(t, err, "AddRawUpdate: UpdateID 4 is below the confirmed offset 6")
	assert.Equal(t, 6, srv.AddRawUpdate([]byte(`{"update_id":0}`)), "a zero id still picks the next one")
}

// panicOf runs f and returns the error it panicked with.
func panicOf(t *testing.T, f func()) (err error) {
	t.Helper()
	defer func() {
		r := recover()
		require.NotNil(t, r, "no panic")
		var ok bool
		err, ok = r.(error)
		require.True(t, ok, "panicked with %T %v, not an error", r, r)
	}()
	f()
	return nil
}
