package main

import (
	"testing"

	"github.com/tgsession/session/examples/internal/demo/demotest"
)

// The group's list moves to the supergroup's key when Telegram migrates the chat: the service message in the new chat already sees it, nothing is left under the old key, and the second service message moves nothing twice.
func TestDemo(t *testing.T) {
	demotest.Play(t, run, []string{
		"Alice in -1001: /add milk",
		"  bot in -1001: Added; 1 on the list.",
		"Bob in -1001: /add bread",
		"  bot in -1001: Added; 2 on the list.",
		"Alice in -1001: /keys",
		"  bot in -1001: Stored: -1001",
		"(Alice makes the group a supergroup; Telegram: in -1001, migrate_to_chat_id -1009876543210)",
		"(Telegram: in -1009876543210, migrate_from_chat_id -1001)",
		"  bot in -1009876543210: This group is now a supergroup; its list came along (2 on it).",
		"Bob in -1009876543210: /add eggs",
		"  bot in -1009876543210: Added; 3 on the list.",
		"Alice in -1009876543210: /list",
		"  bot in -1009876543210: The list: milk, bread, eggs.",
		"Alice in -1009876543210: /keys",
		"  bot in -1009876543210: Stored: -1009876543210",
	})
}
