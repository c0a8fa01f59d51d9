package otelsession_test

import (
	"context"
	"fmt"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"

	"github.com/tgsession/session"
	"github.com/tgsession/session/otelsession"
)

// A session traced and measured. In a program the providers are those of
// its exporters (OTLP, Prometheus, ...), and runner.Options.Hooks gets
// tel.RunnerHooks().
func ExampleNew() {
	spans := tracetest.NewSpanRecorder()
	reader := sdkmetric.NewManualReader()
	tel, err := otelsession.New(otelsession.Options{
		TracerProvider: sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(spans)),
		MeterProvider:  sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader)),
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	sess, err := session.New(session.Options[counter]{Hooks: tel.SessionHooks()})
	if err != nil {
		fmt.Println(err)
		return
	}
	h := sess.Middleware(func(c *session.Context[counter]) error {
		s, err := c.Session()
		if err != nil {
			return err
		}
		s.Count++
		return nil
	})
	u := tgbotapi.Update{UpdateID: 1, Message: &tgbotapi.Message{Chat: &tgbotapi.Chat{ID: 42}, Text: "hi"}}
	if err := h(session.NewContext[counter](context.Background(), nil, u)); err != nil {
		fmt.Println(err)
	}

	for _, s := range spans.Ended() {
		fmt.Println("span", s.Name())
	}
	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		fmt.Println(err)
		return
	}
	for _, m := range rm.ScopeMetrics[0].Metrics {
		if s, ok := m.Data.(metricdata.Sum[int64]); ok && m.Name == otelsession.MetricUpdates {
			outcome, _ := s.DataPoints[0].Attributes.Value(otelsession.AttrOutcome)
			fmt.Println(m.Name, outcome.AsString(), s.DataPoints[0].Value)
		}
	}
	// Output:
	// span session.lock
	// span session.load
	// span session.handler
	// span session.commit
	// span telegram.update
	// tgsession.updates written 1
}
