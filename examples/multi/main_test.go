package main

import (
	"testing"

	"github.com/tgsession/session/examples/internal/demo/demotest"
)

// The chat's language is shared by the group and the score follows the user into the private chat; a new chat session the handler did not change is never written, so only the group's settings and the two users' scores are stored.
func TestDemo(t *testing.T) {
	demotest.Play(t, run, []string{
		"Alice in -1001: hi all",
		"Bob in -1001: hello",
		"Alice in -1001: /lang de",
		"  bot in -1001: Sprache: Deutsch.",
		"Alice in -1001: /score",
		"  bot in -1001: Du hast 1 Punkt(e).",
		"Alice: /score",
		"  bot: You have 1 point(s).",
		"Alice: a point from the private chat",
		"Alice in -1001: /score",
		"  bot in -1001: Du hast 2 Punkt(e).",
		"Bob in -1001: /score",
		"  bot in -1001: Du hast 1 Punkt(e).",
		"Alice: /keys",
		"  bot: Stored: chat:-1001, user:101, user:202",
	})
}
