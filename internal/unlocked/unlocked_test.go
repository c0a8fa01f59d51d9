package unlocked

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// lockingMemory is a Memory that also claims a Locker, as the adapters do.
type lockingMemory struct{ *session.Memory }

func (lockingMemory) Lock(context.Context, string) (session.Lease, error) { panic("not used") }

func TestViewPassesEverythingButTheLock(t *testing.T) {
	ctx := context.Background()
	base := lockingMemory{session.NewMemory()}
	v := Of(base)
	_, isLocker := v.(session.Locker)
	assert.False(t, isLocker, "no Lock method")
	_, found := session.Unwrap[session.Locker](v)
	assert.False(t, found, "and nothing below it through Unwrap")

	require.NoError(t, v.Write(ctx, "a", []byte("1")))
	exp, ok := session.Unwrap[session.Expirer](v)
	require.True(t, ok)
	require.NoError(t, exp.WriteTTL(ctx, "b", []byte("2"), time.Hour))
	require.NoError(t, exp.Touch(ctx, "b", time.Hour))
	got, found, err := base.Read(ctx, "b")
	require.NoError(t, err)
	assert.True(t, found)
	assert.Equal(t, "2", string(got))

	lister, ok := session.Unwrap[session.Lister](v)
	require.True(t, ok)
	var keys []string
	for k, err := range lister.Keys(ctx) {
		require.NoError(t, err)
		keys = append(keys, k)
	}
	slices.Sort(keys)
	assert.Equal(t, []string{"a", "b"}, keys)

	require.NoError(t, v.Delete(ctx, "a"))
	_, found, err = v.Read(ctx, "a")
	require.NoError(t, err)
	assert.False(t, found)
}
