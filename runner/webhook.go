package runner

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// DefaultMaxBodyBytes is the default limit of a webhook request body.
// Telegram's updates are a few kilobytes; the limit only stops junk.
const DefaultMaxBodyBytes = 1 << 20

// DefaultAckTimeout is the default of Webhook.AckTimeout: below the
// about 60 seconds Telegram waits for a webhook answer.
const DefaultAckTimeout = 50 * time.Second

// notRunningReportInterval is the shortest time between two reports of
// requests that came while no Run was receiving (see Webhook.OnError).
const notRunningReportInterval = 10 * time.Second

// SecretHeader is the header in which Telegram sends the webhook secret.
const SecretHeader = "X-Telegram-Bot-Api-Secret-Token"

// Webhook is an http.Handler for Telegram's webhook requests and a
// [Source] for [Run]: mount it on your server and pass it as
// Options.Source, and updates go through the same ordering and bounds as
// with polling.
//
// It answers 405 to anything but POST, 401 when the secret header does
// not match Secret (compared in constant time), 413 when the body exceeds
// MaxBodyBytes and 400 when it is not one JSON update with a positive
// update_id (only whitespace may follow the update).
//
// An update is answered 200 only once it was handled: its handler
// returned (an error it returned goes to OnError, and the update is not
// sent again) or panicked and was reported. An update the runner does
// not handle is answered 503, so Telegram sends it again: before Run
// starts and after it stops (reported, see OnError), when the runner
// stayed full for AckTimeout (the request waits for room meanwhile:
// backpressure), and when the runner stopped before handling it (still
// waiting, or left behind, at the drain deadline).
//
// An update taken but not handled within AckTimeout (its handler runs
// long, or it waits behind one that does) is answered 200 then, so that
// Telegram does not time out and send it again, and is handled in the
// background. That is the cost of the bound: such an update is
// acknowledged before it is handled, so if the runner stops and the
// drain deadline cuts its handler, it is lost (it was reported to
// OnError with ErrStopped). Keep handlers well below AckTimeout, or hand
// long work to a queue of your own. When Telegram gives up on a request
// whose update was taken (it closed the connection), the update is still
// handled, and Telegram sends it again.
//
// An update Telegram sends again (its first request was slow, given up
// or its answer lost) is not handled twice by one Run (see
// Options.RecentUpdates and the package documentation): if the first
// copy was handled, it is answered 200 at once; if the first is still
// queued or running, its request waits for the first's outcome within
// AckTimeout, and is answered 200 when the first was handled, 503 when it
// was given up at a stop.
//
// The request body is the update's JSON as Telegram sent it: the
// handler gets it as session.Context.Raw, with what tgbotapi v5.5.1 drops
// (an update of a kind tgbotapi does not know is handled too, with only
// UpdateID set).
//
// Updates are ordered as their requests arrive. With setWebhook's
// max_connections above 1, Telegram may send several at once, so two
// updates of one chat sent within moments may arrive in either order.
//
// To stop: cancel Run's context, and shut the HTTP server down
// (http.Server.Shutdown) at the same time or after. Either order loses
// nothing: requests arriving once Run stopped receiving are answered 503
// and retried by Telegram, and a request in progress is answered when
// its update was handled, or with 503 at the drain deadline. Shutdown
// waits for those answers, so give it at least DrainTimeout (and at most
// AckTimeout is spent on any request). [ServeWebhook] serves a Webhook
// and stops it this way in one call.
//
// Register the URL and the secret with [SetWebhook]. Run refuses a
// Webhook without a Secret unless InsecureNoSecret is set.
type Webhook struct {
	// Secret is the secret_token given to setWebhook (1 to 256
	// characters: A-Z, a-z, 0-9, _ and -). Requests without it are
	// refused with 401. [Run] refuses a Webhook with an empty or
	// malformed Secret as its Source (an error wrapping
	// session.ErrConfig), unless InsecureNoSecret is set and Secret is
	// empty.
	Secret string
	// InsecureNoSecret, with an empty Secret, accepts every request
	// without checking the secret header. Anyone who can reach the URL
	// can then make the bot handle any update: use it only for tests, or
	// behind a trusted proxy that checks the secret itself. With a
	// Secret, it changes nothing.
	InsecureNoSecret bool
	// MaxBodyBytes limits the request body. 0 means DefaultMaxBodyBytes;
	// negative is an error ([Run] refuses such a Webhook as its Source).
	MaxBodyBytes int64
	// AckTimeout is the longest a request waits for room and for its
	// update to be handled: after it, an update not yet taken is
	// answered 503, and one being handled is answered 200 while its
	// handler goes on (see above for what that costs at a stop). Keep it
	// below Telegram's webhook timeout of about 60 seconds. 0 means
	// DefaultAckTimeout; negative is an error ([Run] refuses such a
	// Webhook as its Source).
	AckTimeout time.Duration
	// OnError, if not nil, receives the reports of requests that came
	// while no Run was receiving (answered 503, so Telegram sends them
	// again): at most one report every 10 seconds, counting
	// the requests since the last one, with an error wrapping
	// [ErrStopped]. Nil means the OnError of the last Run that received
	// from this Webhook, or, before any Run, slog.Default at error level.
	OnError func(error)

	mu      sync.Mutex
	feed    *Feed       // set while Run receives
	lastRun func(error) // the last Run's OnError, for OnError's default
	// Requests while not running, not yet reported, and when the last
	// report was made.
	refused  int
	reported time.Time
	now      func() time.Time // nil means time.Now; tests set it
}

