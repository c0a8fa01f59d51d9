package telegramtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"time"
)

// secretHeader is the header in which Telegram sends setWebhook's
// secret_token.
const secretHeader = "X-Telegram-Bot-Api-Secret-Token"

// defaultMaxConnections is Telegram's default of setWebhook's
// max_connections.
const defaultMaxConnections = 40

// Delivery is what the server did to deliver one update to the webhook.
type Delivery struct {
	// UpdateID is the update's id.
	UpdateID int
	// Attempts is the number of requests made so far.
	Attempts int
	// Statuses holds the HTTP status of each attempt, in order: 0 for an
	// attempt that got no answer (a timeout, a refused connection).
	Statuses []int
	// Acknowledged tells whether an attempt was answered 2xx: the update
	// is then delivered and will not be sent again.
	Acknowledged bool
}

// webhook is the state of the webhook set with setWebhook or SetWebhook.
type webhook struct {
	url      string
	secret   string
	maxConns int
}

// SetWebhook sets the webhook as the bot's setWebhook call would, without
// one: the server then POSTs each pending and future update to url, with
// secret (if not empty) in the X-Telegram-Bot-Api-Secret-Token header,
// and getUpdates answers 409. An empty url removes the webhook, as
// deleteWebhook does (pending updates are kept).
func (s *Server) SetWebhook(url, secret string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hook = webhook{url: url, secret: secret, maxConns: defaultMaxConnections}
	if url == "" {
		s.hook = webhook{}
	}
	s.notifyLocked()
}

// Deliveries returns what the server did to deliver each update to the
// webhook, in the order of their first attempts.
func (s *Server) Deliveries() []Delivery {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Delivery, len(s.deliveries))
	for i, d := range s.deliveries {
		out[i] = *d
		out[i].Statuses = append([]int(nil), d.Statuses...)
	}
	return out
}

// WaitAcknowledged blocks until the bot acknowledged update id as
// Telegram counts it: a getUpdates offset above id confirmed it (polling)
// or the webhook answered it 2xx. It returns ctx's error if ctx ends
// first, and ErrClosed if the server is closed first.
func (s *Server) WaitAcknowledged(ctx context.Context, id int) error {
	for {
		s.mu.Lock()
		acked := s.ackedLocked(id)
		closed, ch := s.closed, s.changed
		s.mu.Unlock()
		switch {
		case acked:
			return nil
		case closed:
			return ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("telegramtest: update %d not acknowledged: %w", id, ctx.Err())
		}
	}
}

// ackedLocked tells whether update id was acknowledged. s.mu must be held.
func (s *Server) ackedLocked(id int) bool {
	return id < s.confirmed || s.acked[id]
}

// setWebhookCall answers setWebhook.
func (s *Server) setWebhookCall(c *call) (any, *apiError) {
	u := c.params.Get("url")
	if u != "" {
		if p, err := url.Parse(u); err != nil || p.Host == "" || (p.Scheme != "http" && p.Scheme != "https") {
			return nil, badRequest("bad webhook: invalid webhook URL specified")
		}
	}
	maxConns := defaultMaxConnections
	if v := c.params.Get("max_connections"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > 100 {
			return nil, badRequest("bad webhook: max_connections must be between 1 and 100")
		}
		maxConns = n
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c.params.Get("drop_pending_updates") == "true" {
		s.pending = nil
	}
	s.hook = webhook{url: u, secret: c.params.Get("secret_token"), maxConns: maxConns}
	if u == "" {
		s.hook = webhook{}
	}
	s.notifyLocked()
	return true, nil
}

// webhookInfo is getWebhookInfo's answer, with Telegram's field names
// (tgbotapi's WebhookInfo has no secret-free way to omit empty fields).
type webhookInfo struct {
	URL                  string `json:"url"`
	HasCustomCertificate bool   `json:"has_custom_certificate"`
	PendingUpdateCount   int    `json:"pending_update_count"`
	LastErrorDate        int64  `json:"last_error_date,omitempty"`
	LastErrorMessage     string `json:"last_error_message,omitempty"`
	MaxConnections       int    `json:"max_connections,omitempty"`
}

func (s *Server) webhookInfoLocked() webhookInfo {
	info := webhookInfo{URL: s.hook.url, PendingUpdateCount: len(s.pending)}
	if s.hook.url != "" {
		info.MaxConnections = s.hook.maxConns
		if !s.lastErrDate.IsZero() {
			info.LastErrorDate, info.LastErrorMessage = s.lastErrDate.Unix(), s.lastErr
		}
	}
	return info
}

// deliverLoop sends pending updates to the webhook while one is set, until
// the server is closed: the updates of one chat (or, without a chat, of
// one user) one at a time and in update_id order, those of different
// chats concurrently up to max_connections, each again after
// s.cfg.retryDelay until it is answered 2xx.
func (s *Server) deliverLoop() {
	defer s.wg.Done()
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			return
		}
		var wake time.Duration = -1
		if s.hook.url != "" {
			wake = s.startDeliveriesLocked()
		}
		ch := s.changed
		s.mu.Unlock()

		var tick <-chan time.Time
		if wake >= 0 {
			timer.Reset(wake)
			tick = timer.C
		}
		select {
		case <-ch:
		case <-tick:
		}
		if !timer.Stop() {
			select {
			case <-timer.C:
			default:
			}
		}
	}
}

