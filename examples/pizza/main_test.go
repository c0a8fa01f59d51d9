package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// The offline demo plays the scripted conversation against the fake
// server and prints each chat's transcript with the right counts.
func TestDemo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	var buf bytes.Buffer
	start := time.Now()
	err := run(ctx, &buf, "")
	elapsed := time.Since(start)
	require.NoError(t, err, "output:\n%s", buf.String())
	assert.Less(t, elapsed, 3*time.Second, "the demo must not wait for a poll timeout or a retry")

	out := buf.String()
	assert.Contains(t, strings.SplitN(out, "\n", 2)[0], "fake Telegram")
	assert.Contains(t, out, "TELEGRAM_BOT_TOKEN")

	var transcript []string
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, "[chat ") {
			transcript = append(transcript, l)
		}
	}
	assert.Equal(t, []string{
		"[chat Alice] Alice: 🍕",
		"[chat Alice] Alice: 🍕🍕 double pizza day!",
		"[chat Alice] Alice: /hunger",
		"[chat Alice] bot: Your hunger level is 2!",
		"[chat Alice] Alice: salad for a change 🥗",
		"[chat Alice] Alice: ok, one more 🍕",
		"[chat Alice] Alice: /hunger",
		"[chat Alice] bot: Your hunger level is 3!",
		"[chat Bob] Bob: /hunger",
		"[chat Bob] bot: Your hunger level is 0!",
		"[chat Bob] Bob: one 🍕 for me, please",
		"[chat Bob] Bob: /hunger",
		"[chat Bob] bot: Your hunger level is 1!",
	}, transcript)

	// The replies alone, per chat and in order: what the counts must be.
	replies := map[string][]string{}
	for _, l := range transcript {
		if chat, text, ok := strings.Cut(strings.TrimPrefix(l, "[chat "), "] bot: "); ok {
			replies[chat] = append(replies[chat], text)
		}
	}
	assert.Equal(t, map[string][]string{
		"Alice": {"Your hunger level is 2!", "Your hunger level is 3!"},
		"Bob":   {"Your hunger level is 0!", "Your hunger level is 1!"},
	}, replies)
}

// A cancelled context stops the demo with its error instead of hanging.
func TestDemoCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, &bytes.Buffer{}, "") }()
	select {
	case err := <-done:
		assert.ErrorIs(t, err, context.Canceled)
	case <-time.After(5 * time.Second):
		t.Fatal("run did not return after its context was cancelled")
	}
}
