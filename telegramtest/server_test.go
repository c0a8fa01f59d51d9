package telegramtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"sync"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session/telegramtest"
)

// newBot starts a server (with opts) and a real tgbotapi client talking
// to it.
func newBot(t *testing.T, opts ...telegramtest.Option) (*telegramtest.Server, *tgbotapi.BotAPI) {
	t.Helper()
	srv := telegramtest.NewServer(opts...)
	t.Cleanup(srv.Close)
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	require.NoError(t, err)
	return srv, bot
}

func TestGetMe(t *testing.T) {
	srv, bot := newBot(t)

	assert.Equal(t, telegramtest.BotUserName, bot.Self.UserName)
	assert.Equal(t, telegramtest.BotID, bot.Self.ID)
	assert.True(t, bot.Self.IsBot)
	assert.NotEmpty(t, bot.Self.FirstName)

	reqs := srv.Requests()
	require.Len(t, reqs, 1)
	assert.Equal(t, "getMe", reqs[0].Method)
}

func TestUpdatesChanInOrderWithoutDuplicates(t *testing.T) {
	srv, bot := newBot(t, telegramtest.WithFirstUpdateID(1))

	// Queued before polling starts.
	srv.SendMessage(1, 1, "one")
	srv.SendMessage(2, 3, "two")

	updates := bot.GetUpdatesChan(tgbotapi.UpdateConfig{Timeout: 1})
	var got []tgbotapi.Update
	receive := func(n int) {
		t.Helper()
		for len(got) < n {
			select {
			case u := <-updates:
				got = append(got, u)
			case <-time.After(2 * time.Second):
				require.FailNow(t, "timed out waiting for updates", "got %d of %d", len(got), n)
			}
		}
	}
	receive(2)

	// Queued while the client is long polling.
	srv.SendMessage(1, 1, "three")
	id := srv.AddUpdate(tgbotapi.Update{CallbackQuery: &tgbotapi.CallbackQuery{ID: "cb", Data: "four"}})
	assert.Equal(t, 4, id)
	receive(4)

	// The client must confirm the last update (offset 5) and then see no
	// duplicates.
	assert.Eventually(t, func() bool {
		for _, r := range srv.Requests() {
			if r.Method == "getUpdates" && r.Params.Get("offset") == "5" {
				return true
			}
		}
		return false
	}, 2*time.Second, 10*time.Millisecond)
	select {
	case u := <-updates:
		assert.Failf(t, "duplicate update", "%+v", u)
	case <-time.After(100 * time.Millisecond):
	}

	for i, u := range got {
		assert.Equal(t, i+1, u.UpdateID)
	}
	assert.Equal(t, "one", got[0].Message.Text)
	assert.Equal(t, "private", got[0].Message.Chat.Type)
	assert.Equal(t, "two", got[1].Message.Text)
	assert.Equal(t, "group", got[1].Message.Chat.Type)
	assert.Equal(t, int64(3), got[1].Message.From.ID)
	assert.Equal(t, "three", got[2].Message.Text)
	assert.Greater(t, got[2].Message.MessageID, got[1].Message.MessageID)
	assert.Equal(t, "four", got[3].CallbackData())

	// StopPolling lets the polling goroutine exit promptly.
	srv.StopPolling(bot)
	select {
	case _, ok := <-updates:
		assert.False(t, ok, "no more updates expected")
	case <-time.After(2 * time.Second):
		assert.Fail(t, "polling goroutine did not stop")
	}
}

func TestGetUpdatesOffsetAndLimit(t *testing.T) {
	srv, bot := newBot(t, telegramtest.WithFirstUpdateID(1))
	for _, text := range []string{"a", "b", "c"} {
		srv.SendMessage(1, 1, text)
	}

	ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)
	assert.Len(t, ups, 3)

	ups, err = bot.GetUpdates(tgbotapi.UpdateConfig{Offset: 2, Limit: 1})
	require.NoError(t, err)
	require.Len(t, ups, 1)
	assert.Equal(t, 2, ups[0].UpdateID)

	// Update 1 was confirmed by offset 2 and is gone for good.
	ups, err = bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)
	require.Len(t, ups, 2)
	assert.Equal(t, 2, ups[0].UpdateID)
	assert.Equal(t, 3, ups[1].UpdateID)
}

