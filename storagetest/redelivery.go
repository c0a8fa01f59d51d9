package storagetest

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"os/signal"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

const redeliveryEnv = "STORAGETEST_REDELIVERY_CHILD"

// RunRedelivery checks that an update Telegram delivers again is applied
// to its session once, over cfg.NewStore's store (cfg's counts are not
// used), as bots run in production: through package runner against a
// fake Bot API (telegramtest), with a Counter session whose handler also
// sends a message.
//
//   - "CrashBeforeAck": a bot process polling the fake is killed (SIGKILL)
//     right after the commit of one update, before it could confirm it;
//     a new process starts and Telegram sends the unconfirmed updates
//     again. Every update is applied once (the counter ends at the number
//     of updates) and its message sent once: the update that was
//     committed but never acknowledged finds its mark and is skipped.
//   - "TwoReplicas": two replicas (two stores over the same data, each
//     with its own client, behind their own runner and webhook) receive
//     every update at the same moment, as when Telegram redelivers to a
//     load balancer while the first copy is still running. Each update is
//     handled by one of them only.
//
// Call it from a top-level test with nothing before it that must not run
// in a child process (see [RunCrossProcess]).
func RunRedelivery(t *testing.T, cfg CrossProcess) {
	t.Helper()
	require.NotNil(t, cfg.NewStore, "CrossProcess.NewStore is nil")
	if env := os.Getenv(redeliveryEnv); env != "" {
		redeliveryChild(t, cfg, env)
		return
	}
	t.Run("CrashBeforeAck", func(t *testing.T) { testCrashBeforeAck(t, cfg) })
	t.Run("TwoReplicas", func(t *testing.T) { testTwoReplicas(t, cfg) })
}

// newNamespace returns a fresh namespace, cleaned up when t ends.
func newNamespace(t *testing.T, cfg CrossProcess, what string) string {
	var b [6]byte
	_, _ = rand.Read(b[:])
	namespace := what + "_" + hex.EncodeToString(b[:])
	if cfg.Cleanup != nil {
		t.Cleanup(func() { cfg.Cleanup(t, namespace) })
	}
	return namespace
}

// countingBot counts every update in its chat's session and answers with
// the update id and the count.
func countingBot(runs *atomic.Int64) session.Handler[Counter] {
	return func(c *session.Context[Counter]) error {
		if runs != nil {
			runs.Add(1)
		}
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.N++
		_, err = c.Bot.Send(tgbotapi.NewMessage(c.Update.Message.Chat.ID,
			fmt.Sprintf("update %d: count %d", c.Update.UpdateID, s.N)))
		return err
	}
}

const redeliveryChat = int64(-1002000000001)

func testCrashBeforeAck(t *testing.T, cfg CrossProcess) {
	namespace := newNamespace(t, cfg, "crash")
	fake := telegramtest.NewServer()
	defer fake.Close()
	const updates = 10
	ids := make([]int, updates)
	for i := range ids {
		ids[i] = fake.SendMessage(redeliveryChat, 7, "hi "+strconv.Itoa(i))
	}
	crashAt := ids[4]
	top, _, _ := strings.Cut(t.Name(), "/")
	child := func(crash int) *exec.Cmd {
		cmd := exec.Command(os.Args[0], "-test.run=^"+top+"$", "-test.count=1", "-test.timeout=3m", "-test.v")
		cmd.Env = append(os.Environ(), fmt.Sprintf("%s=%s|%s|%d", redeliveryEnv, namespace, fake.Endpoint(), crash))
		return cmd
	}

	// The first process is killed right after update crashAt committed.
	out, err := child(crashAt).CombinedOutput()
	var exit *exec.ExitError
	require.ErrorAs(t, err, &exit, "the first bot process was to be killed:\n%s", out)
	ws, ok := exit.Sys().(syscall.WaitStatus)
	require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "the first bot process ended without SIGKILL: %v\n%s", err, out)
	require.Positive(t, fake.Pending(), "nothing left unconfirmed: the crash came after the acknowledgement")
	before := len(fake.Sent())
	require.Equal(t, 5, before, "messages sent before the crash (updates up to the killed one)")

	// A new process: Telegram sends every unconfirmed update again.
	cmd := child(0)
	var buf bytes.Buffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	require.NoError(t, cmd.Start())
	defer func() { _ = cmd.Process.Kill() }()
	require.Eventually(t, func() bool { return fake.Pending() == 0 }, time.Minute, 10*time.Millisecond,
		"the restarted bot confirmed every update")
	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	require.NoError(t, cmd.Wait(), "the restarted bot process:\n%s", buf.String())

	texts := map[string]int{}
	for _, m := range fake.Sent() {
		texts[m.Text]++
	}
	for i, id := range ids {
		want := fmt.Sprintf("update %d: count %d", id, i+1)
		assert.Equal(t, 1, texts[want], "message %q sent", want)
	}
	assert.Len(t, fake.Sent(), updates, "messages sent over both processes")
	store := cfg.NewStore(t, namespace)
	sess, err := session.New(session.Options[Counter]{Storage: store})
	require.NoError(t, err)
	n, _ := readCounter(t, sess, store, redeliveryChat)
	assert.Equal(t, updates, n, "the chat's counter: every update applied once")
	t.Logf("crash after the commit of update %d of %d: counter %d, %d messages", 5, updates, n, len(fake.Sent()))
}

