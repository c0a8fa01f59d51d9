package main

import (
	"testing"

	"github.com/tgsession/session/examples/internal/demo/demotest"
)

// Sessions in the bbolt file survive closing and reopening it, and the store lists them.
func TestDemo(t *testing.T) {
	demotest.Play(t, run, []string{
		"Alice: /visit",
		"  bot: Visit number 1.",
		"Bob: /visit",
		"  bot: Visit number 1.",
		"Alice: /visit",
		"  bot: Visit number 2.",
		"(the bot restarts: the file is closed and opened again)",
		"Alice: /visit",
		"  bot: Visit number 3.",
		"Bob: /visit",
		"  bot: Visit number 2.",
		"Bob: /keys",
		"  bot: Stored: 101, 202",
	})
}
