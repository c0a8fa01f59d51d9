package session

// Internals that the external tests (package session_test) look at.

// MemoryMapLen reports how many items m's map holds, expired or not.
func MemoryMapLen[T any](m *Memory[T]) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.items)
}

// TestClock is the fake clock of the internal tests, for the external ones.
type TestClock = testClock

// NewTestClock returns a fake clock that moves only when told to.
func NewTestClock() *TestClock { return newTestClock() }
