package telegramtest_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// hook is a webhook endpoint under test control: it records each request
// and answers with what answer says.
type hook struct {
	mu     sync.Mutex
	bodies []string
	secret []string
	answer func(n int, r *http.Request) int // n counts requests from 1
}

func newHook(t *testing.T, answer func(n int, r *http.Request) int) (*hook, *httptest.Server) {
	h := &hook{answer: answer}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		h.mu.Lock()
		h.bodies = append(h.bodies, string(b))
		h.secret = append(h.secret, r.Header.Get(runner.SecretHeader))
		n := len(h.bodies)
		h.mu.Unlock()
		w.WriteHeader(h.answer(n, r))
	}))
	t.Cleanup(ts.Close)
	return h, ts
}

func (h *hook) requests() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.bodies)
}

// An update is POSTed to the webhook with the secret, as Telegram's JSON,
// and sent again after each non-2xx answer until one is 2xx; Deliveries
// tells the attempts, and getWebhookInfo the last error.
func TestWebhookRedeliversUntil2xx(t *testing.T) {
	srv, bot := newBot(t)
	h, ts := newHook(t, func(n int, _ *http.Request) int {
		if n <= 2 {
			return http.StatusServiceUnavailable
		}
		return http.StatusOK
	})
	require.NoError(t, runner.SetWebhook(bot, ts.URL, "s3cret", runner.SetWebhookOptions{}))

	id := srv.SendMessage(7, 7, "hi")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.WaitAcknowledged(ctx, id))

	assert.Equal(t, []telegramtest.Delivery{{UpdateID: id, Attempts: 3, Statuses: []int{503, 503, 200}, Acknowledged: true}}, srv.Deliveries())
	assert.Equal(t, 3, h.requests())
	assert.Equal(t, []string{"s3cret", "s3cret", "s3cret"}, h.secret)
	var u tgbotapi.Update
	require.NoError(t, json.Unmarshal([]byte(h.bodies[2]), &u))
	assert.Equal(t, id, u.UpdateID)
	assert.Equal(t, "hi", u.Message.Text)
	assert.Equal(t, 0, srv.Pending())

	info, err := bot.GetWebhookInfo()
	require.NoError(t, err)
	assert.Equal(t, ts.URL, info.URL)
	assert.Equal(t, 0, info.PendingUpdateCount)
	assert.Equal(t, "Wrong response from the webhook: 503 Service Unavailable", info.LastErrorMessage)
	assert.NotZero(t, info.LastErrorDate)
	assert.Equal(t, 40, info.MaxConnections)
}

// An attempt that gets no answer within the webhook timeout counts as
// failed (status 0) and the update is sent again.
func TestWebhookRedeliversAfterATimeout(t *testing.T) {
	srv := telegramtest.NewServer(telegramtest.WithWebhookTimeout(50 * time.Millisecond))
	t.Cleanup(srv.Close)
	release := make(chan struct{})
	_, ts := newHook(t, func(n int, r *http.Request) int {
		if n == 1 {
			select { // the server gives up on this request first
			case <-r.Context().Done():
			case <-release:
			}
		}
		return http.StatusOK
	})
	t.Cleanup(func() { close(release) })
	srv.SetWebhook(ts.URL, "")

	id := srv.SendMessage(7, 7, "slow")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.WaitAcknowledged(ctx, id))
	d := srv.Deliveries()
	require.Len(t, d, 1)
	assert.Equal(t, 2, d[0].Attempts)
	assert.Equal(t, []int{0, 200}, d[0].Statuses)
}

