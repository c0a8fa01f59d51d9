package runner

import (
	"context"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// One call serves the webhook and stops it: with a poster that retries
// as Telegram does, every update answered 2xx was handled, once, and
// ServeWebhook returns nil after the stop; afterwards nothing listens.
func TestServeWebhook(t *testing.T) {
	handled := newHandledLog()
	h := func(c *session.Context[struct{}]) error {
		time.Sleep(20 * time.Millisecond)
		handled.add(c.Update.UpdateID)
		return nil
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	w := &Webhook{Secret: secret, OnError: func(error) {}}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- ServeWebhook(ctx, srv, ln, nil, byChat(t), h, Options{Source: w}) }()

	const n = 200
	ids := make(chan int, n)
	for id := 1; id <= n; id++ {
		ids <- id
	}
	close(ids)
	p := &poster{url: "http://" + ln.Addr().String(), chats: 20, ok: map[int]int{}}
	wg := p.run(t, ids, 20)
	eventually(t, func() bool { return handled.total() >= 50 }, "a part handled")
	cancel()
	require.NoError(t, result(t, done))
	wg.Wait()

	p.mu.Lock()
	defer p.mu.Unlock()
	require.NotEmpty(t, p.ok)
	for id, acks := range p.ok {
		assert.Equal(t, 1, acks, "update %d acknowledged once", id)
		assert.Equal(t, 1, handled.count(id), "update %d answered 2xx, so handled once", id)
	}
	_, err = http.Post("http://"+ln.Addr().String(), "application/json", nil)
	assert.Error(t, err, "the server is shut down")
}

// ServeWebhook refuses what it cannot serve before it starts anything.
func TestServeWebhookRefusesConfigurationMistakes(t *testing.T) {
	nop := func(*session.Context[struct{}]) error { return nil }
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	srv := &http.Server{}
	bg := context.Background()
	for name, tc := range map[string]struct {
		srv  *http.Server
		ln   net.Listener
		opts Options
		want string
	}{
		"nil srv":          {nil, ln, Options{Source: &Webhook{Secret: secret}}, "nil srv"},
		"nil ln":           {srv, nil, Options{Source: &Webhook{Secret: secret}}, "nil ln"},
		"polling source":   {srv, ln, Options{}, "not a non-nil *Webhook"},
		"nil *Webhook":     {srv, ln, Options{Source: (*Webhook)(nil)}, "not a non-nil *Webhook"},
		"no secret":        {srv, ln, Options{Source: &Webhook{}}, "Webhook.Secret is empty"},
		"negative options": {srv, ln, Options{Source: &Webhook{Secret: secret}, MaxInFlight: -1}, "Options.MaxInFlight -1"},
	} {
		err := ServeWebhook(bg, tc.srv, tc.ln, nil, byChat(t), nop, tc.opts)
		assert.ErrorIs(t, err, session.ErrConfig, name)
		assert.ErrorContains(t, err, tc.want, name)
	}
	assert.Nil(t, srv.Handler, "nothing started")
}

// When serving fails, ServeWebhook stops the runner too and returns the
// error.
func TestServeWebhookServeFails(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, ln.Close()) // Serve fails at once
	w := &Webhook{Secret: secret}
	err = ServeWebhook(context.Background(), &http.Server{}, ln, nil, byChat(t), func(*session.Context[struct{}]) error { return nil }, Options{Source: w})
	require.Error(t, err)
	assert.ErrorContains(t, err, "ServeWebhook: serve")
	w.mu.Lock()
	defer w.mu.Unlock()
	assert.Nil(t, w.feed, "the runner stopped")
}
