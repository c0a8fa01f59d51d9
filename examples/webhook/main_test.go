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

// Updates POSTed with the secret are answered 200 and handled in order per chat; a wrong secret gets 401 and a GET 405, and neither reaches the bot.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, ""), "output:\n%s", out.String())
	assert.Contains(t, out.String(), demo.Header)
	assert.Equal(t, []string{
		"Alice: hello",
		"  webhook: 200 OK",
		"  bot: Message 1 in this chat: \"hello\"",
		"Bob: hi there",
		"  webhook: 200 OK",
		"  bot: Message 1 in this chat: \"hi there\"",
		"Alice: second message",
		"  webhook: 200 OK",
		"  bot: Message 2 in this chat: \"second message\"",
		"(a request with the wrong secret)",
		"Mallory: let me in",
		"  webhook: 401 Unauthorized",
		"(a GET, as a browser would send)",
		"  webhook: 405 Method Not Allowed",
		"Alice: third",
		"  webhook: 200 OK",
		"  bot: Message 3 in this chat: \"third\"",
	}, demo.Transcript(out.String()))
}
