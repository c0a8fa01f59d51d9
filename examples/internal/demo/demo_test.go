package demo

import (
	"bytes"
	"context"
	"errors"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// The player prints messages, presses and multi-line replies with their
// buttons, reports a failing handler in the transcript and in its error,
// and reports a button that is not there.
func TestPlay(t *testing.T) {
	sess, err := session.New(session.Options[int]{})
	require.NoError(t, err)
	h := sess.Middleware(func(c *session.Context[int]) error {
		switch {
		case c.Update.CallbackQuery != nil:
			_, err := c.Bot.Send(tgbotapi.NewMessage(c.Update.CallbackQuery.Message.Chat.ID, "pressed "+c.Update.CallbackQuery.Data))
			return err
		case c.Update.Message.Text == "boom":
			return errors.New("boom")
		}
		m := tgbotapi.NewMessage(c.Update.Message.Chat.ID, "line one\nline two")
		m.ReplyMarkup = tgbotapi.NewInlineKeyboardMarkup(tgbotapi.NewInlineKeyboardRow(
			tgbotapi.NewInlineKeyboardButtonData("Yes", "y"),
			tgbotapi.NewInlineKeyboardButtonData("No", "n"),
		))
		_, err := c.Bot.Send(m)
		return err
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	err = Play(ctx, &out, "test", h, []Line{
		{From: "Alice", Text: "hi", Note: "(a note)"},
		{From: "Alice", Press: "n"},
		{From: "Bob", Chat: -5, Text: "boom"},
		{From: "Bob", Press: "missing"},
	})
	require.Error(t, err)
	assert.ErrorContains(t, err, "boom")
	assert.ErrorContains(t, err, `no button "missing"`)
	assert.Contains(t, out.String(), Header)
	assert.Equal(t, []string{
		"(a note)",
		"Alice: hi",
		"  bot: line one",
		"       line two [Yes] [No]",
		"Alice: [presses No]",
		"  bot: pressed n",
		"Bob in -5: boom",
		"  (the handler failed: boom)",
	}, Transcript(out.String()))
}
