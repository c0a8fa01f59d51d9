package storagetest_test

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/storagetest"
)

func TestMemory(t *testing.T) {
	storagetest.Run(t, func(*testing.T) session.Store { return session.NewMemory() })
}

func TestMemoryExpiry(t *testing.T) {
	storagetest.RunExpiry(t, func(*testing.T) session.Store { return session.NewMemory() })
}

// wrapper is a store that logs or counts: it keeps its base's
// capabilities by Unwrap alone.
type wrapper struct{ session.Store }

func (w wrapper) Unwrap() session.Store { return w.Store }

// TestWrappedMemory: the suites find capabilities through Unwrap.
func TestWrappedMemory(t *testing.T) {
	storagetest.Run(t, func(*testing.T) session.Store { return wrapper{wrapper{session.NewMemory()}} })
	storagetest.RunExpiry(t, func(*testing.T) session.Store { return wrapper{session.NewMemory()} })
}

// refLease is the lease of the reference store's RunLocker checks.
const refLease = 150 * time.Millisecond

// refPair returns two clients of one reference backend with flaw f.
func refPair(f flaw) func(t *testing.T) (a, b session.Store) {
	return func(t *testing.T) (a, b session.Store) {
		be := newBackend()
		return newClient(be, refLease, f), newClient(be, refLease, f)
	}
}

// TestReference runs every suite over the reference locking store, so
// that the Locker checks of Run, RunLocker and the fault load run here
// too, not only against servers.
func TestReference(t *testing.T) {
	t.Run("Run", func(t *testing.T) {
		storagetest.Run(t, func(*testing.T) session.Store { return newClient(newBackend(), refLease, sound) })
	})
	t.Run("RunExpiry", func(t *testing.T) {
		storagetest.RunExpiry(t, func(*testing.T) session.Store { return newClient(newBackend(), refLease, sound) })
	})
	t.Run("RunLocker", func(t *testing.T) {
		storagetest.RunLocker(t, refPair(sound), refLease)
	})
}

// TestFaultLoad: the fault load over the reference store, with the
// server "down" for a while: failures are counted and the store's, and
// nothing acknowledged is lost.
func TestFaultLoad(t *testing.T) {
	c := newClient(newBackend(), refLease, sound)
	l := storagetest.StartFaultLoad(t, c, 4, "ref: ")
	require.Eventually(t, func() bool { return l.Okays() >= 40 }, 10*time.Second, 5*time.Millisecond)
	c.faulty.Store(true)
	require.Eventually(t, func() bool { return l.Failures() >= 8 }, 10*time.Second, 5*time.Millisecond)
	c.faulty.Store(false)
	okays := l.Okays()
	require.Eventually(t, func() bool { return l.Okays() >= okays+40 }, 10*time.Second, 5*time.Millisecond)
	l.Stop()
	l.Check(t)
}

func BenchmarkMemory(b *testing.B) {
	storagetest.RunBenchmarks(b, storagetest.Bench{
		NewStore: func(*testing.B) session.Store { return session.NewMemory() },
	})
}

func BenchmarkReference(b *testing.B) {
	be := newBackend()
	storagetest.RunBenchmarks(b, storagetest.Bench{
		NewStore:   func(*testing.B) session.Store { return newClient(be, time.Second, sound) },
		Unlocked:   func(*testing.B) session.Store { return storeOnly{newClient(be, time.Second, sound)} },
		RoundTrips: be.trips.Load,
	})
}

// selfTestEnv names, in a child process of TestSuitesCatchFlaws, the
// suite to run over a flawed store.
const selfTestEnv = "STORAGETEST_SELFTEST"

// TestSuitesCatchFlaws runs the suites over stores with deliberate bugs,
// each in a child process (a failing suite fails its test), and checks
// that the suite fails, in the subtest that should catch the bug. Two
// clients that lock only in-process must fail RunLocker's exclusion
// checks: that is why RunLocker takes two clients.
func TestSuitesCatchFlaws(t *testing.T) {
	if mode := os.Getenv(selfTestEnv); mode != "" {
		runFlawed(t, mode)
		return
	}
	if testing.Short() {
		t.Skip("runs child processes")
	}
	for _, c := range []struct {
		mode  string
		fails bool
		want  []string // in the output
	}{
		{"locallocks", true, []string{
			"--- FAIL: TestSuitesCatchFlaws/MutualExclusion",
			"--- FAIL: TestSuitesCatchFlaws/Exclusion",
		}},
		{"nofence", true, []string{"--- FAIL: TestSuitesCatchFlaws/Fencing/Write "}},
		{"revive", true, []string{"--- FAIL: TestSuitesCatchFlaws/TouchMissingOrExpired"}},
		{"nolocker", false, []string{
			"--- SKIP: TestSuitesCatchFlaws/Expirer",
			"--- SKIP: TestSuitesCatchFlaws/Lister",
			"--- SKIP: TestSuitesCatchFlaws/Locker",
			"store has no Lister",
			"store has no Locker",
		}},
	} {
		t.Run(c.mode, func(t *testing.T) {
			cmd := exec.Command(os.Args[0], "-test.run=^TestSuitesCatchFlaws$", "-test.count=1", "-test.v")
			cmd.Env = append(os.Environ(), selfTestEnv+"="+c.mode)
			out, err := cmd.CombinedOutput()
			if c.fails {
				assert.Error(t, err, "the suite passed a store with flaw %q:\n%s", c.mode, out)
			} else {
				assert.NoError(t, err, "the suite failed:\n%s", out)
			}
			for _, w := range c.want {
				assert.Contains(t, string(out), w)
			}
		})
	}
}

// storeOnly shows only the three methods of its store: none of its
// capabilities, and no Unwrap to find them by (an adapter's Unlocked
// view).
type storeOnly struct{ session.Store }

func runFlawed(t *testing.T, mode string) {
	switch mode {
	case "locallocks":
		storagetest.RunLocker(t, refPair(localLocks), refLease)
	case "nofence":
		storagetest.RunLocker(t, refPair(noFence), refLease)
	case "revive":
		storagetest.RunExpiry(t, func(*testing.T) session.Store { return newClient(newBackend(), refLease, revive) })
	case "nolocker":
		storagetest.Run(t, func(*testing.T) session.Store { return storeOnly{session.NewMemory()} })
	default:
		t.Fatalf("unknown %s %q", selfTestEnv, mode)
	}
}

// TestRunLockerNeedsTwoClients: one store given twice is refused.
func TestRunLockerNeedsTwoClients(t *testing.T) {
	if os.Getenv(selfTestEnv) == "same" {
		c := newClient(newBackend(), refLease, sound)
		storagetest.RunLocker(t, func(*testing.T) (a, b session.Store) { return c, c }, refLease)
		return
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestRunLockerNeedsTwoClients$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), selfTestEnv+"=same")
	out, err := cmd.CombinedOutput()
	assert.Error(t, err)
	assert.True(t, strings.Contains(string(out), "one store twice"), "%s", out)
}
