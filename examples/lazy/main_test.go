package main

import (
	"testing"

	"github.com/tgsession/session/examples/internal/demo/demotest"
)

// The demo's chatter costs no storage read: 7 updates, 3 reads (the two
// /note commands and /notes).
func TestDemo(t *testing.T) {
	demotest.Play(t, run, []string{
		"Alice in -1001: morning all",
		"Alice in -1001: /note book the room",
		"  bot in -1001: Noted (1).",
		"Bob in -1001: coffee first",
		"Bob in -1001: /note bring the slides",
		"  bot in -1001: Noted (2).",
		"Carol in -1001: ok!",
		"Alice in -1001: /notes",
		"  bot in -1001: 1. book the room",
		"                2. bring the slides",
		"Bob in -1001: /stats",
		"  bot in -1001: 7 updates, 6 storage reads.",
	})
}
