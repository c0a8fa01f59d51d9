package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

const secret = "s3cret_token-1"

// post builds a webhook request with the given secret and body.
func post(ctx context.Context, secretHeader string, body []byte) *http.Request {
	r := httptest.NewRequestWithContext(ctx, http.MethodPost, "/hook", bytes.NewReader(body))
	if secretHeader != "" {
		r.Header.Set(SecretHeader, secretHeader)
	}
	return r
}

// serve answers one request with the webhook and returns the status.
func serve(w *Webhook, r *http.Request) int {
	rec := httptest.NewRecorder()
	w.ServeHTTP(rec, r)
	return rec.Code
}

func updateJSON(t *testing.T, u tgbotapi.Update) []byte {
	t.Helper()
	b, err := json.Marshal(u)
	require.NoError(t, err)
	return b
}

// runWebhook runs a webhook runner with h; stop cancels it and returns
// Run's result.
func runWebhook(t *testing.T, w *Webhook, h session.Handler[struct{}], opts Options) (stop func() error) {
	t.Helper()
	opts.Source = w
	ctx, cancel := context.WithCancel(context.Background())
	done := startRun(ctx, nil, byChat(t), h, opts)
	// Ready once the webhook takes updates: until then it answers 503.
	eventually(t, func() bool { w.mu.Lock(); defer w.mu.Unlock(); return w.feed != nil }, "the webhook receiving")
	return func() error { cancel(); return result(t, done) }
}

// The secret, the method, the body: every wrong request is refused with
// its status, and none reaches the handler.
func TestWebhookRefusesBadRequests(t *testing.T) {
	var handled atomic.Int32
	w := &Webhook{Secret: secret, MaxBodyBytes: 4 << 10}
	stop := runWebhook(t, w, func(*session.Context[struct{}]) error { handled.Add(1); return nil }, Options{})
	defer stop()
	ctx := context.Background()
	good := updateJSON(t, chatMsg(1, 1, 0))

	assert.Equal(t, http.StatusUnauthorized, serve(w, post(ctx, "", good)), "no secret")
	assert.Equal(t, http.StatusUnauthorized, serve(w, post(ctx, "wrong", good)), "wrong secret")
	assert.Equal(t, http.StatusUnauthorized, serve(w, post(ctx, secret+"x", good)), "longer secret")
	get := httptest.NewRequest(http.MethodGet, "/hook", nil)
	get.Header.Set(SecretHeader, secret)
	assert.Equal(t, http.StatusMethodNotAllowed, serve(w, get))

	huge := append([]byte(`{"update_id":1,"message":{"text":"`), bytes.Repeat([]byte("a"), 5<<10)...)
	huge = append(huge, `"}}`...)
	assert.Equal(t, http.StatusRequestEntityTooLarge, serve(w, post(ctx, secret, huge)), "oversize body")

	junk := []string{"", "{", "not json", "[]", "null", `"x"`, "{}", `{"update_id":-1}`, `{"update_id":"1"}`,
		`{"update_id":1}{"update_id":2}`, `{"update_id":1,"message":[]}`, "\x00\xff\xfe"}
	for _, body := range junk {
		var code int
		require.NotPanics(t, func() { code = serve(w, post(ctx, secret, []byte(body))) }, "%q", body)
		assert.Equal(t, http.StatusBadRequest, code, "%q", body)
	}
	assert.Zero(t, handled.Load())

	assert.Equal(t, http.StatusOK, serve(w, post(ctx, secret, good)))
	eventually(t, func() bool { return handled.Load() == 1 }, "the good update handled")

	// An empty Secret refuses everything rather than accepting anyone.
	open := &Webhook{}
	assert.Equal(t, http.StatusUnauthorized, serve(open, post(ctx, "", good)))
}

