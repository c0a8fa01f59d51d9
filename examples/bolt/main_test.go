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

// Sessions in the bbolt file survive closing and reopening it, and the store lists them.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, ""), "output:\n%s", out.String())
	assert.Contains(t, out.String(), demo.Header)
	assert.Equal(t, []string{
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
	}, demo.Transcript(out.String()))
}
