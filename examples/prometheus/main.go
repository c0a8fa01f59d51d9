// Command prometheus is a message counter per chat whose sessions and
// runner are measured by package otelsession and exposed to Prometheus:
// an OpenTelemetry MeterProvider reads the metrics with the Prometheus
// exporter, and promhttp serves them at /metrics.
//
// Without TELEGRAM_BOT_TOKEN it plays a short conversation against a fake
// Telegram (no network, no token), then scrapes its own /metrics and
// prints the tgsession series:
//
//	go run ./examples/prometheus
//
// With a token it runs against Telegram until interrupted, serving the
// metrics on METRICS_ADDR (default :2112):
//
//	TELEGRAM_BOT_TOKEN=123456:ABC... go run ./examples/prometheus
//	curl -s localhost:2112/metrics | grep tgsession_
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sort"
	"strings"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"

	"github.com/tgsession/session"
	"github.com/tgsession/session/examples/internal/demo"
	"github.com/tgsession/session/otelsession"
	"github.com/tgsession/session/runner"
	"github.com/tgsession/session/telegramtest"
)

// Count is the session of a chat.
type Count struct {
	Messages int `json:"messages"`
}

// Bot is the counter bot with its telemetry.
type Bot struct {
	sess    *session.Session[Count]
	hooks   *runner.Hooks
	metrics http.Handler
	meters  *sdkmetric.MeterProvider
}

// NewBot returns the bot, its sessions in memory, measured into a
// registry of its own that Metrics serves.
func NewBot() (*Bot, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, fmt.Errorf("prometheus exporter: %w", err)
	}
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))
	// No TracerProvider: the otel global, a no-op unless the program sets
	// one (an OTLP exporter, say).
	tel, err := otelsession.New(otelsession.Options{MeterProvider: meters})
	if err != nil {
		return nil, err
	}
	sess, err := session.New(session.Options[Count]{Storage: session.NewMemory(), Hooks: tel.SessionHooks()})
	if err != nil {
		return nil, err
	}
	return &Bot{sess: sess, hooks: tel.RunnerHooks(), metrics: promhttp.HandlerFor(reg, promhttp.HandlerOpts{}), meters: meters}, nil
}

// Metrics returns the handler of /metrics.
func (b *Bot) Metrics() http.Handler { return b.metrics }

// handle counts the chat's messages and says how many there were.
func (b *Bot) handle(c *session.Context[Count]) error {
	m := c.Update.Message
	if m == nil {
		return nil
	}
	s, err := c.Session()
	if err != nil {
		return err
	}
	s.Messages++
	_, err = c.Bot.Send(tgbotapi.NewMessage(m.Chat.ID, fmt.Sprintf("%d messages in this chat.", s.Messages)))
	return err
}

// Run handles the updates of src (nil: long polling) with runner.Run until
// ctx is done, serving /metrics on ln meanwhile.
func (b *Bot) Run(ctx context.Context, bot *tgbotapi.BotAPI, src runner.Source, ln net.Listener) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", b.metrics)
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()

	err := runner.Run(ctx, bot, b.sess, b.handle, runner.Options{Source: src, Hooks: b.hooks, OnError: logError})

	stop, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if serr := hs.Shutdown(stop); serr != nil {
		err = errors.Join(err, fmt.Errorf("metrics server: %w", serr))
	}
	if serr := <-served; !errors.Is(serr, http.ErrServerClosed) {
		err = errors.Join(err, fmt.Errorf("metrics server: %w", serr))
	}
	return errors.Join(err, b.meters.Shutdown(stop))
}

// logError logs what the runner reports.
func logError(ctx context.Context, u *tgbotapi.Update, key string, err error) {
	if u == nil {
		slog.WarnContext(ctx, "polling failed; retrying", "error", err)
		return
	}
	slog.ErrorContext(ctx, "update failed", "update_id", u.UpdateID, "error", err)
}

func main() { demo.Main("prometheus", run) }

