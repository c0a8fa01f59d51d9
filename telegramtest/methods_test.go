package telegramtest_test

import (
	"context"
	"errors"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/telegramtest"
)

// apiErr returns err as a tgbotapi error, failing the test otherwise.
func apiErr(t *testing.T, err error) *tgbotapi.Error {
	t.Helper()
	var e *tgbotapi.Error
	require.True(t, errors.As(err, &e), "want a Bot API error, got %v", err)
	return e
}

// A real BotAPI calls every method the fake supports, through tgbotapi's
// own helpers, and each answer decodes into the type tgbotapi expects.
func TestEveryMethodAnswersTelegramsShape(t *testing.T) {
	srv, bot := newBot(t)
	const chat, user = int64(42), int64(42)
	srv.SendMessage(chat, user, "hi") // the user's message, id 1

	send := func(c tgbotapi.Chattable) tgbotapi.Message {
		t.Helper()
		m, err := bot.Send(c)
		require.NoError(t, err)
		require.NotNil(t, m.Chat)
		assert.Equal(t, chat, m.Chat.ID)
		require.NotNil(t, m.From)
		assert.Equal(t, telegramtest.BotID, m.From.ID)
		assert.NotZero(t, m.MessageID)
		return m
	}
	upload := tgbotapi.FileBytes{Name: "pic.png", Bytes: []byte("\x89PNG fake")}
	byID := tgbotapi.FileID("AgACAgQ")

	// sendMessage with parse mode and an inline keyboard.
	msg := tgbotapi.NewMessage(chat, "*menu*")
	msg.ParseMode = tgbotapi.ModeMarkdownV2
	msg.ReplyToMessageID = 1
	msg.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(tgbotapi.NewInlineKeyboardButtonData("Yes", "yes")))
	menu := send(msg)
	assert.Equal(t, "*menu*", menu.Text)
	require.NotNil(t, menu.ReplyMarkup)
	assert.Equal(t, "yes", *menu.ReplyMarkup.InlineKeyboard[0][0].CallbackData)
	require.NotNil(t, menu.ReplyToMessage)
	assert.Equal(t, "hi", menu.ReplyToMessage.Text)

	// Media, uploaded as multipart and by file_id.
	photo := tgbotapi.NewPhoto(chat, upload)
	photo.Caption = "a photo"
	m := send(photo)
	require.NotEmpty(t, m.Photo)
	assert.Equal(t, "a photo", m.Caption)
	assert.NotNil(t, send(tgbotapi.NewPhoto(chat, byID)).Photo)
	assert.Equal(t, "pic.png", send(tgbotapi.NewDocument(chat, upload)).Document.FileName)
	assert.NotNil(t, send(tgbotapi.NewAudio(chat, byID)).Audio)
	assert.NotNil(t, send(tgbotapi.NewVideo(chat, byID)).Video)
	assert.NotNil(t, send(tgbotapi.NewVoice(chat, byID)).Voice)
	assert.NotNil(t, send(tgbotapi.NewAnimation(chat, byID)).Animation)
	assert.NotNil(t, send(tgbotapi.NewVideoNote(chat, 240, byID)).VideoNote)
	assert.NotNil(t, send(tgbotapi.NewSticker(chat, byID)).Sticker)

	// Other sends.
	assert.InDelta(t, 52.5, send(tgbotapi.NewLocation(chat, 52.5, 13.4)).Location.Latitude, 1e-9)
	assert.Equal(t, "Cafe", send(tgbotapi.NewVenue(chat, "Cafe", "Main St 1", 52.5, 13.4)).Venue.Title)
	assert.Equal(t, "+100", send(tgbotapi.NewContact(chat, "+100", "Ann")).Contact.PhoneNumber)
	dice := send(tgbotapi.NewDice(chat)).Dice
	require.NotNil(t, dice)
	assert.Equal(t, "🎲", dice.Emoji)
	assert.True(t, dice.Value >= 1 && dice.Value <= 6)
	pollMsg := send(tgbotapi.NewPoll(chat, "Pizza?", "yes", "no"))
	require.NotNil(t, pollMsg.Poll)
	assert.Len(t, pollMsg.Poll.Options, 2)

	group, err := bot.SendMediaGroup(tgbotapi.NewMediaGroup(chat, []interface{}{
		tgbotapi.NewInputMediaPhoto(upload),
		tgbotapi.NewInputMediaPhoto(byID),
	}))
	require.NoError(t, err)
	require.Len(t, group, 2)
	assert.NotEmpty(t, group[0].MediaGroupID)
	assert.Equal(t, group[0].MediaGroupID, group[1].MediaGroupID)

	// Forward and copy.
	fwd := send(tgbotapi.NewForward(chat, chat, 1))
	assert.Equal(t, "hi", fwd.Text)
	require.NotNil(t, fwd.ForwardFrom)
	assert.Equal(t, user, fwd.ForwardFrom.ID)
	copied, err := bot.CopyMessage(tgbotapi.NewCopyMessage(chat, chat, menu.MessageID))
	require.NoError(t, err)
	assert.Greater(t, copied.MessageID, fwd.MessageID)

	// Edits: a Message for chat messages, true for inline ones.
	edited := send(tgbotapi.NewEditMessageText(chat, menu.MessageID, "menu, edited"))
	assert.Equal(t, "menu, edited", edited.Text)
	assert.NotZero(t, edited.EditDate)
	assert.Equal(t, "new caption", send(tgbotapi.NewEditMessageCaption(chat, m.MessageID, "new caption")).Caption)
	kb := tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(tgbotapi.NewInlineKeyboardButtonData("No", "no")))
	remarked := send(tgbotapi.NewEditMessageReplyMarkup(chat, menu.MessageID, kb))
	assert.Equal(t, "no", *remarked.ReplyMarkup.InlineKeyboard[0][0].CallbackData)
	resp, err := bot.Request(tgbotapi.EditMessageTextConfig{BaseEdit: tgbotapi.BaseEdit{InlineMessageID: "inline-1"}, Text: "x"})
	require.NoError(t, err)
	assert.Equal(t, "true", string(resp.Result))

	closed, err := bot.StopPoll(tgbotapi.NewStopPoll(chat, pollMsg.MessageID))
	require.NoError(t, err)
	assert.True(t, closed.IsClosed)

	// Methods answering true.
	for _, c := range []tgbotapi.Chattable{
		tgbotapi.NewCallback("cb-1", "done"),
		tgbotapi.NewChatAction(chat, tgbotapi.ChatTyping),
		tgbotapi.NewDeleteMessage(chat, fwd.MessageID),
		tgbotapi.NewSetMyCommands(tgbotapi.BotCommand{Command: "hunger", Description: "how hungry"}),
		tgbotapi.PinChatMessageConfig{ChatID: chat, MessageID: menu.MessageID},
		tgbotapi.LeaveChatConfig{ChatID: chat},
	} {
		resp, err := bot.Request(c)
		require.NoError(t, err, "%T", c)
		assert.Equal(t, "true", string(resp.Result), "%T", c)
	}
	cmds, err := bot.GetMyCommands()
	require.NoError(t, err)
	assert.Equal(t, []tgbotapi.BotCommand{{Command: "hunger", Description: "how hungry"}}, cmds)
	_, err = bot.Request(tgbotapi.NewDeleteMyCommands())
	require.NoError(t, err)
	cmds, err = bot.GetMyCommands()
	require.NoError(t, err)
	assert.Empty(t, cmds)

	// Chat information.
	c, err := bot.GetChat(tgbotapi.ChatInfoConfig{ChatConfig: tgbotapi.ChatConfig{ChatID: chat}})
	require.NoError(t, err)
	assert.Equal(t, "private", c.Type)
	member, err := bot.GetChatMember(tgbotapi.GetChatMemberConfig{ChatConfigWithUser: tgbotapi.ChatConfigWithUser{ChatID: chat, UserID: user}})
	require.NoError(t, err)
	assert.Equal(t, user, member.User.ID)
	admins, err := bot.GetChatAdministrators(tgbotapi.ChatAdministratorsConfig{ChatConfig: tgbotapi.ChatConfig{ChatID: chat}})
	require.NoError(t, err)
	assert.NotEmpty(t, admins)
	count, err := bot.GetChatMembersCount(tgbotapi.ChatMemberCountConfig{ChatConfig: tgbotapi.ChatConfig{ChatID: chat}})
	require.NoError(t, err)
	assert.Positive(t, count)
	f, err := bot.GetFile(tgbotapi.FileConfig{FileID: "abc"})
	require.NoError(t, err)
	assert.Equal(t, "abc", f.FileID)
	photos, err := bot.GetUserProfilePhotos(tgbotapi.NewUserProfilePhotos(user))
	require.NoError(t, err)
	assert.Zero(t, photos.TotalCount)

	// Webhooks: set, seen, and in the way of getUpdates, as on Telegram.
	wh, err := tgbotapi.NewWebhook("https://example.com/hook")
	require.NoError(t, err)
	_, err = bot.Request(wh)
	require.NoError(t, err)
	info, err := bot.GetWebhookInfo()
	require.NoError(t, err)
	assert.Equal(t, "https://example.com/hook", info.URL)
	_, err = bot.GetUpdates(tgbotapi.UpdateConfig{})
	assert.Equal(t, 409, apiErr(t, err).Code)
	_, err = bot.Request(tgbotapi.DeleteWebhookConfig{})
	require.NoError(t, err)
	_, err = bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)

	// Every message-creating call was recorded, with its details.
	sent := srv.Sent()
	require.NotEmpty(t, sent)
	assert.Equal(t, "sendMessage", sent[0].Method)
	assert.Equal(t, menu.MessageID, sent[0].MessageID)
	assert.Equal(t, "MarkdownV2", sent[0].ParseMode)
	assert.Equal(t, 1, sent[0].ReplyTo)
	assert.Contains(t, sent[0].ReplyMarkup, "inline_keyboard")
	assert.Equal(t, "yes", *sent[0].InlineKeyboard[0][0].CallbackData)
	assert.Equal(t, "sendPhoto", sent[1].Method)
	assert.Equal(t, "pic.png", sent[1].File)
	assert.Equal(t, "a photo", sent[1].Caption)
	var methods []string
	for _, m := range sent {
		methods = append(methods, m.Method)
	}
	assert.Equal(t, []string{
		"sendMessage", "sendPhoto", "sendPhoto", "sendDocument", "sendAudio", "sendVideo", "sendVoice",
		"sendAnimation", "sendVideoNote", "sendSticker", "sendLocation", "sendVenue", "sendContact",
		"sendDice", "sendPoll", "sendMediaGroup", "sendMediaGroup", "forwardMessage", "copyMessage",
	}, methods)
}

