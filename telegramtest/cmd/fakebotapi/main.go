// Command fakebotapi serves the fake Telegram Bot API of package
// telegramtest as a process of its own, so that several bot processes
// (replicas behind a load balancer, say) can run against one fake, and a
// test in yet another process can drive it:
//
//	go run github.com/tgsession/session/telegramtest/cmd/fakebotapi -addr 127.0.0.1:8081
//
// Point the bots at it with
// tgbotapi.NewBotAPIWithAPIEndpoint(token, "http://127.0.0.1:8081/bot%s/%s"):
// it answers the Bot API as telegramtest.Server does, any token included,
// serves getUpdates to a polling bot and, once a bot called setWebhook (or
// the control API set one), POSTs every update to the webhook with its
// secret header, one at a time per chat, again until answered 2xx.
//
// Flags:
//
//	-addr             the address to listen on (default 127.0.0.1:8081)
//	-first-update-id  the first update id (default: random in [1<<20, 1<<30))
//	-webhook-timeout  how long to wait for a webhook's answer (default 5s)
//	-retry-delay      the wait before sending a failed update again (default 20ms)
//
// It prints the base URL once it listens, and serves until interrupted.
//
// # Control API
//
// Tests drive the fake with JSON over HTTP under /control/ (Go tests can
// use telegramtest.Remote instead):
//
//	POST /control/send        {"chat_id":101,"user_id":101,"text":"/start"}
//	                          {"chat_id":101,"user_id":101,"press":"Yes"}
//	                          {"chat_id":101,"update":{...Telegram's update JSON...}}
//	                          optional: "thread_id", "business_connection_id", "wait": "5s"
//	    sends a message (bot_command entities included), presses a button
//	    under the bot's latest message that has it (by text or callback
//	    data), or delivers a raw update; waits until the bot acknowledged
//	    it (confirmed offset when polling, 2xx from the webhook); answers
//	    the turn: {"UpdateID":..., "Replies":[...], "Sent":[...],
//	    "Edited":[...], "Answer":{"Text":...}} (200), the turn so far if
//	    the wait ended first (504), or {"error":...} (400).
//	POST /control/updates     a raw update, queued without waiting: {"update_id":N}
//	POST /control/webhook     {"url":"http://...","secret":"..."}: set (or, with "", remove) the webhook
//	POST /control/fail        {"method":"sendMessage","code":429,"description":"Too Many Requests","retry_after":1}
//	GET  /control/sent        the messages the bots sent
//	GET  /control/requests    every Bot API call received
//	GET  /control/deliveries  each update's webhook attempts: {"UpdateID","Attempts","Statuses","Acknowledged"}
//	GET  /control/pending     {"pending":N}: updates not yet acknowledged
//
// For example:
//
//	curl -s localhost:8081/control/send -d '{"chat_id":101,"user_id":101,"text":"/start"}'
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/tgsession/session/telegramtest"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "fakebotapi:", err)
		os.Exit(2)
	}
}

// run parses args, serves the fake until ctx ends, and prints its URL on
// out once it listens.
func run(ctx context.Context, args []string, out io.Writer) (err error) {
	fs := flag.NewFlagSet("fakebotapi", flag.ContinueOnError)
	fs.SetOutput(out)
	addr := fs.String("addr", "127.0.0.1:8081", "the address to listen on")
	first := fs.Int("first-update-id", 0, "the first update id (0: random in [1<<20, 1<<30))")
	timeout := fs.Duration("webhook-timeout", telegramtest.DefaultWebhookTimeout, "how long to wait for a webhook's answer")
	retry := fs.Duration("retry-delay", telegramtest.DefaultRetryDelay, "the wait before sending a failed update again")
	if err := fs.Parse(args); err != nil {
		return fmt.Errorf("flags: %w", err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected arguments %q", fs.Args())
	}
	defer func() {
		if r := recover(); r != nil { // NewServer panics on bad options
			if e, ok := r.(error); ok {
				err = fmt.Errorf("options: %w", e)
				return
			}
			panic(r)
		}
	}()
	srv := telegramtest.NewServer(
		telegramtest.WithAddr(*addr),
		telegramtest.WithFirstUpdateID(*first),
		telegramtest.WithWebhookTimeout(*timeout),
		telegramtest.WithRetryDelay(*retry),
	)
	defer srv.Close()
	fmt.Fprintf(out, "fakebotapi: serving %s (Bot API at %s, control API at %s%s)\n",
		srv.URL, fmt.Sprintf(srv.Endpoint(), "<token>", "<method>"), srv.URL, telegramtest.ControlPrefix)
	<-ctx.Done()
	return nil
}
