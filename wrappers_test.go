package session_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/storagetest"
)

// byteStore is a user's own byte store with no capabilities at all.
type byteStore struct{ m *session.Memory[[]byte] }

func (b byteStore) Read(ctx context.Context, k string) ([]byte, bool, error) { return b.m.Read(ctx, k) }
func (b byteStore) Write(ctx context.Context, k string, v []byte) error      { return b.m.Write(ctx, k, v) }
func (b byteStore) Delete(ctx context.Context, k string) error               { return b.m.Delete(ctx, k) }

func TestWrappersConformance(t *testing.T) {
	for name, newStore := range map[string]func() session.StorageAdapter[storagetest.Value]{
		"Encoded over Memory": func() session.StorageAdapter[storagetest.Value] {
			return session.Encoded[storagetest.Value](session.NewMemory[[]byte](), nil)
		},
		"Encoded over a store without capabilities": func() session.StorageAdapter[storagetest.Value] {
			return session.Encoded[storagetest.Value](byteStore{session.NewMemory[[]byte]()}, nil)
		},
		"Enhance over Memory": func() session.StorageAdapter[storagetest.Value] {
			s, err := session.Enhance[storagetest.Value](session.NewMemory[[]byte](), session.EnhanceOptions{TTL: time.Hour})
			require.NoError(t, err)
			return s
		},
	} {
		t.Run(name, func(t *testing.T) {
			storagetest.Run(t, func(*testing.T) session.StorageAdapter[storagetest.Value] { return newStore() })
		})
	}
}

func TestWrappersPassCapabilitiesThrough(t *testing.T) {
	ctx := context.Background()
	clock := session.NewTestClock()
	base := session.NewMemory[[]byte](session.MemoryOptions{TTL: time.Hour, Clock: clock.Now})
	enc := session.Encoded[tally](base, nil)
	enh, err := session.Enhance[tally](base, session.EnhanceOptions{
		Migrations: map[float64]session.Migration{
			1: session.Migrate(func(old tally) (tally, error) { old.Count *= 10; return old, nil }),
		},
	})
	require.NoError(t, err)

	require.NoError(t, enc.Write(ctx, "a", tally{1})) // bare data: version 0 to Enhance
	require.NoError(t, enh.Write(ctx, "b", tally{2}))

	t.Run("iteration", func(t *testing.T) {
		got := map[string]tally{}
		for e, err := range enh.(session.Iterator[tally]).Entries(ctx) {
			require.NoError(t, err)
			got[e.Key] = e.Value
		}
		assert.Equal(t, map[string]tally{"a": {10}, "b": {2}}, got, "Enhance lists through its base and migrates")
	})

	t.Run("touch", func(t *testing.T) {
		clock.Advance(50 * time.Minute)
		require.NoError(t, enc.(session.Toucher).Touch(ctx, "a"))
		clock.Advance(50 * time.Minute)
		_, found, err := enc.Read(ctx, "a")
		require.NoError(t, err)
		assert.True(t, found, "touched through Encoded")
		_, found, err = enc.Read(ctx, "b")
		require.NoError(t, err)
		assert.False(t, found, "the untouched one expired in the base")
	})

	t.Run("lock", func(t *testing.T) {
		unlock, err := base.Lock(ctx, "k")
		require.NoError(t, err)
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		_, err = enc.(session.Locker).Lock(short, "k")
		assert.ErrorIs(t, err, context.DeadlineExceeded, "Encoded locks with its base store's lock")
		unlock()
		again, err := enh.(session.Locker).Lock(ctx, "k")
		require.NoError(t, err)
		again()
	})

	t.Run("no iterator in the base", func(t *testing.T) {
		plain := session.Encoded[tally](byteStore{session.NewMemory[[]byte]()}, nil)
		for _, err := range plain.(session.Iterator[tally]).Keys(ctx) {
			assert.True(t, errors.Is(err, errors.ErrUnsupported), "got %v", err)
		}
	})
}