// ServeHTTP implements http.Handler.
func (w *Webhook) ServeHTTP(rw http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		rw.Header().Set("Allow", http.MethodPost)
		http.Error(rw, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if !w.secretOK(r.Header.Get(SecretHeader)) {
		http.Error(rw, "wrong secret token", http.StatusUnauthorized)
		return
	}
	limit := w.MaxBodyBytes
	if limit <= 0 {
		limit = DefaultMaxBodyBytes
	}
	// The whole body, then json.Unmarshal: unlike a json.Decoder, it
	// refuses anything but whitespace after the value (a stray "}" or
	// "]" included), and a body over the limit is refused whatever it
	// holds.
	body, err := io.ReadAll(http.MaxBytesReader(rw, r.Body, limit))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			http.Error(rw, "body too large", http.StatusRequestEntityTooLarge)
			return
		}
		http.Error(rw, "not an update", http.StatusBadRequest)
		return
	}
	var u tgbotapi.Update
	if err := json.Unmarshal(body, &u); err != nil || u.UpdateID <= 0 {
		// Telegram sends one update per request, and its ids are positive.
		http.Error(rw, "not an update", http.StatusBadRequest)
		return
	}

	w.mu.Lock()
	feed := w.feed
	w.mu.Unlock()
	if feed == nil {
		w.notRunning()
		http.Error(rw, "not running", http.StatusServiceUnavailable)
		return
	}
	ack := w.AckTimeout
	if ack <= 0 {
		ack = DefaultAckTimeout
	}
	ctx, cancel := context.WithTimeout(r.Context(), ack)
	defer cancel()
	handled := make(chan bool, 1)
	if err := feed.Put(ctx, &u, body, func(ok bool) { handled <- ok }); err != nil {
		// Not taken: Telegram retries on any status but 2xx.
		http.Error(rw, "not taken", http.StatusServiceUnavailable)
		return
	}
	select {
	case ok := <-handled:
		if !ok {
			http.Error(rw, "not handled", http.StatusServiceUnavailable)
			return
		}
	case <-ctx.Done():
		if r.Context().Err() != nil {
			// Telegram gave up on this request (it sends the update
			// again); never the implicit 200 of a handler that writes
			// nothing.
			http.Error(rw, "gave up", http.StatusServiceUnavailable)
			return
		}
		// AckTimeout: acknowledged while the handler goes on.
	}
	rw.WriteHeader(http.StatusOK)
}

// notRunning counts a request that came while no Run was receiving, and
// reports the count at most once every notRunningReportInterval.
func (w *Webhook) notRunning() {
	w.mu.Lock()
	w.refused++
	now := time.Now
	if w.now != nil {
		now = w.now
	}
	t := now()
	if !w.reported.IsZero() && t.Sub(w.reported) < notRunningReportInterval {
		w.mu.Unlock()
		return
	}
	n := w.refused
	w.refused, w.reported = 0, t
	report := w.OnError
	if report == nil {
		report = w.lastRun
	}
	w.mu.Unlock()
	err := fmt.Errorf("runner: webhook: %d request(s) while no Run was receiving, answered 503 for Telegram to send them again: %w", n, ErrStopped)
	if report == nil {
		slog.Default().Error("runner: webhook not running", "error", err)
		return
	}
	report(err)
}

// check finds the mistakes that [Run] refuses in a Webhook as its Source.
func (w *Webhook) check() []string {
	var bad []string
	if w.Secret == "" {
		if !w.InsecureNoSecret {
			bad = append(bad, "Webhook.Secret is empty: Telegram's requests could not be told from anyone's (set InsecureNoSecret only for tests or behind a trusted proxy)")
		}
	} else if err := validSecret(w.Secret); err != nil {
		bad = append(bad, "Webhook.Secret: "+err.Error())
	}
	if w.MaxBodyBytes < 0 {
		bad = append(bad, fmt.Sprintf("Webhook.MaxBodyBytes %d is negative (0 means DefaultMaxBodyBytes)", w.MaxBodyBytes))
	}
	if w.AckTimeout < 0 {
		bad = append(bad, fmt.Sprintf("Webhook.AckTimeout %v is negative (0 means DefaultAckTimeout)", w.AckTimeout))
	}
	return bad
}