// Updates of one chat arriving one request after another are handled in
// that order, while two chats post concurrently; each request is answered
// at once, before its update is handled.
func TestWebhookOrdersEachChat(t *testing.T) {
	const perChat = 100
	var mu sync.Mutex
	seen := map[int64][]int{}
	gate := make(chan struct{})
	h := func(c *session.Context[struct{}]) error {
		<-gate // handlers wait until every request was answered
		mu.Lock()
		seen[c.Update.Message.Chat.ID] = append(seen[c.Update.Message.Chat.ID], c.Update.Message.MessageID)
		mu.Unlock()
		return nil
	}
	w := &Webhook{Secret: secret}
	stop := runWebhook(t, w, h, Options{QueueLimit: perChat, MaxInFlight: 2})
	srv := httptest.NewServer(w)
	defer srv.Close()

	var wg sync.WaitGroup
	var id atomic.Int64
	for _, chat := range []int64{1, 2} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for seq := range perChat {
				req, err := http.NewRequest(http.MethodPost, srv.URL, bytes.NewReader(updateJSON(t, chatMsg(int(id.Add(1)), chat, seq))))
				if !assert.NoError(t, err) {
					return
				}
				req.Header.Set(SecretHeader, secret)
				resp, err := http.DefaultClient.Do(req)
				if !assert.NoError(t, err) {
					return
				}
				resp.Body.Close()
				assert.Equal(t, http.StatusOK, resp.StatusCode)
			}
		}()
	}
	wg.Wait() // all answered while no handler has finished
	close(gate)
	eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(seen[1])+len(seen[2]) == 2*perChat }, "all handled")
	require.NoError(t, stop())

	want := make([]int, perChat)
	for i := range want {
		want[i] = i
	}
	assert.Equal(t, want, seen[1])
	assert.Equal(t, want, seen[2])
}

// Backpressure: when the chat's queue is full the request waits; if the
// request gives up first, the update was not taken and the answer is 503.
func TestWebhookBackpressure(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{}, 1)
	var handled atomic.Int32
	h := func(*session.Context[struct{}]) error {
		select {
		case entered <- struct{}{}:
		default:
		}
		<-release
		handled.Add(1)
		return nil
	}
	w := &Webhook{Secret: secret}
	dispatchers := captureDispatcher(t)
	stop := runWebhook(t, w, h, Options{QueueLimit: 1})
	d := receive(t, dispatchers, "the dispatcher")
	bg := context.Background()
	assert.Equal(t, http.StatusOK, serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))))
	receive(t, entered, "the first handler")
	assert.Equal(t, http.StatusOK, serve(w, post(bg, secret, updateJSON(t, chatMsg(2, 1, 1)))), "queued")

	ctx, cancel := context.WithCancel(bg)
	code := make(chan int, 1)
	go func() { code <- serve(w, post(ctx, secret, updateJSON(t, chatMsg(3, 1, 2)))) }()
	eventually(t, func() bool { return d.stats().blocked == 1 }, "the request waits for room")
	cancel()
	assert.Equal(t, http.StatusServiceUnavailable, receive(t, code, "the answer"))

	close(release)
	require.NoError(t, stop())
	assert.Equal(t, int32(2), handled.Load(), "the refused update was not taken")
}

// Graceful stop with http.Server.Shutdown: shut the server down, then
// stop the runner; every update answered 200 was handled. Before Run and
// after it the webhook answers 503, so Telegram retries.
func TestWebhookShutdown(t *testing.T) {
	w := &Webhook{Secret: secret}
	bg := context.Background()
	assert.Equal(t, http.StatusServiceUnavailable, serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))), "before Run")

	var handled atomic.Int32
	gate := make(chan struct{})
	h := func(*session.Context[struct{}]) error { <-gate; handled.Add(1); return nil }
	stop := runWebhook(t, w, h, Options{})
	hs := httptest.NewServer(w)

	const n = 20
	for i := range n {
		req, err := http.NewRequest(http.MethodPost, hs.URL, strings.NewReader(string(updateJSON(t, chatMsg(i+1, int64(1+i%3), i)))))
		require.NoError(t, err)
		req.Header.Set(SecretHeader, secret)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
	}
	require.NoError(t, hs.Config.Shutdown(bg)) // 1. no more requests
	hs.Close()
	close(gate)
	require.NoError(t, stop()) // 2. drain what was taken
	assert.Equal(t, int32(n), handled.Load(), "every update answered 200 was handled")

	assert.Equal(t, http.StatusServiceUnavailable, serve(w, post(bg, secret, updateJSON(t, chatMsg(99, 1, 0)))), "after the stop")
}

// A webhook serves one Run at a time.
func TestWebhookOneRunAtATime(t *testing.T) {
	w := &Webhook{Secret: secret}
	stop := runWebhook(t, w, func(*session.Context[struct{}]) error { return nil }, Options{})
	err := Run(context.Background(), nil, byChat(t), func(*session.Context[struct{}]) error { return nil }, Options{Source: w})
	assert.Error(t, err)
	require.NoError(t, stop())
}

