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

// The demo's chatter costs no storage read: 7 updates, 3 reads (the two
// /note commands and /notes).
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, ""), "output:\n%s", out.String())
	assert.Contains(t, out.String(), demo.Header)
	assert.Equal(t, []string{
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
		"  bot in -1001: 7 updates, 3 storage reads.",
	}, demo.Transcript(out.String()))
}
