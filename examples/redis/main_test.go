package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tgsession/session/examples/internal/demo/demotest"
)

// visits is the demo's transcript, with Redis or without.
var visits = []string{
	"Alice: /visit",
	"  bot: Visit number 1 (replica A).",
	"Alice: /visit",
	"  bot: Visit number 2 (replica B).",
	"Bob: /visit",
	"  bot: Visit number 1 (replica A).",
	"Alice: /visit",
	"  bot: Visit number 3 (replica B).",
	"Bob: /visit",
	"  bot: Visit number 2 (replica A).",
}

// Two replicas, each with its own Redis client, share the sessions: the count goes on whichever replica answers. Without Redis the demo says so and plays the same conversation on the in-memory store.
func TestDemo(t *testing.T) {
	demotest.Play(t, run, visits)
}

// Without Redis the demo says so, falls back to the in-memory store, and
// plays the same conversation.
func TestDemoWithoutRedis(t *testing.T) {
	t.Setenv("REDIS_ADDR", "127.0.0.1:1") // nothing listens on port 1
	out := demotest.Play(t, run, visits)
	assert.Contains(t, out, "# Redis does not answer at 127.0.0.1:1")
	assert.Contains(t, out, "Falling back to the in-memory store")
}
