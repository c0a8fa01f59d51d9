// Command webhook receives updates through a webhook instead of long
// polling: Telegram POSTs each update to the bot's HTTPS endpoint with a
// secret header, [runner.Webhook] checks the secret and hands the update
// to [runner.Run], which handles it with the same ordering, bounds and
// graceful stop as polling. The bot counts each chat's messages.
//
// Without TELEGRAM_BOT_TOKEN it plays Telegram's side itself: it serves
// the webhook on a local test server, POSTs scripted updates to it (and a
// few requests Telegram would never send, to show the refusals), and
// prints what happened; the bot's replies go to the fake Bot API server:
//
//	go run ./examples/webhook
//
// With a token it registers WEBHOOK_URL (an https URL that reaches this
// process) with the secret WEBHOOK_SECRET and listens on :PORT (8080 by
// default) until interrupted:
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... WEBHOOK_URL=https://bot.example.com/telegram \
//	  WEBHOOK_SECRET=s3cret go run ./examples/webhook
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// Count is a chat's session.
type Count struct {
	Messages int `json:"messages"`
}

// handle counts the chat's messages and answers each.
func handle(c *session.Context[Count]) error {
	m := c.Update.Message
	if m == nil {
		return nil
	}
	s, err := c.Session()
	if err != nil {
		return err
	}
	s.Messages++
	_, err = c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, fmt.Sprintf("Message %d in this chat: %q", s.Messages, m.Text)))
	return err
}

// serve runs the bot behind wh on ln until ctx is done, in one call:
// runner.ServeWebhook stops taking requests, drains the runner and closes
// the server, in that order, so no update answered 200 is lost.
func serve(ctx context.Context, bot *tgbotapi.BotAPI, wh *runner.Webhook, srv *http.Server, ln net.Listener) error {
	sess, err := session.New(session.Options[Count]{})
	if err != nil {
		return err
	}
	return runner.ServeWebhook(ctx, srv, ln, bot, sess, handle, runner.Options{Source: wh, OnError: logError})
}

func main() { demo.Main("webhook", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes its transcript to out.
func run(ctx context.Context, out io.Writer, token string) error {
	if token == "" {
		return play(ctx, out)
	}
	url, secret := os.Getenv("WEBHOOK_URL"), os.Getenv("WEBHOOK_SECRET")
	if url == "" || secret == "" {
		return errors.New("set WEBHOOK_URL (https, reaching this process) and WEBHOOK_SECRET (A-Z, a-z, 0-9, _ and -)")
	}
	port := os.Getenv("PORT")
	if port == "" {
		port = "8080"
	}
	bot, err := tgbotapi.NewBotAPI(token)
	if err != nil {
		return err
	}
	if err := runner.SetWebhook(bot, url, secret, runner.SetWebhookOptions{}); err != nil {
		return err
	}
	ln, err := net.Listen("tcp", ":"+port)
	if err != nil {
		return err
	}
	wh := &runner.Webhook{Secret: secret}
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second} // the Webhook is its handler
	fmt.Fprintf(out, "@%s is listening on :%s for %s; press Ctrl-C to stop.\n", bot.Self.UserName, port, url)
	return serve(ctx, bot, wh, srv, ln)
}

// secret is the demo's webhook secret.
const secret = "demo-secret"

// post is one request of Telegram's side in the demo.
type post struct {
	from   string // a user of demo.Users, for a message in their chat
	text   string
	secret string // the header sent
	method string
	note   string
}

// play serves the webhook on a local test server and plays Telegram's side.
func play(ctx context.Context, out io.Writer) error {
	fmt.Fprintln(out, demo.Header)
	fmt.Fprintln(out, "# To run it on the real Telegram: TELEGRAM_BOT_TOKEN=<token> WEBHOOK_URL=<https URL> WEBHOOK_SECRET=<secret> go run ./examples/webhook")

	api := telegramtest.NewServer() // where the bot sends its replies
	defer api.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("demo-token", api.Endpoint())
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	webhookURL := "http://" + ln.Addr().String()
	wh := &runner.Webhook{Secret: secret}
	demoCtx, stop := context.WithCancel(ctx)
	defer stop()
	served := make(chan error, 1)
	go func() { served <- serve(demoCtx, bot, wh, &http.Server{ReadHeaderTimeout: 10 * time.Second}, ln) }()

	script := []post{
		{from: "Alice", text: "hello", secret: secret},
		{from: "Bob", text: "hi there", secret: secret},
		{from: "Alice", text: "second message", secret: secret},
		{from: "Mallory", text: "let me in", secret: "guess", note: "(a request with the wrong secret)"},
		{method: http.MethodGet, secret: secret, note: "(a GET, as a browser would send)"},
		{from: "Alice", text: "third", secret: secret},
	}
	id := 0
	replies := 0
	for _, p := range script {
		if p.note != "" {
			fmt.Fprintln(out, p.note)
		}
		method := p.method
		if method == "" {
			method = http.MethodPost
		}
		var body []byte
		if method == http.MethodPost {
			id++
			chat := demo.Users[p.from]
			if chat == 0 {
				chat = 666
			}
			body, err = json.Marshal(tgbotapi.Update{UpdateID: id, Message: &tgbotapi.Message{
				MessageID: id, Date: int(time.Now().Unix()), Text: p.text,
				Chat: &tgbotapi.Chat{ID: chat, Type: "private"},
				From: &tgbotapi.User{ID: chat, FirstName: p.from},
			}})
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "%s: %s\n", p.from, p.text)
		}
		status, err := deliver(ctx, webhookURL, method, p.secret, body)
		if err != nil {
			return err
		}
		fmt.Fprintf(out, "  webhook: %d %s\n", status, http.StatusText(status))
		if status != http.StatusOK {
			continue
		}
		replies++
		sent, err := api.WaitSent(ctx, replies)
		if err != nil {
			return fmt.Errorf("waiting for reply %d: %w", replies, err)
		}
		fmt.Fprintf(out, "  bot: %s\n", sent[replies-1].Text)
	}
	stop()
	return <-served
}

// deliver sends one request as Telegram does, retrying while the answer
// is 503 (the runner has not started yet): Telegram keeps an update until
// the webhook takes it.
func deliver(ctx context.Context, url, method, secret string, body []byte) (int, error) {
	for {
		req, err := http.NewRequestWithContext(ctx, method, url, bytes.NewReader(body))
		if err != nil {
			return 0, err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set(runner.SecretHeader, secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			return resp.StatusCode, nil
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// logError logs what the runner reports.
func logError(ctx context.Context, u *tgbotapi.Update, key string, err error) {
	if u == nil {
		slog.WarnContext(ctx, "webhook source failed", "error", err)
		return
	}
	slog.ErrorContext(ctx, "update failed", "update_id", u.UpdateID, "key", key, "error", err)
}
