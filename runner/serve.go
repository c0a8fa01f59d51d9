package runner

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// ServeWebhook runs a webhook bot in one call: it runs [Run] with
// opts.Source, which must be a *[Webhook], and serves srv on ln (with TLS
// when srv.TLSConfig is set, from its certificates), until ctx is
// cancelled or serving fails. A nil srv.Handler means the Webhook itself;
// otherwise srv.Handler must route Telegram's requests to it.
//
// Then it stops both the way that loses nothing (see [Webhook]): Run's
// context is cancelled and srv shut down at once, so new requests are
// refused while the requests in progress are answered once their updates
// were handled (200) or given up at the drain deadline (503). Shutdown
// waits up to DrainTimeout plus a few seconds for them, then closes the
// remaining connections.
//
// It returns nil after a stop in which every taken update was handled,
// else the errors of Run (a drain timeout, say), of serving (not
// http.ErrServerClosed) and of the shutdown, joined. A nil srv or ln, or
// a Source that is not a non-nil *Webhook, is an error wrapping
// [session.ErrConfig], returned before anything starts, as are the
// mistakes [Run] refuses.
func ServeWebhook[S any](ctx context.Context, srv *http.Server, ln net.Listener, bot *tgbotapi.BotAPI, sess Session[S], h session.Handler[S], opts Options) error {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: runner: ServeWebhook: "+format, append([]any{session.ErrConfig}, args...)...))
	}
	if srv == nil {
		bad("nil srv")
	}
	if ln == nil {
		bad("nil ln (listen with net.Listen first)")
	}
	wh, ok := opts.Source.(*Webhook)
	if !ok || wh == nil {
		bad("Options.Source is %T, not a non-nil *Webhook", opts.Source)
	}
	if len(errs) > 0 {
		return errors.Join(errs...)
	}
	if _, err := check(bot, sess, h, opts); err != nil {
		return err
	}
	if srv.Handler == nil {
		srv.Handler = wh
	}

	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	ran := make(chan error, 1)
	go func() { ran <- Run(runCtx, bot, sess, h, opts) }()
	served := make(chan error, 1)
	go func() {
		if srv.TLSConfig != nil {
			served <- srv.ServeTLS(ln, "", "")
		} else {
			served <- srv.Serve(ln)
		}
	}()

	var serveErr, runErr error
	serving := true
	select {
	case <-ctx.Done():
	case serveErr = <-served:
		serving = false
	case runErr = <-ran:
		ran = nil // Run failed for good: stop serving too
	}
	stopRun()
	drain := opts.DrainTimeout
	if drain == 0 {
		drain = DefaultDrainTimeout
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), drain+closeTimeout)
	defer cancel()
	shutdownErr := srv.Shutdown(shutdownCtx)
	if shutdownErr != nil {
		srv.Close()
		shutdownErr = fmt.Errorf("runner: ServeWebhook: shut the server down: %w", shutdownErr)
	}
	if serving {
		serveErr = <-served
	}
	if errors.Is(serveErr, http.ErrServerClosed) {
		serveErr = nil
	} else if serveErr != nil {
		serveErr = fmt.Errorf("runner: ServeWebhook: serve: %w", serveErr)
	}
	if ran != nil {
		runErr = <-ran
	}
	return errors.Join(runErr, serveErr, shutdownErr)
}
