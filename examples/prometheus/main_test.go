package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session/examples/internal/demo/demotest"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

func TestDemo(t *testing.T) {
	demotest.Play(t, run, []string{
		"101 in 101: hello",
		"  bot: 1 messages in this chat.",
		"202 in -1001: hi all",
		"  bot: 1 messages in this chat.",
		"101 in 101: how many?",
		"  bot: 2 messages in this chat.",
		"303 in -1001: and here?",
		"  bot: 2 messages in this chat.",
		"101 in 101: once more",
		"  bot: 3 messages in this chat.",
		`tgsession_bytes_read_total{session_fragment=""} 42`, // 3 reads of {"messages":N}
		`tgsession_bytes_written_total{session_fragment=""} 70`,
		`tgsession_commit_duration_seconds_count{session_outcome="written"} 5`,
		`tgsession_handler_duration_seconds_count{session_outcome="written"} 5`,
		`tgsession_load_duration_seconds_count{session_outcome="written"} 5`,
		`tgsession_lock_wait_seconds_count{session_outcome="written"} 5`,
		`tgsession_runner_inflight 0`,
		`tgsession_runner_queue_depth 0`,
		`tgsession_runner_updates_total{runner_event="handled"} 5`,
		`tgsession_runner_updates_total{runner_event="taken"} 5`,
		`tgsession_update_duration_seconds_count{session_outcome="written"} 5`,
		`tgsession_updates_total{session_outcome="written"} 5`,
	})
}

// TestMetrics runs the bot against a fake Telegram, one reply failing,
// and scrapes /metrics over HTTP while it runs.
func TestMetrics(t *testing.T) {
	slog.SetDefault(slog.New(slog.NewTextHandler(io.Discard, nil))) // the failure is expected
	b, err := NewBot()
	require.NoError(t, err)
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("TOKEN", srv.Endpoint())
	require.NoError(t, err)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan error, 1)
	go func() { ran <- b.Run(ctx, bot, runner.NewPolling(bot, runner.PollingOptions{Timeout: 1}), ln) }()

	wait, stop := context.WithTimeout(context.Background(), telegramtest.DefaultWait)
	defer stop()
	for i, chat := range []int64{1, 2, 1, 3} {
		if i == 3 {
			srv.Fail("sendMessage", 500, "Internal Server Error") // the handler fails: nothing is written
		}
		_, err := srv.Chat(chat, chat).Send(wait, "hi")
		require.NoError(t, err)
	}

	url := "http://" + ln.Addr().String() + "/metrics"
	series, err := Scrape(wait, url)
	require.NoError(t, err)
	for _, s := range []string{
		`tgsession_updates_total{session_outcome="written"} 3`,
		`tgsession_updates_total{session_outcome="error"} 1`,
		`tgsession_update_duration_seconds_count{session_outcome="written"} 3`,
		`tgsession_update_duration_seconds_count{session_outcome="error"} 1`,
		`tgsession_handler_duration_seconds_count{session_outcome="written"} 3`,
		`tgsession_handler_duration_seconds_count{session_outcome="error"} 1`,
		`tgsession_lock_wait_seconds_count{session_outcome="written"} 3`,
		`tgsession_commit_duration_seconds_count{session_outcome="written"} 3`,
		`tgsession_runner_updates_total{runner_event="taken"} 4`,
		`tgsession_runner_updates_total{runner_event="handled"} 3`,
		`tgsession_runner_updates_total{runner_event="failed"} 1`,
		`tgsession_runner_queue_depth 0`,
		`tgsession_runner_inflight 0`,
	} {
		assert.Contains(t, series, s)
	}
	assert.NotContains(t, strings.Join(series, "\n"), `tgsession_commit_duration_seconds_count{session_outcome="error"}`, "no commit after a failure")

	resp, err := http.Get(url)
	require.NoError(t, err)
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, resp.Body.Close())
	require.NoError(t, err)
	text := string(body)
	for _, s := range []string{
		"# TYPE tgsession_updates_total counter",
		"# TYPE tgsession_handler_duration_seconds histogram",
		"# TYPE tgsession_runner_queue_depth gauge",
		`tgsession_handler_duration_seconds_bucket{otel_scope_name="github.com/tgsession/session/otelsession"`,
	} {
		assert.Contains(t, text, s)
	}
	assert.NotContains(t, text, "tgsession_key", "no keys on metrics")

	cancel()
	require.NoError(t, <-ran)
}
