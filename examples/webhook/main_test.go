package main

import (
	"context"
	"net"
	"net/http"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session/examples/internal/demo/demotest"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// Updates POSTed with the secret are answered 200 and handled in order per chat; a wrong secret gets 401 and a GET 405, and neither reaches the bot.
func TestDemo(t *testing.T) {
	demotest.Play(t, run, []string{
		"Alice: hello",
		"  webhook: 200 OK",
		"  bot: Message 1 in this chat: \"hello\"",
		"Bob: hi there",
		"  webhook: 200 OK",
		"  bot: Message 1 in this chat: \"hi there\"",
		"Alice: second message",
		"  webhook: 200 OK",
		"  bot: Message 2 in this chat: \"second message\"",
		"(a request with the wrong secret)",
		"Mallory: let me in",
		"  webhook: 401 Unauthorized",
		"(a GET, as a browser would send)",
		"  webhook: 405 Method Not Allowed",
		"Alice: third",
		"  webhook: 200 OK",
		"  bot: Message 3 in this chat: \"third\"",
	})
}

// startBot serves the bot as run does, behind a webhook it registers with
// the fake Telegram, until the test ends.
func startBot(t *testing.T) *telegramtest.Server {
	srv := telegramtest.NewServer()
	t.Cleanup(srv.Close)
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	require.NoError(t, runner.SetWebhook(bot, "http://"+ln.Addr().String(), secret, runner.SetWebhookOptions{}))
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- serve(ctx, bot, &runner.Webhook{Secret: secret}, &http.Server{}, ln) }()
	t.Cleanup(func() { stop(); assert.NoError(t, <-done) })
	return srv
}

// Each chat counts its own messages, each update once: one that comes
// before the runner is ready is answered 503, and the fake Telegram sends
// it again, as Telegram does.
func TestBot(t *testing.T) {
	srv := startBot(t)
	alice, bob := srv.Conversation(t, 101, 101), srv.Conversation(t, 202, 202)

	alice.Send("hello").Expect(`Message 1 in this chat: "hello"`)
	bob.Send("/start").Expect(`Message 1 in this chat: "/start"`)
	alice.Send("again").Expect(`Message 2 in this chat: "again"`)
	for _, d := range srv.Deliveries() {
		assert.True(t, d.Acknowledged, "update %d: %v", d.UpdateID, d.Statuses)
	}
}
