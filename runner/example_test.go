package runner_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/signal"
	"syscall"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// Data is the session of the examples.
type Data struct{ Count int }

// counter replies to every message with how many its chat has sent. It is
// nil-safe: edited messages and button presses have no Message.
func counter(c *session.Context[Data]) error {
	m := c.Update.Message
	if m == nil {
		return nil
	}
	s, err := c.Session()
	if err != nil {
		return err
	}
	s.Count++
	_, err = c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, fmt.Sprintf("message %d: %s", s.Count, m.Text)))
	return err
}

// A bot on long polling, against the fake Telegram here. In main, ctx
// would come from signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
// and bot from tgbotapi.NewBotAPI(token).
func ExampleRun() {
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.SendMessage(42, 42, "hello")
	srv.SendMessage(42, 42, "again")

	ctx, stop := context.WithCancel(context.Background())
	go func() {
		_, _ = srv.WaitSent(ctx, 2) // the example's Ctrl-C: stop after two replies
		stop()
	}()

	// Per chat (the default key), in memory (the default store). Run puts
	// counter behind the session's middleware and orders updates by the
	// session's key.
	sess, err := session.New(session.Options[Data]{})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = runner.Run(ctx, bot, sess, counter, runner.Options{
		OnError: func(ctx context.Context, u *tgbotapi.Update, key string, err error) {
			if u == nil {
				slog.WarnContext(ctx, "polling failed, retrying", "error", err)
				return
			}
			slog.ErrorContext(ctx, "update failed", "update_id", u.UpdateID, "key", key, "error", err)
		},
	})
	fmt.Println("stopped:", err)
	for _, m := range srv.Sent() {
		fmt.Println(m.Text)
	}
	fmt.Println("left with Telegram:", srv.Pending())
	// Output:
	// stopped: <nil>
	// message 1: hello
	// message 2: again
	// left with Telegram: 0
}

// A bot behind a webhook. Telegram's side is played by a loop that posts
// the update and retries while the answer is not 200, as Telegram does.
func ExampleWebhook() {
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	if err != nil {
		fmt.Println(err)
		return
	}

	sess, err := session.New(session.Options[Data]{})
	if err != nil {
		fmt.Println(err)
		return
	}
	wh := &runner.Webhook{Secret: "my-secret"}
	// In production: an http.Server with TLS, and once at setup
	// runner.SetWebhook(bot, "https://bot.example.com/telegram", "my-secret", runner.SetWebhookOptions{}).
	hs := httptest.NewServer(wh)

	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	done := make(chan error, 1)
	go func() {
		done <- runner.Run(ctx, bot, sess, counter, runner.Options{Source: wh})
	}()

	update := `{"update_id": 1, "message": {"message_id": 1, "date": 0, "text": "hi", "chat": {"id": 7, "type": "private"}, "from": {"id": 7, "first_name": "Ann"}}}`
	for {
		req, _ := http.NewRequest(http.MethodPost, hs.URL, bytes.NewBufferString(update))
		req.Header.Set(runner.SecretHeader, "my-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			break
		}
		time.Sleep(10 * time.Millisecond) // 503 until Run has started
	}
	sent, err := srv.WaitSent(ctx, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(sent[0].Text)

	// Graceful stop: the HTTP server, then the runner's drain (either
	// order loses nothing).
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := hs.Config.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		fmt.Println(err)
	}
	hs.Close()
	stop()
	fmt.Println("stopped:", <-done)
	// Output:
	// message 1: hi
	// stopped: <nil>
}

// A webhook bot in one call: serving, and the graceful stop on SIGTERM
// or Ctrl-C. Behind a TLS-terminating proxy, drop the TLSConfig.
func ExampleServeWebhook() {
	bot, err := tgbotapi.NewBotAPI(os.Getenv("TELEGRAM_BOT_TOKEN"))
	if err != nil {
		fmt.Println(err)
		return
	}
	sess, err := session.New(session.Options[Data]{})
	if err != nil {
		fmt.Println(err)
		return
	}
	cert, err := tls.LoadX509KeyPair("cert.pem", "key.pem")
	if err != nil {
		fmt.Println(err)
		return
	}
	ln, err := net.Listen("tcp", ":8443")
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	srv := &http.Server{ReadHeaderTimeout: 10 * time.Second, TLSConfig: &tls.Config{Certificates: []tls.Certificate{cert}}}
	wh := &runner.Webhook{Secret: os.Getenv("WEBHOOK_SECRET")}
	if err := runner.ServeWebhook(ctx, srv, ln, bot, sess, counter, runner.Options{Source: wh}); err != nil {
		fmt.Println(err)
	}
}