// startDeliveriesLocked starts the attempts that are due and returns how
// long until the next retry is due, or -1 when none is waiting. s.mu must
// be held.
func (s *Server) startDeliveriesLocked() time.Duration {
	now := time.Now()
	wake := time.Duration(-1)
	busy := map[string]bool{} // keys with an earlier pending update
	for _, p := range s.pending {
		if p.key != "" {
			if busy[p.key] {
				continue
			}
			busy[p.key] = true
		}
		if s.inFlight[p.id] {
			continue
		}
		if at, ok := s.retryAt[p.id]; ok && at.After(now) {
			if d := at.Sub(now); wake < 0 || d < wake {
				wake = d
			}
			continue
		}
		if len(s.inFlight) >= s.hook.maxConns {
			break
		}
		s.inFlight[p.id] = true
		d := s.deliveryOf[p.id]
		if d == nil {
			d = &Delivery{UpdateID: p.id}
			s.deliveryOf[p.id] = d
			s.deliveries = append(s.deliveries, d)
		}
		d.Attempts++
		s.wg.Add(1)
		go s.attempt(s.hook, p)
	}
	return wake
}

// attempt POSTs one update to the webhook and records the outcome.
func (s *Server) attempt(hook webhook, p pendingUpdate) {
	defer s.wg.Done()
	status, err := s.post(hook, p.raw)

	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.inFlight, p.id)
	if d := s.deliveryOf[p.id]; d != nil {
		d.Statuses = append(d.Statuses, status)
	}
	if status >= 200 && status < 300 {
		s.acked[p.id] = true
		delete(s.retryAt, p.id)
		if d := s.deliveryOf[p.id]; d != nil {
			d.Acknowledged = true
		}
		for i, q := range s.pending {
			if q.id == p.id {
				s.pending = append(s.pending[:i], s.pending[i+1:]...)
				break
			}
		}
	} else {
		s.retryAt[p.id] = time.Now().Add(s.cfg.retryDelay)
		s.lastErrDate = time.Now()
		if err != nil {
			s.lastErr = "Connection failed: " + err.Error()
		} else {
			s.lastErr = fmt.Sprintf("Wrong response from the webhook: %d %s", status, http.StatusText(status))
		}
	}
	s.notifyLocked()
}

// post sends raw to the webhook and returns the answer's status, 0 with
// the error when there is none.
func (s *Server) post(hook webhook, raw json.RawMessage) (int, error) {
	ctx, cancel := context.WithTimeout(s.ctx, s.cfg.webhookTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, hook.url, bytes.NewReader(raw))
	if err != nil {
		return 0, fmt.Errorf("telegramtest: webhook request: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	if hook.secret != "" {
		req.Header.Set(secretHeader, hook.secret)
	}
	resp, err := s.client.Do(req)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return 0, fmt.Errorf("telegramtest: webhook timeout after %v: %w", s.cfg.webhookTimeout, err)
		}
		return 0, fmt.Errorf("telegramtest: webhook: %w", err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode, nil
}

// orderKey is the key by which deliveries to the webhook are ordered: the
// chat of the update, or its sender without one; "" for neither.
func orderKey(raw []byte) string {
	var fields map[string]json.RawMessage
	if json.Unmarshal(raw, &fields) != nil {
		return ""
	}
	type idOnly struct {
		ID int64 `json:"id"`
	}
	var body struct {
		Chat    *idOnly `json:"chat"`
		From    *idOnly `json:"from"`
		User    *idOnly `json:"user"`
		Message *struct {
			Chat *idOnly `json:"chat"`
		} `json:"message"`
	}
	for k, v := range fields {
		if k == "update_id" || json.Unmarshal(v, &body) != nil {
			continue
		}
		switch {
		case body.Chat != nil:
			return "chat " + strconv.FormatInt(body.Chat.ID, 10)
		case body.Message != nil && body.Message.Chat != nil:
			return "chat " + strconv.FormatInt(body.Message.Chat.ID, 10)
		case body.From != nil:
			return "user " + strconv.FormatInt(body.From.ID, 10)
		case body.User != nil:
			return "user " + strconv.FormatInt(body.User.ID, 10)
		}
	}
	return ""
}
