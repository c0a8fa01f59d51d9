package storagetest

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// Counter is the session of the cross-process storm and the fault load:
// one number per chat.
type Counter struct {
	N int `json:"n"`
}

// CrossProcess configures [RunCrossProcess]. Zero counts take the
// defaults: 4 processes, 10 chats, 500 increments per chat per process, 2
// goroutines per chat in each process.
type CrossProcess struct {
	Processes  int // OS processes, each a copy of the test binary
	Chats      int // chats every process sends updates for
	Increments int // updates per chat per process
	Goroutines int // goroutines per chat in each process

	// NewStore returns a store over the shared data named namespace (a
	// key prefix, a table: whatever keeps concurrent runs apart), with a
	// [session.Locker]. It is called in each child process, and in the
	// test process to read the results; it must not delete the
	// namespace's data when t ends (the children's data outlives them),
	// which is Cleanup's job.
	NewStore func(t *testing.T, namespace string) session.Store

	// Unlocked returns a store over namespace's data like NewStore's but
	// without a Locker (an adapter's Unlocked view), so that the
	// middleware locks only within each process: the "Unlocked" storm
	// then loses updates, which shows that the test can tell the
	// difference. Nil skips that storm.
	Unlocked func(t *testing.T, namespace string) session.Store

	// Cleanup, if set, removes the data of namespace; the test process
	// calls it when the storm's subtest ends.
	Cleanup func(t *testing.T, namespace string)
}

const childEnv = "STORAGETEST_CROSSPROCESS_CHILD"

// RunCrossProcess runs the cross-process storm: cfg.Processes copies of
// the test binary send cfg.Increments updates for each of cfg.Chats chats
// through the middleware of [session.New] (a Counter session), all at
// once, each incrementing the chat's counter. Over cfg.NewStore's store
// (with its Locker), every chat must end at exactly
// Processes*Increments and no update may fail; over cfg.Unlocked's, the
// test logs how many increments were lost and requires that some were.
//
// Call it from a top-level test, with nothing before it in the test that
// must not run in the children: the children are this test binary run
// with -test.run naming that test, and in them RunCrossProcess does one
// child's share and returns. It runs the storms as subtests "Locked" and
// "Unlocked".
func RunCrossProcess(t *testing.T, cfg CrossProcess) {
	t.Helper()
	if cfg.Processes <= 0 {
		cfg.Processes = 4
	}
	if cfg.Chats <= 0 {
		cfg.Chats = 10
	}
	if cfg.Increments <= 0 {
		cfg.Increments = 500
	}
	if cfg.Goroutines <= 0 {
		cfg.Goroutines = 2
	}
	require.NotNil(t, cfg.NewStore, "CrossProcess.NewStore is nil")
	if env := os.Getenv(childEnv); env != "" {
		runChild(t, cfg, env)
		return
	}
	for _, locking := range []bool{true, false} {
		name := "Locked"
		if !locking {
			name = "Unlocked"
		}
		t.Run(name, func(t *testing.T) {
			if !locking && cfg.Unlocked == nil {
				t.Skip("CrossProcess.Unlocked is nil: no store view without a Locker to show that the storm can lose updates")
			}
			runStorm(t, cfg, locking)
		})
	}
}

// stormStore returns the store of a storm, checking that it has a Locker
// exactly when it should.
func stormStore(t *testing.T, cfg CrossProcess, namespace string, locking bool) session.Store {
	t.Helper()
	var s session.Store
	if locking {
		s = cfg.NewStore(t, namespace)
	} else {
		s = cfg.Unlocked(t, namespace)
	}
	require.False(t, isNil(s), "the store function returned a nil store")
	_, ok := session.Unwrap[session.Locker](s)
	if locking {
		require.True(t, ok, "CrossProcess.NewStore's store has no session.Locker: it cannot lock across processes")
	} else {
		require.False(t, ok, "CrossProcess.Unlocked's store has a session.Locker")
	}
	return s
}

