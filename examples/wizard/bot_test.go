package main

import (
	"context"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// asIs is the session given to runner.Run: newBot's handler has its own.
type asIs struct{}

func (asIs) Middleware(h session.Handler[Session]) session.Handler[Session] { return h }
func (asIs) Key(u session.Update) (string, bool)                            { return session.ByChat(u) }

// startBot runs the bot with long polling against a fake Telegram until
// the test ends.
func startBot(t *testing.T) *telegramtest.Server {
	srv := telegramtest.NewServer()
	t.Cleanup(srv.Close)
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
	require.NoError(t, err)
	h, _, err := newBot(nil)
	require.NoError(t, err)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- runner.Run(ctx, bot, asIs{}, h, runner.Options{Source: runner.NewPolling(bot, runner.PollingOptions{Timeout: 1})})
	}()
	t.Cleanup(func() { stop(); assert.NoError(t, <-done) })
	return srv
}

const toppingsPrompt = "Toppings? Press to add or remove, then Done."

// An order through the buttons, as a user taps them; the buttons of a
// question already answered are closed, whichever is pressed again.
func TestBot(t *testing.T) {
	srv := startBot(t)
	alice := srv.Conversation(t, 101, 101)

	alice.Send("/order").Expect("Which size?").ExpectButtons("Small", "Large")
	alice.Press("Large").Expect(toppingsPrompt)
	alice.Press("cheese").Expect(toppingsPrompt).ExpectButtons("✓ cheese", "mushrooms", "olives", "« Back", "Done")
	alice.Press("Done").Expect("Where should we deliver it?")

	// "Small" is only under the size question, answered long ago.
	alice.Press("Small").Expect().ExpectAnswer("This question is closed.")
	alice.Send("1 Main Street").Expect("A large pizza with cheese, to 1 Main Street. Order it?")
	alice.Press("Yes").Expect("Order #1 placed: a large pizza with cheese. 🍕")
	// The confirmation again, after the order was placed: nothing is ordered twice.
	alice.Press("Yes").Expect().ExpectAnswer("This question is closed.")
	alice.Send("hi").Expect("Send /order to order a pizza.")
}
