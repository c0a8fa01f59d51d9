package telegramtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// signup is a small sign-up bot: it asks the user's name, then whether
// they want pizza, with buttons, and answers the press.
type signup struct {
	Name string
}

func signupBot(c *session.Context[signup]) error {
	s, err := c.Session()
	if err != nil {
		return err
	}
	if q := c.Update.CallbackQuery; q != nil {
		if _, err := c.Bot.Request(tgbotapi.NewCallback(q.ID, "Great, "+s.Name+"!")); err != nil {
			return err
		}
		_, err := c.Bot.Send(tgbotapi.NewMessage(q.Message.Chat.ID, "Ordered: "+q.Data+"."))
		return err
	}
	m := c.Update.Message
	if m == nil || m.Text == "" { // no service messages
		return nil
	}
	switch {
	case m.Command() == "start":
		_, err = c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, "Hi! What's your name?"))
	case s.Name == "":
		s.Name = m.Text
		ask := tgbotapi.NewMessage(m.Chat.ID, "Pizza tonight, "+s.Name+"?")
		ask.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
			tgbotapi.NewInlineKeyboardButtonData("Yes", "pizza"),
			tgbotapi.NewInlineKeyboardButtonData("No", "none"),
		))
		_, err = c.Bot.Send(ask)
	default:
		_, err = c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, "You are "+s.Name+"."))
	}
	return err
}

// startBot runs signupBot with runner.Run against srv until the test
// ends: polling, or with webhook set, behind a runner.Webhook that the
// bot registers with setWebhook through the fake.
func startBot(t *testing.T, srv *telegramtest.Server, webhook bool) {
	t.Helper()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	require.NoError(t, err)
	sess, err := session.New(session.Options[signup]{})
	require.NoError(t, err)
	opts := runner.Options{}
	if webhook {
		wh := &runner.Webhook{Secret: "s3cret"}
		hs := httptest.NewServer(wh)
		t.Cleanup(hs.Close)
		require.NoError(t, runner.SetWebhook(bot, hs.URL, "s3cret", runner.SetWebhookOptions{}))
		opts.Source = wh
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx, bot, sess, signupBot, opts) }()
	t.Cleanup(func() { cancel(); assert.NoError(t, <-done) })
}

// A conversation reads like the chat it checks, with polling and with a
// webhook alike: each step returns once the bot acknowledged its update.
func TestConversation(t *testing.T) {
	for _, webhook := range []bool{false, true} {
		t.Run(map[bool]string{false: "polling", true: "webhook"}[webhook], func(t *testing.T) {
			srv := telegramtest.NewServer()
			t.Cleanup(srv.Close)
			startBot(t, srv, webhook)

			alice := srv.Conversation(t, 101, 101)
			alice.Send("/start").Expect("Hi! What's your name?")
			alice.Send("Alice").Expect("Pizza tonight, Alice?").ExpectButtons("Yes", "No")
			turn := alice.Press("Yes").ExpectAnswer("Great, Alice!").Expect("Ordered: pizza.")
			assert.Equal(t, "Yes", turn.Button)
			alice.Press("none") // by callback data
			alice.Expect("Ordered: none.")
			alice.Send("hello").Expect("You are Alice.")

			bob := srv.Conversation(t, -5, 202) // a group
			bob.Send("/start@" + telegramtest.BotUserName).Expect("Hi! What's your name?")
			assert.Equal(t, []string{"Hi! What's your name?"}, bob.Last().Texts())
			assert.Equal(t, int64(-5), bob.Last().Replies[0].ChatID)

			if webhook {
				for _, d := range srv.Deliveries() {
					assert.True(t, d.Acknowledged, "update %d", d.UpdateID)
				}
				assert.Len(t, srv.Deliveries(), 6)
			}
		})
	}
}

// A Chat's steps report instead of failing a test: a missing button wraps
// ErrNoButton, and a bot that does not run makes the wait end with ctx.
func TestChatErrors(t *testing.T) {
	srv := telegramtest.NewServer()
	t.Cleanup(srv.Close)
	chat := srv.Chat(1, 1)
	_, err := chat.Press(context.Background(), "Yes")
	assert.ErrorIs(t, err, telegramtest.ErrNoButton)

	ctx, cancel := context.WithTimeout(context.Background(), 20_000_000) // 20ms: no bot polls
	defer cancel()
	turn, err := chat.Send(ctx, "anyone?")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.NotZero(t, turn.UpdateID)
	assert.Empty(t, turn.Replies)
}

