package session

import "sync"

// Internals that the external tests (package session_test) look at.

// MemoryMapLen reports how many items m's map holds, expired or not.
func MemoryMapLen(m *Memory) int {
	n := 0
	for i := range m.shards {
		s := &m.shards[i]
		s.mu.RLock()
		n += len(s.items)
		s.mu.RUnlock()
	}
	return n
}

// TestClock is the fake clock of the internal tests, for the external ones.
type TestClock = testClock

// NewTestClock returns a fake clock that moves only when told to.
func NewTestClock() *TestClock { return newTestClock() }

// LockWaiters counts the updates waiting for a key of store in the
// lock table of this process.
func LockWaiters(store Store) int { return waitingIn(store) }

// NewFakeLockStore returns the internal tests' fake store with a Locker
// of its own (see lockStore), for the external ones. The stores are kept
// alive: the chat migration tests mark them as migrating, by address, and
// a store of a later test at a reused address would be taken for one of
// them (the migrating table does not forget a store that is dropped).
func NewFakeLockStore() Store {
	s := newLockStore()
	keptMu.Lock()
	kept = append(kept, s)
	keptMu.Unlock()
	return s
}

var (
	keptMu sync.Mutex
	kept   []*lockStore
)

// FakeLockStoreHeld lists the keys whose lease s has not seen ended.
func FakeLockStoreHeld(s Store) []string { return s.(*lockStore).heldKeys() }

// FakeLockStoreEvents returns and forgets what s has seen.
func FakeLockStoreEvents(s Store) []string { return s.(*lockStore).take() }