func TestGetUpdatesNoTimeoutAnswersEmptyListImmediately(t *testing.T) {
	srv, bot := newBot(t)

	start := time.Now()
	ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)
	assert.Empty(t, ups)
	assert.Less(t, time.Since(start), 500*time.Millisecond)

	// The raw answer is an empty JSON list, not null.
	resp, err := http.PostForm(srv.URL+"/botany-token/getUpdates", url.Values{"timeout": {"0"}})
	require.NoError(t, err)
	defer resp.Body.Close()
	var body struct {
		Ok     bool            `json:"ok"`
		Result json.RawMessage `json:"result"`
	}
	require.NoError(t, json.NewDecoder(resp.Body).Decode(&body))
	assert.True(t, body.Ok)
	assert.JSONEq(t, `[]`, string(body.Result))
}

func TestLongPollWakesOnUpdate(t *testing.T) {
	srv, bot := newBot(t)

	done := make(chan []tgbotapi.Update, 1)
	go func() {
		ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{Timeout: 30})
		assert.NoError(t, err)
		done <- ups
	}()
	waitForMethod(t, srv, "getUpdates")
	srv.SendMessage(1, 1, "wake")

	select {
	case ups := <-done:
		require.Len(t, ups, 1)
		assert.Equal(t, "wake", ups[0].Message.Text)
	case <-time.After(2 * time.Second):
		assert.Fail(t, "long poll did not return after AddUpdate")
	}
}

func TestLongPollReturnsOnClose(t *testing.T) {
	srv, bot := newBot(t)

	done := make(chan []tgbotapi.Update, 1)
	go func() {
		ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{Timeout: 30})
		assert.NoError(t, err)
		done <- ups
	}()
	waitForMethod(t, srv, "getUpdates")

	closed := make(chan struct{})
	go func() {
		srv.Close()
		close(closed)
	}()
	select {
	case <-closed:
	case <-time.After(2 * time.Second):
		require.FailNow(t, "Close blocked on the long poll")
	}
	select {
	case ups := <-done:
		assert.Empty(t, ups)
	case <-time.After(2 * time.Second):
		assert.Fail(t, "long poll did not return on Close")
	}
}

func TestLongPollTimeout(t *testing.T) {
	_, bot := newBot(t)

	start := time.Now()
	ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{Timeout: 1})
	require.NoError(t, err)
	assert.Empty(t, ups)
	assert.GreaterOrEqual(t, time.Since(start), 900*time.Millisecond)
}

func TestSendMessage(t *testing.T) {
	srv, bot := newBot(t)

	cfg := tgbotapi.NewMessage(42, "hello")
	cfg.ReplyToMessageID = 7
	msg, err := bot.Send(cfg)
	require.NoError(t, err)
	assert.Equal(t, "hello", msg.Text)
	require.NotNil(t, msg.Chat)
	assert.Equal(t, int64(42), msg.Chat.ID)
	require.NotNil(t, msg.From)
	assert.Equal(t, telegramtest.BotID, msg.From.ID)
	assert.NotZero(t, msg.Date)

	msg2, err := bot.Send(tgbotapi.NewMessage(-5, "second"))
	require.NoError(t, err)
	assert.Greater(t, msg2.MessageID, msg.MessageID)
	assert.Equal(t, "group", msg2.Chat.Type)

	assert.Equal(t, []telegramtest.Message{
		{Method: "sendMessage", MessageID: msg.MessageID, ChatID: 42, Text: "hello", ReplyTo: 7},
		{Method: "sendMessage", MessageID: msg2.MessageID, ChatID: -5, Text: "second"},
	}, srv.Sent())

	reqs := srv.Requests()
	require.Len(t, reqs, 3)
	assert.Equal(t, "sendMessage", reqs[1].Method)
	assert.Equal(t, "42", reqs[1].Params.Get("chat_id"))
	assert.Equal(t, "hello", reqs[1].Params.Get("text"))
}