// decode reads one update's JSON into a generic map.
func decode(t *testing.T, raw []byte) map[string]any {
	t.Helper()
	var m map[string]any
	require.NoError(t, json.Unmarshal(raw, &m))
	return m
}

// rawUpdate is raw as a key function sees it.
func rawUpdate(t *testing.T, raw []byte) session.Update {
	t.Helper()
	var u tgbotapi.Update
	require.NoError(t, json.Unmarshal(raw, &u))
	return session.Update{Update: &u, Raw: raw}
}

// field follows a path of keys in decoded JSON.
func field(v any, path ...string) any {
	for _, k := range path {
		m, _ := v.(map[string]any)
		v = m[k]
	}
	return v
}

// The builders produce Telegram's documented JSON, with the fields
// tgbotapi drops.
func TestBuilders(t *testing.T) {
	srv := telegramtest.NewServer()
	t.Cleanup(srv.Close)

	t.Run("command entities", func(t *testing.T) {
		for text, want := range map[string][]tgbotapi.MessageEntity{
			"/start":                  {{Type: "bot_command", Offset: 0, Length: 6}},
			"/start@test_bot payload": {{Type: "bot_command", Offset: 0, Length: 15}},
			"🍕 /order now /help":      {{Type: "bot_command", Offset: 3, Length: 6}, {Type: "bot_command", Offset: 14, Length: 5}},
			"a/b /":                   nil,
			"hello":                   nil,
		} {
			assert.Equal(t, want, telegramtest.CommandEntities(text), text)
		}
		raw := srv.Chat(1, 1).MessageUpdate("/start@test_bot hi")
		var u tgbotapi.Update
		require.NoError(t, json.Unmarshal(raw, &u))
		assert.True(t, u.Message.IsCommand())
		assert.Equal(t, "start", u.Message.Command())
		assert.Equal(t, "hi", u.Message.CommandArguments())
		assert.Equal(t, "private", u.Message.Chat.Type)
		assert.Nil(t, field(decode(t, raw), "update_id"), "the server numbers it when queued")
	})

	t.Run("forum topic", func(t *testing.T) {
		raw := srv.Chat(-1001234567890, 7).InTopic(42).MessageUpdate("in the topic")
		m := decode(t, raw)
		assert.Equal(t, 42.0, field(m, "message", "message_thread_id"))
		assert.Equal(t, true, field(m, "message", "is_topic_message"))
		assert.Equal(t, "supergroup", field(m, "message", "chat", "type"))
		assert.Equal(t, true, field(m, "message", "chat", "is_forum"))
		k, ok := session.ByChatTopic(rawUpdate(t, raw))
		assert.True(t, ok)
		assert.Equal(t, "-1001234567890/42", k)
	})

	t.Run("business message", func(t *testing.T) {
		raw := srv.Chat(7, 7).InBusiness("conn-1").MessageUpdate("hello shop")
		m := decode(t, raw)
		assert.Nil(t, m["message"])
		assert.Equal(t, "conn-1", field(m, "business_message", "business_connection_id"))
		assert.Equal(t, "hello shop", field(m, "business_message", "text"))
		k, ok := session.ByBusinessConnection(rawUpdate(t, raw))
		assert.True(t, ok)
		assert.Contains(t, k, "conn-1")
	})

	t.Run("edited message", func(t *testing.T) {
		m := decode(t, srv.Chat(1, 1).EditUpdate(9, "fixed"))
		assert.Equal(t, 9.0, field(m, "edited_message", "message_id"))
		assert.Equal(t, "fixed", field(m, "edited_message", "text"))
		assert.NotNil(t, field(m, "edited_message", "edit_date"))
	})

	t.Run("migration", func(t *testing.T) {
		to, from := srv.Chat(-5, 7).MigrationUpdates(-1005)
		var ut, uf tgbotapi.Update
		require.NoError(t, json.Unmarshal(to, &ut))
		require.NoError(t, json.Unmarshal(from, &uf))
		assert.Equal(t, int64(-5), ut.Message.Chat.ID)
		assert.Equal(t, int64(-1005), ut.Message.MigrateToChatID)
		assert.Equal(t, int64(-1005), uf.Message.Chat.ID)
		assert.Equal(t, "supergroup", uf.Message.Chat.Type)
		assert.Equal(t, int64(-5), uf.Message.MigrateFromChatID)
	})

	t.Run("press", func(t *testing.T) {
		bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("t", srv.Endpoint())
		require.NoError(t, err)
		ask := tgbotapi.NewMessage(3, "Size?")
		ask.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
			tgbotapi.NewInlineKeyboardButtonData("Small", "size:s"),
			tgbotapi.NewInlineKeyboardButtonData("Large", "size:l"),
		))
		sent, err := bot.Send(ask)
		require.NoError(t, err)
		for _, button := range []string{"Large", "size:l"} {
			raw, label, err := srv.Chat(3, 3).PressUpdate(button)
			require.NoError(t, err)
			assert.Equal(t, "Large", label)
			var u tgbotapi.Update
			require.NoError(t, json.Unmarshal(raw, &u))
			assert.Equal(t, "size:l", u.CallbackQuery.Data)
			assert.Equal(t, sent.MessageID, u.CallbackQuery.Message.MessageID)
			assert.Equal(t, int64(3), u.CallbackQuery.From.ID)
			assert.True(t, strings.HasPrefix(u.CallbackQuery.ID, "cbq-"))
		}
		_, _, err = srv.Chat(3, 3).PressUpdate("Medium")
		assert.ErrorIs(t, err, telegramtest.ErrNoButton)
		_, _, err = srv.Chat(4, 4).PressUpdate("Large")
		assert.ErrorIs(t, err, telegramtest.ErrNoButton, "another chat's message")
	})
}