// redeliveryChild is a bot process of CrashBeforeAck: it polls the fake
// at endpoint until SIGTERM, and kills itself right after the commit of
// update crashAt (0: never).
func redeliveryChild(t *testing.T, cfg CrossProcess, env string) {
	parts := strings.Split(env, "|")
	require.Len(t, parts, 3, "bad %s", redeliveryEnv)
	crashAt, err := strconv.Atoi(parts[2])
	require.NoError(t, err)
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("TOKEN", parts[1])
	require.NoError(t, err)
	sess, err := session.New(session.Options[Counter]{Storage: cfg.NewStore(t, parts[0])})
	require.NoError(t, err)
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err = runner.Run(ctx, bot, crashAfter{sess, crashAt}, countingBot(nil), runner.Options{
		Source: runner.NewPolling(bot, runner.PollingOptions{Timeout: 1}),
	})
	require.NoError(t, err)
}

// crashAfter is a session whose middleware kills the process once update
// crashAt is committed: before the runner can acknowledge it.
type crashAfter struct {
	*session.Session[Counter]
	crashAt int
}

func (c crashAfter) Middleware(h session.Handler[Counter]) session.Handler[Counter] {
	mw := c.Session.Middleware(h)
	return func(ctx *session.Context[Counter]) error {
		err := mw(ctx)
		if err == nil && ctx.Update.UpdateID == c.crashAt {
			_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
		return err
	}
}

func testTwoReplicas(t *testing.T, cfg CrossProcess) {
	namespace := newNamespace(t, cfg, "replicas")
	fake := telegramtest.NewServer()
	defer fake.Close()
	const secret = "replica-secret"
	var runs atomic.Int64
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var urls []string
	var stores []session.Store
	for range 2 {
		bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("TOKEN", fake.Endpoint())
		require.NoError(t, err)
		store := cfg.NewStore(t, namespace)
		stores = append(stores, store)
		sess, err := session.New(session.Options[Counter]{Storage: store})
		require.NoError(t, err)
		wh := &runner.Webhook{Secret: secret}
		srv := httptest.NewServer(wh)
		defer srv.Close()
		urls = append(urls, srv.URL)
		wg.Add(1)
		go func() {
			defer wg.Done()
			assert.NoError(t, runner.Run(ctx, bot, sess, countingBot(&runs), runner.Options{Source: wh}))
		}()
	}
	require.NotSame(t, stores[0], stores[1], "the replicas need a store each")

	const updates = 20
	for i := range updates {
		id := 500 + i
		body := fmt.Sprintf(`{"update_id":%d,"message":{"message_id":%d,"date":1700000000,"chat":{"id":%d,"type":"supergroup","title":"g"},"from":{"id":7,"is_bot":false,"first_name":"A"},"text":"hi"}}`,
			id, id, redeliveryChat)
		var both sync.WaitGroup
		for _, u := range urls {
			both.Add(1)
			go func() {
				defer both.Done()
				assert.NoError(t, postUntilOK(u, secret, body), "update %d to %s", id, u)
			}()
		}
		both.Wait()
	}
	assert.Equal(t, int64(updates), runs.Load(), "handlers run over both replicas, each update delivered to both")
	assert.Len(t, fake.Sent(), updates, "messages sent")
	sess, err := session.New(session.Options[Counter]{Storage: stores[0]})
	require.NoError(t, err)
	n, _ := readCounter(t, sess, stores[0], redeliveryChat)
	assert.Equal(t, updates, n, "every update applied once")
}

// postUntilOK posts an update as Telegram does: again after a non-2xx
// answer (503 while the runner is starting), until 200.
func postUntilOK(url, secret, body string) error {
	deadline := time.Now().Add(waitLimit)
	for {
		req, err := http.NewRequest(http.MethodPost, url, strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-Telegram-Bot-Api-Secret-Token", secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("webhook answered " + resp.Status + " until the deadline")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