// What Telegram rejects, the fake rejects, with Telegram's words.
func TestRejectsLikeTelegram(t *testing.T) {
	srv, bot := newBot(t)
	srv.SendMessage(7, 7, "hi")

	cases := []struct {
		name string
		c    tgbotapi.Chattable
		code int
		desc string
	}{
		{"empty text", tgbotapi.NewMessage(7, ""), 400, "Bad Request: message text is empty"},
		{"blank text", tgbotapi.NewMessage(7, " \n "), 400, "Bad Request: message text is empty"},
		{"too long", tgbotapi.NewMessage(7, string(make([]byte, 4097))), 400, "Bad Request: message is too long"},
		{"unknown username", tgbotapi.NewMessageToChannel("@nobody", "x"), 400, "Bad Request: chat not found"},
		{"no photo", tgbotapi.NewPhoto(7, tgbotapi.FileID("")), 400, "Bad Request: there is no photo in the request"},
		{"edit unknown", tgbotapi.NewEditMessageText(7, 999, "x"), 400, "Bad Request: message to edit not found"},
		{"edit user's", tgbotapi.NewEditMessageText(7, 1, "x"), 400, "Bad Request: message to edit not found"},
		{"forward unknown", tgbotapi.NewForward(7, 7, 999), 400, "Bad Request: message to forward not found"},
		{"delete unknown", tgbotapi.NewDeleteMessage(7, 999), 400, "Bad Request: message to delete not found"},
		{"getChat unknown", tgbotapi.ChatInfoConfig{ChatConfig: tgbotapi.ChatConfig{ChatID: 12345}}, 400, "Bad Request: chat not found"},
	}
	for _, tc := range cases {
		_, err := bot.Request(tc.c)
		e := apiErr(t, err)
		assert.Equal(t, tc.code, e.Code, tc.name)
		assert.Equal(t, tc.desc, e.Message, tc.name)
	}

	// An edit that changes nothing is refused too.
	m, err := bot.Send(tgbotapi.NewMessage(7, "same"))
	require.NoError(t, err)
	_, err = bot.Send(tgbotapi.NewEditMessageText(7, m.MessageID, "same"))
	assert.Contains(t, apiErr(t, err).Message, "message is not modified")

	// Unknown methods get Telegram's 404.
	_, err = bot.MakeRequest("noSuchMethod", nil)
	assert.Equal(t, 404, apiErr(t, err).Code)

	// Rejected calls are not recorded as sent.
	require.Len(t, srv.Sent(), 1)
}

