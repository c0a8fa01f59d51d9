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

	// The code under test: echo the message back as a reply.
	updates := bot.GetUpdatesChan(tgbotapi.UpdateConfig{Timeout: 30})
	u := <-updates
	reply := tgbotapi.NewMessage(u.Message.Chat.ID, "you said: "+u.Message.Text)
	reply.ReplyToMessageID = u.Message.MessageID
	if _, err := bot.Send(reply); err != nil {
		fmt.Println(err)
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

// A test presses an inline button under a message the bot sent; the bot
// receives the callback query, carrying that message.
func ExampleServer_PressButton() {
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	if err != nil {
		fmt.Println(err)
		return
	}

	ask := tgbotapi.NewMessage(42, "Pizza tonight?")
	ask.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
		tgbotapi.NewInlineKeyboardButtonData("Yes", "yes"),
		tgbotapi.NewInlineKeyboardButtonData("No", "no"),
	))
	m, err := bot.Send(ask)
	if err != nil {
		fmt.Println(err)
		return
	}

	if _, err := srv.PressButton(42, 42, m.MessageID, "yes"); err != nil {
		fmt.Println(err)
		return
	}
	ups, err := bot.GetUpdates(tgbotapi.UpdateConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	q := ups[0].CallbackQuery
	fmt.Printf("user %d pressed %q under %q\n", q.From.ID, q.Data, q.Message.Text)

	// What the bot sent, as recorded.
	sent := srv.Sent()[0]
	fmt.Println(sent.Method, sent.ChatID, sent.Text, *sent.InlineKeyboard[0][1].CallbackData)
	// Output:
	// user 42 pressed "yes" under "Pizza tonight?"
	// sendMessage 42 Pizza tonight? no
}