// Registering the webhook with its secret, once, at deployment.
func ExampleSetWebhook() {
	bot, err := tgbotapi.NewBotAPI(os.Getenv("TELEGRAM_BOT_TOKEN"))
	if err != nil {
		fmt.Println(err)
		return
	}
	opts := runner.SetWebhookOptions{MaxConnections: 40, AllowedUpdates: []string{"message", "callback_query"}}
	if err := runner.SetWebhook(bot, "https://bot.example.com/telegram", os.Getenv("WEBHOOK_SECRET"), opts); err != nil {
		fmt.Println(err)
	}
}

// outbox holds the replies of one update until its session is saved.
type outbox struct{ msgs []tgbotapi.Chattable }

type outboxKey struct{}

// reply queues a message to send once the session is saved.
func reply(c *session.Context[Data], m tgbotapi.Chattable) {
	box := c.Value(outboxKey{}).(*outbox)
	box.msgs = append(box.msgs, m)
}

// sendAfterSave wraps a session-wrapped handler: it sends the queued
// replies only after the session middleware returned nil, that is after
// the session was written.
func sendAfterSave(next session.Handler[Data]) session.Handler[Data] {
	return func(c *session.Context[Data]) error {
		box := &outbox{}
		c.Context = context.WithValue(c.Context, outboxKey{}, box)
		if err := next(c); err != nil {
			return err // not saved: nothing was sent either
		}
		for _, m := range box.msgs {
			if _, err := c.Bot.Send(m); err != nil {
				return fmt.Errorf("send after save: %w", err)
			}
		}
		return nil
	}
}

// afterSave is a session whose middleware sends the queued replies once
// the session was saved. It embeds the session, so it keeps its key: the
// key Run orders updates by.
type afterSave struct{ *session.Session[Data] }

// Middleware puts sendAfterSave around the session's middleware.
func (s afterSave) Middleware(next session.Handler[Data]) session.Handler[Data] {
	return sendAfterSave(s.Session.Middleware(next))
}

// Replying only after the save: a reply that states the session ("you
// have 3") is never seen by the user unless the new state was stored.
// Run puts the handler behind the session's middleware; a type that
// embeds the session and overrides Middleware goes around it.
func Example_sendAfterSave() {
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.SendMessage(42, 42, "one more")

	count := func(c *session.Context[Data]) error {
		m := c.Update.Message
		if m == nil {
			return nil
		}
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count++
		reply(c, tgbotapi.NewMessage(m.Chat.ID, fmt.Sprintf("you have %d", s.Count)))
		return nil
	}
	sess, err := session.New(session.Options[Data]{})
	if err != nil {
		fmt.Println(err)
		return
	}

	ctx, stop := context.WithCancel(context.Background())
	go func() {
		_, _ = srv.WaitSent(ctx, 1)
		stop()
	}()
	if err := runner.Run(ctx, bot, afterSave{sess}, count, runner.Options{}); err != nil {
		fmt.Println(err)
	}
	fmt.Println(srv.Sent()[0].Text)
	// Output:
	// you have 1
}

// A handler reads from c.Raw what tgbotapi v5.5.1 drops: here the forum
// topic of a message, to answer in the same topic.
func Example_rawJSON() {
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.AddRawUpdate([]byte(`{"message":{"message_id":5,"message_thread_id":42,"is_topic_message":true,` +
		`"date":1700000000,"chat":{"id":-1001,"type":"supergroup","title":"Forum","is_forum":true},"text":"hi"}}`))

	sess, err := session.New(session.Options[Data]{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	h := func(c *session.Context[Data]) error {
		defer stop() // the example's Ctrl-C: stop after one update
		var raw struct {
			Message struct {
				ThreadID int `json:"message_thread_id"`
			} `json:"message"`
		}
		if err := json.Unmarshal(c.Raw, &raw); err != nil {
			return err
		}
		// tgbotapi's MessageConfig has no message_thread_id: send it as a
		// parameter of its own.
		params := tgbotapi.Params{"text": "hello, topic"}
		params.AddNonZero64("chat_id", c.Update.Message.Chat.ID)
		params.AddNonZero("message_thread_id", raw.Message.ThreadID)
		_, err := c.Bot.MakeRequest("sendMessage", params)
		fmt.Printf("%q in topic %d\n", c.Update.Message.Text, raw.Message.ThreadID)
		return err
	}
	if err := runner.Run(ctx, bot, sess, h, runner.Options{}); err != nil {
		fmt.Println(err)
	}
	for _, r := range srv.Requests() {
		if r.Method == "sendMessage" {
			fmt.Println("sent to topic", r.Params.Get("message_thread_id"))
		}
	}
	// Output:
	// "hi" in topic 42
	// sent to topic 42
}