// Fail answers 429 with retry_after, which tgbotapi exposes.
func TestFailTooManyRequests(t *testing.T) {
	srv, bot := newBot(t)
	srv.Fail("sendMessage", 429, "Too Many Requests: retry after 5", tgbotapi.ResponseParameters{RetryAfter: 5})
	srv.Fail("sendMessage", 429, "Too Many Requests: retry after 1")

	_, err := bot.Send(tgbotapi.NewMessage(1, "x"))
	e := apiErr(t, err)
	assert.Equal(t, 429, e.Code)
	assert.Equal(t, 5, e.RetryAfter)
	_, err = bot.Send(tgbotapi.NewMessage(1, "x"))
	assert.Equal(t, 1, apiErr(t, err).RetryAfter, "429 always carries retry_after")
	_, err = bot.Send(tgbotapi.NewMessage(1, "x"))
	require.NoError(t, err)
}

// PressButton sends the callback query of a button on the bot's message,
// carrying that message; a button that is not there is an error.
func TestPressButton(t *testing.T) {
	srv, bot := newBot(t)
	msg := tgbotapi.NewMessage(5, "Pizza?")
	msg.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
		tgbotapi.NewInlineKeyboardButtonData("Yes", "yes"),
		tgbotapi.NewInlineKeyboardButtonData("No", "no"),
	))
	m, err := bot.Send(msg)
	require.NoError(t, err)

	id, err := srv.PressButton(5, 77, m.MessageID, "no")
	require.NoError(t, err)
	_, err = srv.PressButton(5, 77, m.MessageID, "maybe")
	assert.ErrorIs(t, err, telegramtest.ErrNoButton)
	_, err = srv.PressButton(5, 77, 999, "no")
	assert.ErrorIs(t, err, telegramtest.ErrNoButton)

	ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)
	require.Len(t, ups, 1)
	u := ups[0]
	assert.Equal(t, id, u.UpdateID)
	require.NotNil(t, u.CallbackQuery)
	assert.Equal(t, "no", u.CallbackQuery.Data)
	assert.Equal(t, int64(77), u.CallbackQuery.From.ID)
	require.NotNil(t, u.CallbackQuery.Message)
	assert.Equal(t, m.MessageID, u.CallbackQuery.Message.MessageID)
	assert.Equal(t, "Pizza?", u.CallbackQuery.Message.Text)
	assert.Equal(t, int64(5), u.CallbackQuery.Message.Chat.ID)
	assert.NotEmpty(t, u.CallbackQuery.ID)
}