func TestCommandMessage(t *testing.T) {
	srv, bot := newBot(t)
	srv.SendMessage(1, 1, "/start foo")

	ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)
	require.Len(t, ups, 1)
	assert.True(t, ups[0].Message.IsCommand())
	assert.Equal(t, "start", ups[0].Message.Command())
	assert.Equal(t, "foo", ups[0].Message.CommandArguments())
}

func TestFail(t *testing.T) {
	srv, bot := newBot(t)
	srv.Fail("sendMessage", 403, "Forbidden: bot was blocked by the user")

	_, err := bot.Send(tgbotapi.NewMessage(1, "x"))
	var apiErr *tgbotapi.Error
	require.True(t, errors.As(err, &apiErr), "got %v", err)
	assert.Equal(t, 403, apiErr.Code)
	assert.Equal(t, "Forbidden: bot was blocked by the user", apiErr.Message)

	// Only the next call fails.
	_, err = bot.Send(tgbotapi.NewMessage(1, "y"))
	require.NoError(t, err)
	sent := srv.Sent()
	require.Len(t, sent, 1)
	assert.Equal(t, "y", sent[0].Text)
}

func TestWaitSent(t *testing.T) {
	srv, bot := newBot(t)

	t.Run("times out", func(t *testing.T) {
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		sent, err := srv.WaitSent(ctx, 1)
		assert.ErrorIs(t, err, context.DeadlineExceeded)
		assert.Empty(t, sent)
	})

	t.Run("concurrent senders", func(t *testing.T) {
		const n = 10
		var wg sync.WaitGroup
		for i := range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := bot.Send(tgbotapi.NewMessage(int64(i+1), "hi"))
				assert.NoError(t, err)
			}()
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		sent, err := srv.WaitSent(ctx, n)
		require.NoError(t, err)
		assert.Len(t, sent, n)
		wg.Wait()
	})

	t.Run("server closed", func(t *testing.T) {
		srv.Close()
		_, err := srv.WaitSent(context.Background(), 100)
		assert.ErrorIs(t, err, telegramtest.ErrClosed)
	})
}

// waitForMethod waits until the server has received a call of method.
func waitForMethod(t *testing.T, srv *telegramtest.Server, method string) {
	t.Helper()
	require.Eventually(t, func() bool {
		for _, r := range srv.Requests() {
			if r.Method == method {
				return true
			}
		}
		return false
	}, 2*time.Second, 5*time.Millisecond)
}

// TestStopPollingIsPrompt stops bots at random moments, in a long poll or
// between two polls. Closing the server instead would, now and then, make
// tgbotapi's loop poll a closed server and sleep 3 seconds before noticing
// the stop.
func TestStopPollingIsPrompt(t *testing.T) {
	for i := range 30 {
		srv, bot := newBot(t)
		updates := bot.GetUpdatesChan(tgbotapi.UpdateConfig{Timeout: 30})
		srv.SendMessage(1, 1, "hi")
		<-updates
		time.Sleep(time.Duration(i%5) * 100 * time.Microsecond)
		start := time.Now()
		srv.StopPolling(bot)
		for range updates {
		}
		assert.Less(t, time.Since(start), time.Second, "run %d: the polling loop did not stop promptly", i)
		srv.Close()

		// Other calls still work after StopPolling, until Close.
		_, err := bot.Send(tgbotapi.NewMessage(1, "late"))
		assert.Error(t, err, "the server is closed")
	}
}
