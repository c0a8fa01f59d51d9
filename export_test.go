package session

// Internals that the external tests (package session_test) look at.

// MemoryMapLen reports how many items m's map holds, expired or not.
func MemoryMapLen[T any](m *Memory[T]) int {
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