// SetWebhook sends the secret_token that tgbotapi's WebhookConfig lacks.
func TestSetWebhook(t *testing.T) {
	srv, bot := fakeBot(t)
	require.NoError(t, SetWebhook(bot, "https://example.com/hook", secret))
	var found bool
	for _, r := range srv.Requests() {
		if r.Method == "setWebhook" {
			found = true
			assert.Equal(t, "https://example.com/hook", r.Params.Get("url"))
			assert.Equal(t, secret, r.Params.Get("secret_token"))
		}
	}
	assert.True(t, found)
	info, err := bot.GetWebhookInfo()
	require.NoError(t, err)
	assert.Equal(t, "https://example.com/hook", info.URL)

	srv.Fail("setWebhook", 400, "Bad Request: bad webhook")
	assert.Error(t, SetWebhook(bot, "x", secret))
}

// Whatever the body, the webhook answers with one of its statuses and
// never panics. The seeds run with go test; go test -fuzz explores more.
func FuzzWebhookBody(f *testing.F) {
	for _, seed := range []string{"", "{", "null", "[]", `{"update_id":1}`, `{"update_id":1,"message":{"chat":{"id":1}}}`,
		`{"update_id":1,"callback_query":{"id":"x","message":null}}`, `{"update_id":9223372036854775808}`, "\xff\x00"} {
		f.Add([]byte(seed))
	}
	w := &Webhook{Secret: secret, MaxBodyBytes: 1 << 10}
	f.Fuzz(func(t *testing.T, body []byte) {
		code := serve(w, post(context.Background(), secret, body))
		switch code {
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge, http.StatusServiceUnavailable:
		default:
			t.Fatalf("status %d for %q", code, body)
		}
	})
}

// A body is one JSON update and nothing else: anything but JSON
// whitespace after the update (a stray closing bracket, a second object,
// garbage) is answered 400 and the update is not handled, while trailing
// whitespace is fine. A body over MaxBodyBytes stays 413, even when the
// excess is only whitespace.
func TestWebhookRejectsTrailingBytesAfterTheUpdate(t *testing.T) {
	var mu sync.Mutex
	var handled []int
	h := func(c *session.Context[struct{}]) error {
		mu.Lock()
		handled = append(handled, c.Update.UpdateID)
		mu.Unlock()
		return nil
	}
	const limit = 4 << 10
	w := &Webhook{Secret: secret, MaxBodyBytes: limit}
	stop := sync.OnceValue(runWebhook(t, w, h, Options{}))
	defer stop()
	ctx := context.Background()

	bad := map[string]string{
		"closing brace":                 `{"update_id":101}}`,
		"closing brackets":              `{"update_id":102}]]]`,
		"second object":                 `{"update_id":103}{"update_id":104}`,
		"second object after a newline": "{\"update_id\":105}\n{\"update_id\":106}",
		"garbage":                       `{"update_id":107}garbage`,
		"garbage after space":           `{"update_id":108} x`,
		"NUL byte":                      "{\"update_id\":109}\x00",
		"vertical tab":                  "{\"update_id\":110}\v", // not JSON whitespace
		"no-break space":                "{\"update_id\":111}\u00a0",
		"a number":                      `{"update_id":112} 1`,
	}
	for name, body := range bad {
		assert.Equal(t, http.StatusBadRequest, serve(w, post(ctx, secret, []byte(body))), name)
	}
	tooBig := append([]byte(`{"update_id":113}`), bytes.Repeat([]byte(" "), limit)...)
	assert.Equal(t, http.StatusRequestEntityTooLarge, serve(w, post(ctx, secret, tooBig)), "over the limit with trailing whitespace")

	good := []string{
		"{\"update_id\":1}\n",
		"{\"update_id\":2} \t\r\n ",
		"\n\t {\"update_id\":3}",
		`{"update_id":4}`,
	}
	for _, body := range good {
		assert.Equal(t, http.StatusOK, serve(w, post(ctx, secret, []byte(body))), "%q", body)
	}
	eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		n := 0
		for _, id := range handled {
			if id <= len(good) {
				n++
			}
		}
		return n == len(good)
	}, "the good updates handled")
	require.NoError(t, stop()) // drains anything else that was taken
	mu.Lock()
	defer mu.Unlock()
	assert.ElementsMatch(t, []int{1, 2, 3, 4}, handled, "only the well-formed bodies were handled")
}