// After a migration, the bot's sends to the old group fail as on
// Telegram, telling the new chat id.
func TestMigrateRefusesTheOldGroup(t *testing.T) {
	srv := telegramtest.NewServer()
	t.Cleanup(srv.Close)
	startBot(t, srv, false)
	group := srv.Conversation(t, -5, 7)
	super := group.Migrate(-1005)
	assert.Equal(t, int64(-1005), super.Chat.ChatID)

	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("t", srv.Endpoint())
	require.NoError(t, err)
	_, err = bot.Send(tgbotapi.NewMessage(-5, "hi"))
	var apiErr *tgbotapi.Error
	require.ErrorAs(t, err, &apiErr)
	assert.Equal(t, int64(-1005), apiErr.MigrateToChatID)
	assert.Equal(t, "Bad Request: group chat was upgraded to a supergroup chat", apiErr.Message)
}

// rawBot answers each message with what tgbotapi drops, read from the
// update's JSON: the topic, the business connection, an edit.
func rawBot(c *session.Context[struct{}]) error {
	var u struct {
		Message *struct {
			Chat struct {
				ID int64 `json:"id"`
			} `json:"chat"`
			ThreadID   int    `json:"message_thread_id"`
			Connection string `json:"business_connection_id"`
			Text       string `json:"text"`
		}
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(c.Raw, &fields); err != nil {
		return err
	}
	for kind, v := range fields {
		if kind == "update_id" {
			continue
		}
		if err := json.Unmarshal(v, &u.Message); err != nil || u.Message == nil {
			return err
		}
		m := u.Message
		reply := tgbotapi.NewMessage(m.Chat.ID, fmt.Sprintf("%s %q topic %d business %q", kind, m.Text, m.ThreadID, m.Connection))
		_, err := c.Bot.Send(reply)
		return err
	}
	return nil
}

// Topic, business and edited messages reach the bot through a webhook
// with the fields tgbotapi drops.
func TestConversationRawKinds(t *testing.T) {
	srv := telegramtest.NewServer()
	t.Cleanup(srv.Close)
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	require.NoError(t, err)
	wh := &runner.Webhook{InsecureNoSecret: true}
	hs := httptest.NewServer(wh)
	t.Cleanup(hs.Close)
	srv.SetWebhook(hs.URL, "")
	sess, err := session.New(session.Options[struct{}]{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx, bot, sess, rawBot, runner.Options{Source: wh}) }()
	t.Cleanup(func() { cancel(); assert.NoError(t, <-done) })

	group := srv.Conversation(t, -1001234567890, 7)
	group.InTopic(42).Send("in a topic").Expect(`message "in a topic" topic 42 business ""`)
	sent := group.Send("typo")
	sent.Expect(`message "typo" topic 0 business ""`)
	group.Edit(sent.MessageID, "fixed").Expect(`edited_message "fixed" topic 0 business ""`)
	srv.Conversation(t, 9, 9).InBusiness("conn-1").Send("hello shop").Expect(`business_message "hello shop" topic 0 business "conn-1"`)
}