// StopPolling may be called twice (tgbotapi's own stop panics then).
func TestStopPollingTwice(t *testing.T) {
	srv, bot := newBot(t)
	updates := bot.GetUpdatesChan(tgbotapi.UpdateConfig{Timeout: 30})
	srv.StopPolling(bot)
	assert.NotPanics(t, func() { srv.StopPolling(bot) })
	for range updates {
	}
}

// As on Telegram, a newer getUpdates ends a waiting long poll with 409:
// that is how a runner's last, short confirmation ends its own long poll.
func TestNewerGetUpdatesEndsLongPoll(t *testing.T) {
	srv, bot := newBot(t)
	done := make(chan error, 1)
	go func() {
		_, err := bot.GetUpdates(tgbotapi.UpdateConfig{Timeout: 30})
		done <- err
	}()
	waitForMethod(t, srv, "getUpdates")
	_, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	select {
	case err := <-done:
		assert.Equal(t, 409, apiErr(t, err).Code)
	case <-ctx.Done():
		t.Fatal("the long poll was not ended")
	}
}

// Pending counts what Telegram would still deliver.
func TestPending(t *testing.T) {
	srv, bot := newBot(t, telegramtest.WithFirstUpdateID(1))
	srv.SendMessage(1, 1, "a")
	srv.SendMessage(1, 1, "b")
	assert.Equal(t, 2, srv.Pending())
	_, err := bot.GetUpdates(tgbotapi.UpdateConfig{Offset: 2})
	require.NoError(t, err)
	assert.Equal(t, 1, srv.Pending())
}

