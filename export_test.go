package session

// Internals that the external tests (package session_test) look at.

// MemoryMapLen reports how many items m's map holds, expired or not.
func MemoryMapLen[T any](m *Memory[T]) int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.items)
}