func runStorm(t *testing.T, cfg CrossProcess, locking bool) {
	namespace := newNamespace(t, cfg, "storm")
	store := stormStore(t, cfg, namespace, locking)
	top, _, _ := strings.Cut(t.Name(), "/")
	// Children start together, after every process has had time to start
	// up, so that their updates overlap.
	start := time.Now().Add(2 * time.Second)

	began := time.Now()
	var wg sync.WaitGroup
	outs := make([]string, cfg.Processes)
	errs := make([]error, cfg.Processes)
	for p := range cfg.Processes {
		cmd := exec.Command(os.Args[0], "-test.run=^"+top+"$", "-test.count=1", "-test.timeout=8m", "-test.v")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%t|%d|%d", childEnv, namespace, locking, p, start.UnixNano()))
		wg.Add(1)
		go func() {
			defer wg.Done()
			out, err := cmd.CombinedOutput()
			outs[p], errs[p] = string(out), err
		}()
	}
	wg.Wait()
	elapsed := time.Since(began)
	failedUpdates := 0
	for p := range cfg.Processes {
		require.NoError(t, errs[p], "child process %d failed:\n%s", p, outs[p])
		_, after, ok := strings.Cut(outs[p], "storm-failed-updates=")
		require.True(t, ok, "child process %d reported no result:\n%s", p, outs[p])
		n, err := strconv.Atoi(strings.Fields(after)[0])
		require.NoError(t, err)
		failedUpdates += n
	}

	want := cfg.Processes * cfg.Increments
	sess, err := session.New(session.Options[Counter]{Storage: store})
	require.NoError(t, err)
	lost := 0
	for c := range cfg.Chats {
		n, found := readCounter(t, sess, store, stormChat(c))
		require.True(t, found, "chat %d has no session", c)
		if locking {
			assert.Equal(t, want, n, "chat %d: increments of %d processes", c, cfg.Processes)
		}
		lost += want - n
	}
	updates := cfg.Processes * cfg.Chats * cfg.Increments
	t.Logf("%d processes x %d chats x %d increments, locking=%t: %d of %d increments lost, %d updates failed, %v (%.0f updates/s)",
		cfg.Processes, cfg.Chats, cfg.Increments, locking, lost, updates, failedUpdates, elapsed.Round(time.Millisecond),
		float64(updates)/elapsed.Seconds())
	if locking {
		assert.Zero(t, failedUpdates, "updates failed under the lock")
	} else {
		assert.Positive(t, lost, "without the lock the storm lost nothing: the test cannot tell the difference")
	}
}

// stormChat is the chat ID of chat c: negative, like a group's.
func stormChat(c int) int64 { return -1001000000000 - int64(c) }

// chatUpdate is an update of a message in chat.
func chatUpdate(id int, chat int64) tgbotapi.Update {
	return tgbotapi.Update{UpdateID: id, Message: &tgbotapi.Message{MessageID: id, Chat: &tgbotapi.Chat{ID: chat}}}
}

// counterMiddleware is the storm's bot: each update increments its
// chat's counter.
func counterMiddleware(sess *session.Session[Counter]) session.Handler[Counter] {
	return sess.Middleware(func(c *session.Context[Counter]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.N++
		return nil
	})
}

// readCounter reads chat's counter through sess's middleware, as the bot
// would (so whatever the codec stored is decoded as the bot decodes it);
// found reports whether store holds a session for the chat.
func readCounter(t *testing.T, sess *session.Session[Counter], store session.Store, chat int64) (n int, found bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), waitLimit)
	defer cancel()
	u := chatUpdate(0, chat)
	key, ok := sess.Key(session.Update{Update: &u})
	require.True(t, ok, "no session key for chat %d", chat)
	_, found, err := store.Read(ctx, key)
	require.NoError(t, err, "read the session of chat %d", chat)
	h := sess.Middleware(func(c *session.Context[Counter]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		n = s.N
		return nil
	})
	require.NoError(t, h(session.NewContext[Counter](ctx, nil, u)), "read the counter of chat %d", chat)
	return n, found
}

func runChild(t *testing.T, cfg CrossProcess, env string) {
	parts := strings.Split(env, "|")
	require.Len(t, parts, 4, "bad %s", childEnv)
	namespace, locking := parts[0], parts[1] == "true"
	startNanos, err := strconv.ParseInt(parts[3], 10, 64)
	require.NoError(t, err)

	sess, err := session.New(session.Options[Counter]{Storage: stormStore(t, cfg, namespace, locking)})
	require.NoError(t, err)
	h := counterMiddleware(sess)

	time.Sleep(time.Until(time.Unix(0, startNanos)))
	var failed atomic.Int64
	var mu sync.Mutex
	var firstErr error
	var wg sync.WaitGroup
	for c := range cfg.Chats {
		for g := range cfg.Goroutines {
			n := cfg.Increments / cfg.Goroutines
			if g < cfg.Increments%cfg.Goroutines {
				n++
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range n {
					ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
					err := h(session.NewContext[Counter](ctx, nil, chatUpdate(i, stormChat(c))))
					cancel()
					if err != nil {
						failed.Add(1)
						mu.Lock()
						if firstErr == nil {
							firstErr = err
						}
						mu.Unlock()
					}
				}
			}()
		}
	}
	wg.Wait()
	if firstErr != nil {
		t.Logf("first failed update: %v", firstErr)
	}
	// The parent reads this line from the child's output.
	fmt.Printf("storm-failed-updates=%d\n", failed.Load())
}
