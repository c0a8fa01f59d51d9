package storagetest

import (
	"context"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// applied locks key on lk for mark and reports whether the lease says the
// update was applied, releasing it.
func applied(t *testing.T, lk session.Locker, key, mark string) bool {
	t.Helper()
	l := lockMarked(t, lk, key, mark)
	defer l.Release()
	return l.Applied()
}

func testAppliedMarks(t *testing.T, p *pair) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		change session.Change
	}{
		{"Write", p.write("v")},
		{"Touch", session.Change{Op: session.OpTouch, TTL: p.ttl}},
		{"Delete", session.Change{Op: session.OpDelete}},
		{"Keep", session.Change{Op: session.OpKeep}},
	} {
		t.Run(c.name, func(t *testing.T) {
			key := "applied-" + c.name
			l := lockMarked(t, p.la, key, "7:1")
			assert.False(t, l.Applied(), "a's first lease for update 7:1 says it was applied")
			require.NoError(t, l.Commit(ctx, c.change), "a: commit for update 7:1")

			assert.True(t, applied(t, p.lb, key, "7:1"), "b: update 7:1, committed by a, is not applied")
			assert.True(t, applied(t, p.la, key, "7:1"), "a: update 7:1, committed by a, is not applied")
			assert.False(t, applied(t, p.lb, key, "7:2"), "b: update 7:2 was never committed")
			assert.False(t, applied(t, p.lb, key, "8:1"), "b: update 1 of another bot was never committed")
			assert.False(t, applied(t, p.lb, key+"-other", "7:1"), "b: update 7:1 was committed for another key")
			assert.False(t, applied(t, p.lb, key, ""), "b: a lease without a mark says it was applied")
		})
	}
	t.Run("ReleaseRecordsNothing", func(t *testing.T) {
		l := lockMarked(t, p.la, "applied-release", "7:3")
		l.Release()
		assert.False(t, applied(t, p.lb, "applied-release", "7:3"), "b: a released lease recorded its update")
		l = lockMarked(t, p.la, "applied-nomark", "")
		require.NoError(t, l.Commit(ctx, p.write("v")))
		assert.False(t, applied(t, p.lb, "applied-nomark", ""), "b: a commit without a mark recorded one")
	})
}

func testAppliedWindow(t *testing.T, p *pair) {
	ctx := context.Background()
	const key = "applied-window"
	n := session.AppliedWindow
	for i := 1; i <= n; i++ {
		lk := p.la
		if i%2 == 0 {
			lk = p.lb
		}
		l := lockMarked(t, lk, key, "7:"+strconv.Itoa(i))
		require.False(t, l.Applied(), "update 7:%d, never committed, is applied", i)
		require.NoError(t, l.Commit(ctx, p.write(strconv.Itoa(i))), "commit for update 7:%d", i)
	}
	for _, i := range []int{1, 2, n / 2, n} {
		assert.True(t, applied(t, p.lb, key, "7:"+strconv.Itoa(i)),
			"update 7:%d, one of the last %d committed to the key, is not applied", i, n)
	}
}
