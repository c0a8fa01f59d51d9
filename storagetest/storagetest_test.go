package storagetest_test

import (
	"testing"
	"time"

	"github.com/tgsession/session"
	"github.com/tgsession/session/storagetest"
)

func TestMemory(t *testing.T) {
	storagetest.Run(t, func(*testing.T) session.StorageAdapter[storagetest.Value] {
		return session.NewMemory[storagetest.Value]()
	})
}

func TestMemoryWithTTL(t *testing.T) {
	storagetest.Run(t, func(*testing.T) session.StorageAdapter[storagetest.Value] {
		return session.NewMemory[storagetest.Value](session.MemoryOptions{TTL: time.Hour})
	})
}

func TestEncodedMemory(t *testing.T) {
	storagetest.Run(t, func(*testing.T) session.StorageAdapter[storagetest.Value] {
		return session.Encoded[storagetest.Value](session.NewMemory[[]byte](), nil)
	})
}

func TestMemoryExpiry(t *testing.T) {
	const ttl = 400 * time.Millisecond
	storagetest.RunExpiry(t, func(*testing.T) session.StorageAdapter[[]byte] {
		return session.NewMemory[[]byte](session.MemoryOptions{TTL: ttl})
	}, ttl)
}