// Scripting mistakes that would make a test wait in vain (an update no
// bot would ever handle, a failure no call would ever meet) or crash
// inside tgbotapi panic at once with session.ErrConfig, naming the
// argument, and leave the server as it was.
func TestScriptingMistakesPanicWithErrConfig(t *testing.T) {
	srv, bot := newBot(t, telegramtest.WithFirstUpdateID(1))
	pending := srv.AddUpdate(tgbotapi.Update{UpdateID: 5})
	require.Equal(t, 5, pending)
	msg := func(id int) tgbotapi.Update {
		return tgbotapi.Update{UpdateID: id, Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 1}, Text: "x"}}
	}

	cases := []struct {
		name string
		f    func()
		want string
	}{
		{"StopPolling of a nil bot", func() { srv.StopPolling(nil) }, "StopPolling: nil bot"},
		{"Fail of an empty method", func() { srv.Fail("", 400, "Bad Request") }, `Fail: method ""`},
		{"Fail of a method with a slash", func() { srv.Fail("/sendMessage", 400, "Bad Request") }, `Fail: method "/sendMessage"`},
		{"Fail of a method with a space", func() { srv.Fail("sendMessage ", 400, "Bad Request") }, `Fail: method "sendMessage "`},
		{"AddUpdate with a negative id", func() { srv.AddUpdate(msg(-3)) }, "AddUpdate: UpdateID -3 is negative"},
		{"AddUpdate with a pending id", func() { srv.AddUpdate(msg(5)) }, "AddUpdate: UpdateID 5 is already pending"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var r any
			func() {
				defer func() { r = recover() }()
				tc.f()
			}()
			require.NotNil(t, r, "no panic")
			err, ok := r.(error)
			require.True(t, ok, "panicked with %T %v, not an error", r, r)
			assert.ErrorIs(t, err, session.ErrConfig)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
	assert.Equal(t, 1, srv.Pending(), "no update was queued")
	_, err := bot.Send(tgbotapi.NewMessage(1, "hi"))
	assert.NoError(t, err, "no failure was queued")

	// Out of order above the confirmed offset is fine; below it, the
	// update could never be delivered.
	assert.Equal(t, 3, srv.AddUpdate(msg(3)))
	us, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)
	require.Len(t, us, 2)
	assert.Equal(t, []int{3, 5}, []int{us[0].UpdateID, us[1].UpdateID})
	_, err = bot.GetUpdates(tgbotapi.UpdateConfig{Offset: 6})
	require.NoError(t, err)
	func() {
		defer func() {
			err, _ := recover().(error)
			assert.ErrorIs(t, err, session.ErrConfig)
			assert.ErrorContains(t, err, "AddUpdate: UpdateID 4 is below the confirmed offset 6")
		}()
		srv.AddUpdate(msg(4))
	}()
	assert.Equal(t, 6, srv.AddUpdate(msg(0)), "a zero id still picks the next one")
}