// run serves Telegram with token until ctx is done or, without a token,
// plays the demo and writes what it saw to out.
func run(ctx context.Context, out io.Writer, token string) error {
	b, err := NewBot()
	if err != nil {
		return err
	}
	if token == "" {
		return play(ctx, out, b)
	}
	bot, err := tgbotapi.NewBotAPI(token)
	if err != nil {
		return err
	}
	addr := os.Getenv("METRICS_ADDR")
	if addr == "" {
		addr = ":2112"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "@%s is running, metrics at http://%s/metrics; press Ctrl-C to stop.\n", bot.Self.UserName, ln.Addr())
	return b.Run(ctx, bot, nil, ln)
}

// script is the demo's conversation: user, chat, text.
var script = []struct {
	user, chat int64
	text       string
}{
	{101, 101, "hello"},
	{202, -1001, "hi all"},
	{101, 101, "how many?"},
	{303, -1001, "and here?"},
	{101, 101, "once more"},
}

// play runs the bot against a fake Telegram, sends the script, then
// scrapes /metrics and prints the tgsession series.
func play(ctx context.Context, out io.Writer, b *Bot) error {
	fmt.Fprintln(out, demo.Header)
	fmt.Fprintln(out, "# To run it on the real Telegram: TELEGRAM_BOT_TOKEN=<token from @BotFather> go run ./examples/prometheus")
	srv := telegramtest.NewServer()
	defer srv.Close()
	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("demo-token", srv.Endpoint())
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return fmt.Errorf("demo: %w", err)
	}
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	ran := make(chan error, 1)
	go func() { ran <- b.Run(runCtx, bot, runner.NewPolling(bot, runner.PollingOptions{Timeout: 1}), ln) }()

	var errs []error
	for _, l := range script {
		fmt.Fprintf(out, "%d in %d: %s\n", l.user, l.chat, l.text)
		turn, err := srv.Chat(l.chat, l.user).Send(ctx, l.text)
		if err != nil {
			errs = append(errs, fmt.Errorf("demo: %w", err))
			break
		}
		for _, m := range turn.Sent {
			fmt.Fprintf(out, "  bot: %s\n", m.Text)
		}
	}
	if len(errs) == 0 {
		series, err := Scrape(ctx, "http://"+ln.Addr().String()+"/metrics")
		if err != nil {
			errs = append(errs, err)
		}
		fmt.Fprintln(out, "# GET /metrics (counters, gauges and histogram counts of tgsession_*):")
		for _, s := range series {
			fmt.Fprintln(out, s)
		}
	}
	stop()
	return errors.Join(append(errs, <-ran)...)
}

// Scrape gets url in Prometheus' text format and returns the tgsession
// series whose values do not depend on timing, sorted, as
// name{label="value",...} value: counters, gauges and the _count of
// histograms. The exporter's otel_scope_* labels are left out.
func Scrape(ctx context.Context, url string) ([]string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	req.Header.Set("Accept", "text/plain")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("scrape: %s", resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	families, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("scrape: %w", err)
	}
	var series []string
	for name, f := range families {
		if !strings.HasPrefix(name, "tgsession_") {
			continue
		}
		for _, m := range f.GetMetric() {
			labels := labelsOf(m)
			switch f.GetType() {
			case dto.MetricType_COUNTER:
				series = append(series, fmt.Sprintf("%s%s %g", name, labels, m.GetCounter().GetValue()))
			case dto.MetricType_GAUGE:
				series = append(series, fmt.Sprintf("%s%s %g", name, labels, m.GetGauge().GetValue()))
			case dto.MetricType_HISTOGRAM:
				series = append(series, fmt.Sprintf("%s_count%s %d", name, labels, m.GetHistogram().GetSampleCount()))
			}
		}
	}
	sort.Strings(series)
	return series, nil
}

// labelsOf renders the labels of m, but the otel_scope_* ones.
func labelsOf(m *dto.Metric) string {
	var kv []string
	for _, l := range m.GetLabel() {
		if !strings.HasPrefix(l.GetName(), "otel_scope_") {
			kv = append(kv, fmt.Sprintf("%s=%q", l.GetName(), l.GetValue()))
		}
	}
	if len(kv) == 0 {
		return ""
	}
	sort.Strings(kv)
	return "{" + strings.Join(kv, ",") + "}"
}