// The updates of one chat go one at a time, in order: the next is sent
// only once the previous was answered 2xx; another chat's do not wait.
func TestWebhookOneAtATimePerChat(t *testing.T) {
	srv, _ := newBot(t)
	gate := make(chan struct{})
	var mu sync.Mutex
	var texts []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var u tgbotapi.Update
		_ = json.NewDecoder(r.Body).Decode(&u)
		mu.Lock()
		texts = append(texts, u.Message.Text)
		mu.Unlock()
		if u.Message.Text == "a1" {
			<-gate
		}
	}))
	t.Cleanup(ts.Close)
	t.Cleanup(func() {
		select {
		case <-gate:
		default:
			close(gate) // a failed test must not leave the handler blocked
		}
	})
	srv.SetWebhook(ts.URL, "x")
	seen := func() []string {
		mu.Lock()
		defer mu.Unlock()
		return append([]string(nil), texts...)
	}

	a1 := srv.SendMessage(1, 1, "a1")
	a2 := srv.SendMessage(1, 1, "a2")
	b1 := srv.SendMessage(2, 2, "b1")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.WaitAcknowledged(ctx, b1), "chat 2 does not wait for chat 1")
	require.Eventually(t, func() bool { return len(seen()) == 2 }, 5*time.Second, 5*time.Millisecond)
	assert.ElementsMatch(t, []string{"a1", "b1"}, seen(), "a2 waits for a1")
	close(gate)
	require.NoError(t, srv.WaitAcknowledged(ctx, a2))
	require.NoError(t, srv.WaitAcknowledged(ctx, a1))
	assert.Equal(t, "a2", seen()[2])
}

// While a webhook is set getUpdates fails with 409, as on Telegram;
// deleteWebhook stops the deliveries, keeps the pending updates (unless
// asked to drop them) and lets getUpdates serve them.
func TestDeleteWebhookBackToPolling(t *testing.T) {
	srv, bot := newBot(t)
	_, ts := newHook(t, func(int, *http.Request) int { return http.StatusServiceUnavailable })
	require.NoError(t, runner.SetWebhook(bot, ts.URL, "s", runner.SetWebhookOptions{MaxConnections: 3}))

	_, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	var apiErr *tgbotapi.Error
	require.True(t, errors.As(err, &apiErr), "got %v", err)
	assert.Equal(t, 409, apiErr.Code)
	assert.Contains(t, apiErr.Message, "can't use getUpdates method while webhook is active")

	id := srv.SendMessage(1, 1, "kept")
	require.Eventually(t, func() bool {
		d := srv.Deliveries()
		return len(d) == 1 && len(d[0].Statuses) >= 1
	}, 5*time.Second, 5*time.Millisecond)
	info, err := bot.GetWebhookInfo()
	require.NoError(t, err)
	assert.Equal(t, 1, info.PendingUpdateCount)
	assert.Equal(t, 3, info.MaxConnections)

	_, err = bot.Request(tgbotapi.DeleteWebhookConfig{})
	require.NoError(t, err)
	info, err = bot.GetWebhookInfo()
	require.NoError(t, err)
	assert.Empty(t, info.URL)
	ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)
	require.Len(t, ups, 1)
	assert.Equal(t, id, ups[0].UpdateID)

	_, err = bot.Request(tgbotapi.DeleteWebhookConfig{DropPendingUpdates: true})
	require.NoError(t, err)
	assert.Equal(t, 0, srv.Pending())
}

// NewServer numbers updates from a random id in [1<<20, 1<<30), so a
// restarted fake does not reuse ids a persistent store recorded;
// WithFirstUpdateID fixes the start.
func TestUpdateIDsStartAtARandomBase(t *testing.T) {
	srv := telegramtest.NewServer()
	t.Cleanup(srv.Close)
	first := srv.SendMessage(1, 1, "a")
	assert.GreaterOrEqual(t, first, 1<<20)
	assert.Less(t, first, 1<<30)
	assert.Equal(t, first+1, srv.SendMessage(1, 1, "b"))

	fixed := telegramtest.NewServer(telegramtest.WithFirstUpdateID(7))
	t.Cleanup(fixed.Close)
	assert.Equal(t, 7, fixed.SendMessage(1, 1, "a"))

	err := panicOf(t, func() { telegramtest.NewServer(telegramtest.WithFirstUpdateID(-1)) })
	assert.ErrorContains(t, err, "update ids are positive")
}
