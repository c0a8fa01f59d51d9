package main

import (
	"testing"

	"github.com/tgsession/session/examples/internal/demo/demotest"
)

// Version-1 data is migrated on first read and written back in the envelope with version 2 (no "e": Memory expires sessions natively); a chat idle for longer than the TTL loses its pets, while one used within it keeps them (the expiry slides).
func TestDemo(t *testing.T) {
	demotest.Play(t, run, []string{
		"(the old bot stored Alice's pets by name)",
		"Alice: /raw",
		"  bot: Stored: {\"petNames\":[\"Rex\",\"Tom\"]}",
		"Alice: /pets",
		"  bot: Your pets: Rex (?), Tom (?).",
		"Alice: /raw",
		"  bot: Stored: {\"__d\":{\"pets\":[{\"name\":\"Rex\",\"species\":\"?\"},{\"name\":\"Tom\",\"species\":\"?\"}]},\"v\":2}",
		"Alice: /adopt Bella cat",
		"  bot: Welcome, Bella the cat!",
		"Bob: /adopt Rocky dog",
		"  bot: Welcome, Rocky the dog!",
		"(5 days pass)",
		"Bob: /pets",
		"  bot: Your pets: Rocky (dog).",
		"(5 more days pass: Alice's chat has been idle for 10, Bob's for 5)",
		"Alice: /pets",
		"  bot: You have no pets.",
		"Alice: /raw",
		"  bot: Stored: nothing",
		"Bob: /pets",
		"  bot: Your pets: Rocky (dog).",
	})
}
