// Package demotest checks an example's offline demo from its main_test.go.
// It is a package of its own so that the example programs do not link
// package testing.
package demotest

import (
	"bytes"
	"context"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session/examples/internal/demo"
)

// Play plays run's offline demo (no token) within 30 seconds, requires it
// to succeed (showing the output if it does not), checks that the output
// has demo.Header and that its transcript (demo.Transcript) is want, and
// returns the whole output for further checks.
func Play(t *testing.T, run demo.Run, want []string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var out bytes.Buffer
	require.NoError(t, run(ctx, &out, ""), "output:\n%s", out.String())
	assert.Contains(t, out.String(), demo.Header)
	assert.Equal(t, want, demo.Transcript(out.String()))
	return out.String()
}
