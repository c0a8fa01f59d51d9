package main

import (
	"testing"

	"github.com/tgsession/session/examples/internal/demo/demotest"
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
