package telegramtest

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/tgsession/session"
)

// Defaults of the options of [NewServer].
const (
	// DefaultWebhookTimeout is how long the server waits for a webhook's
	// answer before it counts the attempt as failed and sends the update
	// again. Telegram waits about a minute; tests want to know sooner.
	DefaultWebhookTimeout = 5 * time.Second
	// DefaultRetryDelay is how long the server waits after a failed
	// webhook attempt (a non-2xx answer, a timeout, no connection)
	// before the next one. Telegram backs off for seconds or more.
	DefaultRetryDelay = 20 * time.Millisecond
)

// Range of the random first update id of [NewServer].
const (
	minFirstUpdateID = 1 << 20
	maxFirstUpdateID = 1 << 30
)

// An Option configures [NewServer].
type Option func(*config)

type config struct {
	firstUpdateID  int
	addr           string
	webhookTimeout time.Duration
	retryDelay     time.Duration
}

// WithFirstUpdateID makes the server number its updates from id (a
// positive number) instead of from a random id in [1<<20, 1<<30). The
// random start keeps a server made for one test from reusing the update
// ids that an earlier test (or run) recorded as handled in a persistent
// store: the runner and the stores skip an update whose id they have
// seen. Fix it only in tests that assert on ids and use no such store.
func WithFirstUpdateID(id int) Option {
	return func(c *config) { c.firstUpdateID = id }
}

// WithAddr makes the server listen on addr (such as "127.0.0.1:8081")
// instead of a random port of 127.0.0.1.
func WithAddr(addr string) Option {
	return func(c *config) { c.addr = addr }
}

// WithWebhookTimeout sets how long the server waits for the bot's answer
// to a webhook request before it counts the attempt as failed (0 means
// [DefaultWebhookTimeout]).
func WithWebhookTimeout(d time.Duration) Option {
	return func(c *config) { c.webhookTimeout = d }
}

// WithRetryDelay sets how long the server waits after a failed webhook
// attempt before it sends the update again (0 means [DefaultRetryDelay]).
func WithRetryDelay(d time.Duration) Option {
	return func(c *config) { c.retryDelay = d }
}

// newConfig applies opts and checks the result; the error wraps
// session.ErrConfig.
func newConfig(opts []Option) (config, error) {
	var c config
	for _, o := range opts {
		if o != nil {
			o(&c)
		}
	}
	switch {
	case c.firstUpdateID < 0:
		return c, fmt.Errorf("%w: telegramtest: WithFirstUpdateID(%d): update ids are positive", session.ErrConfig, c.firstUpdateID)
	case c.webhookTimeout < 0:
		return c, fmt.Errorf("%w: telegramtest: WithWebhookTimeout(%v) is negative", session.ErrConfig, c.webhookTimeout)
	case c.retryDelay < 0:
		return c, fmt.Errorf("%w: telegramtest: WithRetryDelay(%v) is negative", session.ErrConfig, c.retryDelay)
	}
	if c.firstUpdateID == 0 {
		c.firstUpdateID = minFirstUpdateID + rand.IntN(maxFirstUpdateID-minFirstUpdateID)
	}
	if c.webhookTimeout == 0 {
		c.webhookTimeout = DefaultWebhookTimeout
	}
	if c.retryDelay == 0 {
		c.retryDelay = DefaultRetryDelay
	}
	return c, nil
}
