package runner

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sync"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// DefaultMaxBodyBytes is the default limit of a webhook request body.
// Telegram's updates are a few kilobytes; the limit only stops junk.
const DefaultMaxBodyBytes = 1 << 20

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
// update_id (only whitespace may follow the update). An update is answered with 200 as soon as the runner has
// taken it, before it is handled. When the runner is full the request
// waits for room (backpressure); if Telegram gives up first, the update
// was not taken and Telegram sends it again. Before Run starts and after
// it stops the answer is 503, so Telegram keeps the update for later.
//
// Updates are ordered as their requests arrive. With setWebhook's
// max_connections above 1, Telegram may send several at once, so two
// updates of one chat sent within moments may arrive in either order.
//
// To stop: shut the HTTP server down first (http.Server.Shutdown lets
// requests in progress finish handing over their updates), then cancel
// Run's context, which drains what was taken. Cancelling Run first also
// loses nothing: requests arriving after it are answered 503 and retried
// by Telegram.
//
// Register the URL and the secret with [SetWebhook].
type Webhook struct {
	// Secret is the secret_token given to setWebhook. Requests without
	// it are refused; an empty Secret refuses every request.
	Secret string
	// MaxBodyBytes limits the request body. 0 means DefaultMaxBodyBytes;
	// negative is an error ([Run] refuses such a Webhook as its Source).
	MaxBodyBytes int64

	mu   sync.Mutex
	feed *Feed // set while Run receives
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
		http.Error(rw, "not running", http.StatusServiceUnavailable)
		return
	}
	if err := feed.Put(r.Context(), &u, nil); err != nil {
		// Not taken: Telegram retries on any status but 2xx.
		http.Error(rw, "not taken", http.StatusServiceUnavailable)
		return
	}
	rw.WriteHeader(http.StatusOK)
}

// secretOK compares the secrets in constant time. Hashing first makes the
// time independent of the length too.
func (w *Webhook) secretOK(got string) bool {
	if w.Secret == "" {
		return false
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
	w.mu.Unlock()

	<-ctx.Done()

	w.mu.Lock()
	w.feed = nil
	w.mu.Unlock()
	return nil
}

// Close implements [Source]; a webhook has nothing to confirm, since each
// request was answered when its update was taken.
func (w *Webhook) Close(context.Context) error { return nil }

// SetWebhook registers url as bot's webhook with the secret that Telegram
// will send in every request's X-Telegram-Bot-Api-Secret-Token header (1
// to 256 characters: A-Z, a-z, 0-9, _ and -). tgbotapi v5.5.1's
// WebhookConfig has no field for the secret, hence this helper.
func SetWebhook(bot *tgbotapi.BotAPI, url, secret string) error {
	if _, err := bot.MakeRequest("setWebhook", tgbotapi.Params{"url": url, "secret_token": secret}); err != nil {
		return fmt.Errorf("runner: setWebhook: %w", err)
	}
	return nil
}
