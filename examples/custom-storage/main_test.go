package main

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo"
	"github.com/tgsession/session/storagetest"
)

// Sessions kept in files survive a restart of the bot.
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
		"(the bot restarts: its sessions are in files)",
		"Alice: /visit",
		"  bot: Visit number 3.",
		"Bob: /visit",
		"  bot: Visit number 2.",
	}, demo.Transcript(out.String()))
}

// FileStore passes the conformance suite for session stores.
func TestFileStoreConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.StorageAdapter[storagetest.Value] {
		return session.Encoded[storagetest.Value](FileStore{Dir: t.TempDir()}, nil)
	})
}
