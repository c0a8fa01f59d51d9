package main

import (
	"testing"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo/demotest"
	"github.com/tgsession/session/storagetest"
)

// Sessions kept in files survive a restart of the bot.
func TestDemo(t *testing.T) {
	demotest.Play(t, run, []string{
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
	})
}

// FileStore passes the conformance suite for session stores.
func TestFileStoreConformance(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.Store {
		return FileStore{Dir: t.TempDir()}
	})
}
