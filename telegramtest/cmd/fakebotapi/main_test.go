package main

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// syncBuffer is an io.Writer safe for the fake's goroutine and the test.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// startFake runs the command on a free port until the test ends and
// returns its URL.
func startFake(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var out syncBuffer
	done := make(chan error, 1)
	go func() { done <- run(ctx, append([]string{"-addr", "127.0.0.1:0"}, args...), &out) }()
	t.Cleanup(func() { cancel(); assert.NoError(t, <-done) })
	var url string
	require.Eventually(t, func() bool {
		rest, ok := strings.CutPrefix(out.String(), "fakebotapi: serving ")
		url, _, _ = strings.Cut(rest, " ")
		return ok && strings.Contains(rest, " ")
	}, 5*time.Second, 5*time.Millisecond, "output: %s", out.String())
	return url
}

type visits struct{ N int }

// Two replicas of a webhook bot, behind a round-robin load balancer,
// share a session store and run against one fake in its own server;
// a test drives it through the control API. Every update is handled
// exactly once, by one replica or the other, at its first attempt (both
// replicas are ready before the webhook is set), and each chat's count
// goes on in order whichever replica answers.
func TestTwoReplicasHandleEachUpdateOnce(t *testing.T) {
	remote := &telegramtest.Remote{URL: startFake(t)}
	const secret = "replica-secret"
	store := session.NewMemory()
	var mu sync.Mutex
	handled := map[int][]string{} // update id: the replicas that handled it

	replica := func(name string) (*tgbotapi.BotAPI, string) {
		bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", remote.Endpoint())
		require.NoError(t, err)
		sess, err := session.New(session.Options[visits]{Storage: store})
		require.NoError(t, err)
		h := func(c *session.Context[visits]) error {
			if c.Update.Message == nil {
				return nil // the readiness probe below
			}
			mu.Lock()
			handled[c.Update.UpdateID] = append(handled[c.Update.UpdateID], name)
			mu.Unlock()
			s, err := c.Session()
			if err != nil {
				return err
			}
			s.N++
			_, err = c.Bot.Send(tgbotapi.NewMessage(c.Update.Message.Chat.ID, fmt.Sprintf("visit %d", s.N)))
			return err
		}
		wh := &runner.Webhook{Secret: secret}
		hs := httptest.NewServer(wh)
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- runner.Run(ctx, bot, sess, h, runner.Options{Source: wh}) }()
		t.Cleanup(func() { cancel(); assert.NoError(t, <-done); hs.Close() })
		// Ready once Run receives: until then the webhook answers 503.
		require.Eventually(t, func() bool {
			req, err := http.NewRequest(http.MethodPost, hs.URL, strings.NewReader(`{"update_id":1}`))
			require.NoError(t, err)
			req.Header.Set(runner.SecretHeader, secret)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		}, 5*time.Second, 5*time.Millisecond)
		return bot, hs.URL
	}
	bot, a := replica("A")
	_, b := replica("B")
	lb := httptest.NewServer(telegramtest.RoundRobin(a, b))
	t.Cleanup(lb.Close)
	require.NoError(t, runner.SetWebhook(bot, lb.URL, secret, runner.SetWebhookOptions{}))

	const chats, perChat = 3, 4
	var wg sync.WaitGroup
	for chat := int64(1); chat <= chats; chat++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 1; i <= perChat; i++ {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				turn, err := remote.Send(ctx, chat, chat, "hi")
				cancel()
				if !assert.NoError(t, err) {
					return
				}
				assert.Equal(t, []string{fmt.Sprintf("visit %d", i)}, turn.Texts(), "chat %d", chat)
			}
		}()
	}
	wg.Wait()

	mu.Lock()
	defer mu.Unlock()
	require.Len(t, handled, chats*perChat)
	count := map[string]int{}
	for id, by := range handled {
		assert.Len(t, by, 1, "update %d handled by %v", id, by)
		count[by[0]]++
	}
	assert.Equal(t, chats*perChat/2, count["A"], "round robin: half each")
	assert.Equal(t, chats*perChat/2, count["B"])
	ds, err := remote.Deliveries(context.Background())
	require.NoError(t, err)
	require.Len(t, ds, chats*perChat)
	for _, d := range ds {
		assert.Equal(t, telegramtest.Delivery{UpdateID: d.UpdateID, Attempts: 1, Statuses: []int{200}, Acknowledged: true}, d)
	}
}

// The control API: raw updates, a polling bot's replies, the transcript,
// failures, and errors for what cannot be done.
func TestControlAPI(t *testing.T) {
	remote := &telegramtest.Remote{URL: startFake(t, "-first-update-id", "100")}
	ctx := context.Background()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", remote.Endpoint())
	require.NoError(t, err)

	id, err := remote.AddRawUpdate(ctx, []byte(`{"message":{"message_id":1,"date":0,"chat":{"id":5,"type":"private"},"text":"raw"}}`))
	require.NoError(t, err)
	assert.Equal(t, 100, id)
	ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	require.NoError(t, err)
	require.Len(t, ups, 1)
	assert.Equal(t, "raw", ups[0].Message.Text)

	_, err = remote.AddRawUpdate(ctx, []byte(`[1]`))
	assert.ErrorContains(t, err, "not an update")
	_, err = remote.Press(ctx, 5, 5, "Yes")
	assert.ErrorContains(t, err, "no such inline button")

	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	turn, err := remote.Send(short, 5, 5, "nobody polls")
	assert.ErrorIs(t, err, context.DeadlineExceeded)
	assert.Equal(t, 101, turn.UpdateID)

	_, err = bot.Send(tgbotapi.NewMessage(5, "hello"))
	require.NoError(t, err)
	sent, err := remote.Sent(ctx)
	require.NoError(t, err)
	require.Len(t, sent, 1)
	assert.Equal(t, "hello", sent[0].Text)

	resp, err := http.Post(remote.URL+"/control/fail", "application/json",
		strings.NewReader(`{"method":"sendMessage","code":403,"description":"Forbidden: bot was blocked by the user"}`))
	require.NoError(t, err)
	resp.Body.Close()
	_, err = bot.Send(tgbotapi.NewMessage(5, "blocked"))
	assert.ErrorContains(t, err, "Forbidden: bot was blocked by the user")

	resp, err = http.Get(remote.URL + "/control/nothing")
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusNotFound, resp.StatusCode)
}

// Bad flags and an address in use are errors, not panics.
func TestRunErrors(t *testing.T) {
	var out bytes.Buffer
	assert.Error(t, run(context.Background(), []string{"-nope"}, &out))
	assert.ErrorContains(t, run(context.Background(), []string{"extra"}, &out), "unexpected arguments")
	assert.ErrorContains(t, run(context.Background(), []string{"-addr", "256.0.0.1:1"}, &out), "WithAddr")
}
