package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session/examples/internal/demo"
)

// Two replicas, each with its own connection pool, share the sessions: the count goes on whichever replica answers. Without PostgreSQL the demo says so and plays the same conversation on the in-memory store.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, ""), "output:\n%s", out.String())
	assert.Contains(t, out.String(), demo.Header)
	assert.Equal(t, []string{
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
	}, demo.Transcript(out.String()))
}

// Without PostgreSQL the demo says so, falls back to the in-memory store,
// and plays the same conversation.
func TestDemoWithoutPostgres(t *testing.T) {
	t.Setenv("DATABASE_URL", "postgres://postgres:secret@127.0.0.1:1/test") // nothing listens on port 1
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, ""), "output:\n%s", out.String())
	assert.Contains(t, out.String(), "# PostgreSQL does not answer at 127.0.0.1:1/test")
	assert.Contains(t, out.String(), "Falling back to the in-memory store")
	assert.NotContains(t, out.String(), "secret", "the password is not printed")
	assert.Equal(t, []string{
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
	}, demo.Transcript(out.String()))
}
