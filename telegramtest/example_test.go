package telegramtest_test

import (
	"context"
	"fmt"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session/telegramtest"
)

// A bot under test replies to a scripted message; the test then inspects
// what the bot sent.
func Example() {
	srv := telegramtest.NewServer()
	defer srv.Close()

	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	if err != nil {
		fmt.Println(err)
		return
	}
	srv.SendMessage(42, 42, "hello")

	// The code under test: echo every message back as a reply.
	updates := bot.GetUpdatesChan(tgbotapi.UpdateConfig{Timeout: 30})
	for u := range updates {
		reply := tgbotapi.NewMessage(u.Message.Chat.ID, "you said: "+u.Message.Text)
		reply.ReplyToMessageID = u.Message.MessageID
		if _, err := bot.Send(reply); err != nil {
			fmt.Println(err)
		}
		break
	}

	// Stop the polling loop and wait for it, before the deferred Close.
	srv.StopPolling(bot)
	for range updates {
	}

	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	sent, err := srv.WaitSent(ctx, 1)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range sent {
		fmt.Printf("to chat %d (reply to %d): %s\n", m.ChatID, m.ReplyTo, m.Text)
	}
	// Output:
	// to chat 42 (reply to 1): you said: hello
}
