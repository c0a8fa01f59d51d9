package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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

	// An empty Secret refuses everything rather than accepting anyone,
	// unless InsecureNoSecret says so (this one is not running: 503).
	assert.Equal(t, http.StatusUnauthorized, serve(&Webhook{}, post(ctx, "", good)))
	assert.Equal(t, http.StatusServiceUnavailable, serve(&Webhook{InsecureNoSecret: true, OnError: func(error) {}}, post(ctx, "", good)))
}

// Updates of one chat arriving one request after another are handled in
// that order, while two chats post concurrently; each request is answered
// once its update was handled.
func TestWebhookOrdersEachChat(t *testing.T) {
	const perChat = 100
	var mu sync.Mutex
	seen := map[int64][]int{}
	h := func(c *session.Context[struct{}]) error {
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
	wg.Wait()
	mu.Lock()
	assert.Len(t, seen[1], perChat, "answered 200, so handled")
	assert.Len(t, seen[2], perChat, "answered 200, so handled")
	mu.Unlock()
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
// The others are answered 200 only once handled.
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
	stop := runWebhook(t, w, h, Options{QueueLimit: 1})
	w.mu.Lock()
	d := w.feed.d
	w.mu.Unlock()
	bg := context.Background()
	codes := make(chan int, 2)
	go func() { codes <- serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))) }()
	receive(t, entered, "the first handler")
	go func() { codes <- serve(w, post(bg, secret, updateJSON(t, chatMsg(2, 1, 1)))) }()
	eventually(t, func() bool { return d.stats().queued == 1 }, "the second queued")

	ctx, cancel := context.WithCancel(bg)
	code := make(chan int, 1)
	go func() { code <- serve(w, post(ctx, secret, updateJSON(t, chatMsg(3, 1, 2)))) }()
	eventually(t, func() bool { return d.stats().blocked == 1 }, "the request waits for room")
	cancel()
	assert.Equal(t, http.StatusServiceUnavailable, receive(t, code, "the answer"))
	select {
	case c := <-codes:
		t.Fatalf("answered %d before its update was handled", c)
	default:
	}

	close(release)
	assert.Equal(t, http.StatusOK, receive(t, codes, "the first answer"))
	assert.Equal(t, http.StatusOK, receive(t, codes, "the second answer"))
	assert.Equal(t, int32(2), handled.Load(), "both answered after being handled")
	require.NoError(t, stop())
	assert.Equal(t, int32(2), handled.Load(), "the refused update was not taken")
}

// AckTimeout bounds each request: an update still waiting for its
// handler is answered 200 and handled in the background, and one the
// full runner could not take in time is answered 503.
func TestWebhookAckTimeout(t *testing.T) {
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
	w := &Webhook{Secret: secret, AckTimeout: 20 * time.Millisecond}
	stop := runWebhook(t, w, h, Options{QueueLimit: 1})
	bg := context.Background()
	assert.Equal(t, http.StatusOK, serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))), "running past AckTimeout")
	receive(t, entered, "the first handler")
	assert.Equal(t, http.StatusOK, serve(w, post(bg, secret, updateJSON(t, chatMsg(2, 1, 1)))), "queued past AckTimeout")
	assert.Equal(t, http.StatusServiceUnavailable, serve(w, post(bg, secret, updateJSON(t, chatMsg(3, 1, 2)))), "no room within AckTimeout")
	assert.Zero(t, handled.Load(), "acknowledged before being handled")
	close(release)
	require.NoError(t, stop())
	assert.Equal(t, int32(2), handled.Load(), "the acknowledged ones handled in the background")
}

// Graceful stop with http.Server.Shutdown: shut the server down, then
// stop the runner; every update answered 200 was handled by then. Before
// Run and after it the webhook answers 503, so Telegram retries.
func TestWebhookShutdown(t *testing.T) {
	w := &Webhook{Secret: secret}
	bg := context.Background()
	assert.Equal(t, http.StatusServiceUnavailable, serve(w, post(bg, secret, updateJSON(t, chatMsg(1, 1, 0)))), "before Run")

	var handled atomic.Int32
	h := func(*session.Context[struct{}]) error { handled.Add(1); return nil }
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
		require.Equal(t, int32(i+1), handled.Load(), "answered 200 once handled")
	}
	require.NoError(t, hs.Config.Shutdown(bg)) // 1. no more requests
	hs.Close()
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

// SetWebhook sends the secret_token that tgbotapi's WebhookConfig lacks,
// and the options that are set.
func TestSetWebhook(t *testing.T) {
	srv, bot := fakeBot(t)
	setWebhooks := func() (calls []url.Values) {
		for _, r := range srv.Requests() {
			if r.Method == "setWebhook" {
				calls = append(calls, r.Params)
			}
		}
		return calls
	}
	require.NoError(t, SetWebhook(bot, "https://example.com/hook", secret, SetWebhookOptions{}))
	calls := setWebhooks()
	require.Len(t, calls, 1)
	assert.Equal(t, "https://example.com/hook", calls[0].Get("url"))
	assert.Equal(t, secret, calls[0].Get("secret_token"))
	for _, p := range []string{"drop_pending_updates", "max_connections", "allowed_updates", "ip_address"} {
		assert.False(t, calls[0].Has(p), "%s not sent", p)
	}
	info, err := bot.GetWebhookInfo()
	require.NoError(t, err)
	assert.Equal(t, "https://example.com/hook", info.URL)

	require.NoError(t, SetWebhook(bot, "https://example.com/hook2", secret, SetWebhookOptions{
		DropPendingUpdates: true, MaxConnections: 1, AllowedUpdates: []string{"message", "callback_query"}, IPAddress: "203.0.113.7",
	}))
	calls = setWebhooks()
	require.Len(t, calls, 2)
	assert.Equal(t, "true", calls[1].Get("drop_pending_updates"))
	assert.Equal(t, "1", calls[1].Get("max_connections"))
	assert.JSONEq(t, `["message","callback_query"]`, calls[1].Get("allowed_updates"))
	assert.Equal(t, "203.0.113.7", calls[1].Get("ip_address"))

	// Mistakes are caught before Telegram is called.
	for name, s := range map[string]string{"empty": "", "too long": strings.Repeat("a", 257), "space": "a b", "dot": "a.b", "non-ASCII": "sécret"} {
		err := SetWebhook(bot, "https://example.com/hook", s, SetWebhookOptions{})
		assert.ErrorIs(t, err, session.ErrConfig, name)
	}
	assert.ErrorIs(t, SetWebhook(bot, "https://example.com/hook", secret, SetWebhookOptions{MaxConnections: 101}), session.ErrConfig)
	assert.ErrorIs(t, SetWebhook(bot, "https://example.com/hook", secret, SetWebhookOptions{MaxConnections: -1}), session.ErrConfig)
	assert.Len(t, setWebhooks(), 2, "no call for a mistake")
	require.NoError(t, SetWebhook(bot, "https://example.com/hook", strings.Repeat("aZ0_-", 51)+"x", SetWebhookOptions{}), "256 characters")

	srv.Fail("setWebhook", 400, "Bad Request: bad webhook")
	assert.Error(t, SetWebhook(bot, "x", secret, SetWebhookOptions{}))
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
