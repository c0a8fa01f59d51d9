package telegramtest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"sync/atomic"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// A chat with a bot run by runner.Run: each step returns once the bot
// confirmed the update, with what the bot did meanwhile. In a test,
// srv.Conversation(t, ...) does the same and checks with Expect.
func ExampleServer_Chat() {
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	if err != nil {
		fmt.Println(err)
		return
	}
	sess, err := session.New(session.Options[struct{}]{})
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- runner.Run(ctx, bot, sess, signupBot2, runner.Options{}) }()
	defer func() { stop(); <-done }()

	alice := srv.Chat(101, 101)
	turn, err := alice.Send(context.Background(), "/start")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(turn.Texts(), turn.Buttons())
	turn, err = alice.Press(context.Background(), "Yes")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%s: %q, then %v\n", turn.Button, turn.Answer.Text, turn.Texts())
	// Output:
	// [Pizza tonight?] [Yes No]
	// Yes: "Great!", then [Ordered.]
}

// signupBot2 asks, and answers the press.
func signupBot2(c *session.Context[struct{}]) error {
	if q := c.Update.CallbackQuery; q != nil {
		if _, err := c.Bot.Request(tgbotapi.NewCallback(q.ID, "Great!")); err != nil {
			return err
		}
		_, err := c.Bot.Send(tgbotapi.NewMessage(q.Message.Chat.ID, "Ordered."))
		return err
	}
	ask := tgbotapi.NewMessage(c.Update.Message.Chat.ID, "Pizza tonight?")
	ask.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
		tgbotapi.NewInlineKeyboardButtonData("Yes", "yes"),
		tgbotapi.NewInlineKeyboardButtonData("No", "no"),
	))
	_, err := c.Bot.Send(ask)
	return err
}

// In webhook mode the fake POSTs each update to the webhook with its
// secret header, and sends it again until it is answered 2xx, as
// Telegram does.
func ExampleServer_SetWebhook() {
	srv := telegramtest.NewServer()
	defer srv.Close()
	var calls atomic.Int32
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if calls.Add(1) == 1 {
			w.WriteHeader(http.StatusServiceUnavailable) // not ready yet
			return
		}
		fmt.Println("secret:", r.Header.Get(runner.SecretHeader))
	}))
	defer hook.Close()
	srv.SetWebhook(hook.URL, "s3cret") // or the bot's own setWebhook call

	turn, err := srv.Chat(7, 7).Send(context.Background(), "hi")
	if err != nil {
		fmt.Println(err)
		return
	}
	d := srv.Deliveries()[0]
	fmt.Println(d.UpdateID == turn.UpdateID, d.Attempts, d.Statuses, d.Acknowledged)
	// Output:
	// secret: s3cret
	// true 2 [503 200] true
}

// The builders give Telegram's JSON, with what tgbotapi drops: here a
// command in a forum topic.
func ExampleChat_MessageUpdate() {
	srv := telegramtest.NewServer()
	defer srv.Close()
	raw := srv.Chat(-1001234567890, 7).InTopic(42).MessageUpdate("/help@" + telegramtest.BotUserName)
	var u struct {
		Message struct {
			ThreadID int              `json:"message_thread_id"`
			IsTopic  bool             `json:"is_topic_message"`
			Chat     map[string]any   `json:"chat"`
			Entities []map[string]any `json:"entities"`
		} `json:"message"`
	}
	if err := json.Unmarshal(raw, &u); err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(u.Message.ThreadID, u.Message.IsTopic, u.Message.Chat["type"], u.Message.Chat["is_forum"], u.Message.Entities)
	// Output:
	// 42 true supergroup true [map[length:14 offset:0 type:bot_command]]
}

// Two replicas of a webhook bot behind a round-robin load balancer.
func ExampleRoundRobin() {
	srv := telegramtest.NewServer()
	defer srv.Close()
	replica := func(name string) *httptest.Server {
		return httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
			fmt.Println("handled by", name)
		}))
	}
	a, b := replica("A"), replica("B")
	defer a.Close()
	defer b.Close()
	lb := httptest.NewServer(telegramtest.RoundRobin(a.URL, b.URL))
	defer lb.Close()
	srv.SetWebhook(lb.URL, "")

	chat := srv.Chat(7, 7)
	for _, text := range []string{"one", "two", "three"} {
		if _, err := chat.Send(context.Background(), text); err != nil {
			fmt.Println(err)
		}
	}
	// Output:
	// handled by A
	// handled by B
	// handled by A
}
