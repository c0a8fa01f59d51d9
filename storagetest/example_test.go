package storagetest_test

import (
	"context"
	"flag"
	"fmt"
	"sync"
	"testing"

	"github.com/tgsession/session"
	"github.com/tgsession/session/storagetest"
)

// mapStore is a store in a few lines: a map behind a mutex. A real
// adapter talks to Redis, SQL or files the same way. It has none of the
// optional capabilities (Expirer, Lister, Locker), so Run reports their
// subtests as skipped.
type mapStore struct {
	mu sync.Mutex
	m  map[string][]byte
}

func (s *mapStore) Read(ctx context.Context, key string) ([]byte, bool, error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	return v, ok, nil // callers do not change what Read returns
}

func (s *mapStore) Write(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = value // callers do not change what they wrote
	return nil
}

func (s *mapStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.m, key)
	return nil
}

// testMapStore is what an adapter's own test file holds, named
// TestMapStore there.
func testMapStore(t *testing.T) {
	storagetest.Run(t, func(t *testing.T) session.Store {
		return &mapStore{m: map[string][]byte{}}
	})
}

// Checking a storage adapter with the conformance suite. In your package,
// testMapStore is a test function and `go test -race` runs it; an Example
// cannot be given a *testing.T, so this one runs it through
// testing.RunTests, with -v turned off so the suite's progress lines do not
// mix with the Example's output.
func Example() {
	if v := flag.Lookup("test.v"); v != nil {
		old := v.Value.String()
		_ = v.Value.Set("false")
		defer func() { _ = v.Value.Set(old) }()
	}
	all := func(pat, name string) (bool, error) { return true, nil }
	ok := testing.RunTests(all, []testing.InternalTest{{Name: "TestMapStore", F: testMapStore}})
	fmt.Println("conforms:", ok)
	// Output:
	// conforms: true
}
