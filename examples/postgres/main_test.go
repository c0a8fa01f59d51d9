package main

import (
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/tgsession/session/examples/internal/demo/demotest"
)

// visits is the demo's transcript, with PostgreSQL or without.
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

// Two replicas, each with its own connection pool, share the sessions: the count goes on whichever replica answers. Without PostgreSQL the demo says so and plays the same conversation on the in-memory store.
func TestDemo(t *testing.T) {
	demotest.Play(t, run, visits)
}

// Without PostgreSQL the demo says so, falls back to the in-memory store,
// and plays the same conversation.
func TestDemoWithoutPostgres(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://postgres:secret@127.0.0.1:1/test") // nothing listens on port 1
	out := demotest.Play(t, run, visits)
	assert.Contains(t, out, "# PostgreSQL does not answer at 127.0.0.1:1/test")
	assert.Contains(t, out, "Falling back to the in-memory store")
	assert.NotContains(t, out, "secret", "the password is not printed")
}