// validSecret checks a secret_token as Telegram does: 1 to 256
// characters, each of A-Z, a-z, 0-9, _ and -.
func validSecret(secret string) error {
	if n := len(secret); n < 1 || n > 256 {
		return fmt.Errorf("secret has %d characters, not 1 to 256", n)
	}
	for i := 0; i < len(secret); i++ {
		c := secret[i]
		if !('A' <= c && c <= 'Z' || 'a' <= c && c <= 'z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return fmt.Errorf("secret has %q at byte %d: only A-Z, a-z, 0-9, _ and - are allowed", c, i)
		}
	}
	return nil
}

// secretOK compares the secrets in constant time. Hashing first makes the
// time independent of the length too.
func (w *Webhook) secretOK(got string) bool {
	if w.Secret == "" {
		return w.InsecureNoSecret
	}
	a, b := sha256.Sum256([]byte(got)), sha256.Sum256([]byte(w.Secret))
	return subtle.ConstantTimeCompare(a[:], b[:]) == 1
}

// Receive implements [Source]: requests are handed to the runner until
// ctx is cancelled.
func (w *Webhook) Receive(ctx context.Context, feed *Feed) error {
	w.mu.Lock()
	if w.feed != nil {
		w.mu.Unlock()
		return errors.New("runner: webhook already used by a running Run")
	}
	w.feed = feed
	w.lastRun = func(err error) { feed.Error(context.WithoutCancel(ctx), err) }
	w.mu.Unlock()

	<-ctx.Done()

	w.mu.Lock()
	w.feed = nil
	w.mu.Unlock()
	return nil
}

// Close implements [Source]; a webhook has nothing to confirm, since each
// request is answered when its update was handled (or given up).
func (w *Webhook) Close(context.Context) error { return nil }

// SetWebhookOptions are the optional parameters of [SetWebhook]. The zero
// value sends none of them, leaving Telegram's defaults.
type SetWebhookOptions struct {
	// DropPendingUpdates drops the updates Telegram holds for the bot.
	DropPendingUpdates bool
	// MaxConnections is the most simultaneous requests Telegram makes, 1
	// to 100; 0 means Telegram's default (40). Above 1, two updates of
	// one chat may arrive in either order (see [Webhook]).
	MaxConnections int
	// AllowedUpdates restricts the update kinds Telegram sends; nil
	// keeps the previous setting, an empty non-nil slice means all
	// kinds but a few (see the Bot API).
	AllowedUpdates []string
	// IPAddress is the fixed IP address to send requests to instead of
	// resolving url.
	IPAddress string
}

// SetWebhook registers url as bot's webhook with the secret that Telegram
// will send in every request's X-Telegram-Bot-Api-Secret-Token header,
// and opts. tgbotapi v5.5.1's WebhookConfig has no field for the secret,
// hence this helper. It checks the secret (1 to 256 characters: A-Z, a-z,
// 0-9, _ and -) and opts.MaxConnections (0 to 100) before calling
// Telegram, and returns an error wrapping [session.ErrConfig] if either
// is wrong.
func SetWebhook(bot *tgbotapi.BotAPI, url, secret string, opts SetWebhookOptions) error {
	if err := validSecret(secret); err != nil {
		return fmt.Errorf("%w: runner: SetWebhook: %w", session.ErrConfig, err)
	}
	if opts.MaxConnections < 0 || opts.MaxConnections > 100 {
		return fmt.Errorf("%w: runner: SetWebhook: SetWebhookOptions.MaxConnections %d is outside 1 to 100 (0 means Telegram's default)", session.ErrConfig, opts.MaxConnections)
	}
	params := tgbotapi.Params{"url": url, "secret_token": secret}
	params.AddBool("drop_pending_updates", opts.DropPendingUpdates)
	params.AddNonZero("max_connections", opts.MaxConnections)
	params.AddNonEmpty("ip_address", opts.IPAddress)
	if opts.AllowedUpdates != nil {
		if err := params.AddInterface("allowed_updates", opts.AllowedUpdates); err != nil {
			return fmt.Errorf("runner: SetWebhook: %w", err)
		}
	}
	if _, err := bot.MakeRequest("setWebhook", params); err != nil {
		return fmt.Errorf("runner: setWebhook: %w", err)
	}
	return nil
}
