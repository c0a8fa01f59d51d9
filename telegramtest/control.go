package telegramtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
)

// ControlPrefix is the path under which every [Server] serves its control
// API, for tests that drive the server from another process (see
// [Remote], and package telegramtest/cmd/fakebotapi). It cannot clash
// with the Bot API's /bot<token>/<method> paths. The bodies are JSON,
// with the Go field names of this package's types:
//
//	POST /control/send        {"chat_id":101,"user_id":101,"text":"/start"}
//	                          {"chat_id":101,"user_id":101,"press":"Yes"}
//	                          {"chat_id":101,"user_id":101,"update":{...}}
//	                          optional: "thread_id", "business_connection_id", "wait" (e.g. "5s")
//	    queues the message, the press or the raw update, waits until the
//	    bot acknowledged it, and answers the Turn (200), the Turn so far
//	    when the wait ended first (504), or {"error":...} (400).
//	POST /control/updates     a raw update: queued, answers {"update_id":N}
//	POST /control/webhook     {"url":...,"secret":...}: see Server.SetWebhook
//	POST /control/fail        {"method":...,"code":429,"description":...,"retry_after":5}
//	GET  /control/sent        the Messages the bot sent
//	GET  /control/requests    the Requests received
//	GET  /control/deliveries  the webhook Deliveries
//	GET  /control/pending     {"pending":N}
const ControlPrefix = "/control/"

// controlStep is the body of /control/send.
type controlStep struct {
	ChatID               int64           `json:"chat_id"`
	UserID               int64           `json:"user_id"`
	ThreadID             int             `json:"thread_id,omitempty"`
	BusinessConnectionID string          `json:"business_connection_id,omitempty"`
	Text                 string          `json:"text,omitempty"`
	Press                string          `json:"press,omitempty"`
	Update               json.RawMessage `json:"update,omitempty"`
	Wait                 string          `json:"wait,omitempty"`
}

type controlFail struct {
	Method      string `json:"method"`
	Code        int    `json:"code"`
	Description string `json:"description"`
	RetryAfter  int    `json:"retry_after,omitempty"`
}

type controlError struct {
	Error string `json:"error"`
}

// serveControl answers the control API.
func (s *Server) serveControl(w http.ResponseWriter, r *http.Request) {
	what := strings.TrimPrefix(r.URL.Path, ControlPrefix)
	get := r.Method == http.MethodGet
	switch {
	case get && what == "sent":
		writeJSON(w, http.StatusOK, s.Sent())
	case get && what == "requests":
		writeJSON(w, http.StatusOK, s.Requests())
	case get && what == "deliveries":
		writeJSON(w, http.StatusOK, s.Deliveries())
	case get && what == "pending":
		writeJSON(w, http.StatusOK, map[string]int{"pending": s.Pending()})
	case r.Method != http.MethodPost:
		writeJSON(w, http.StatusNotFound, controlError{"no such control endpoint: " + r.Method + " " + r.URL.Path})
	case what == "updates":
		body, err := io.ReadAll(r.Body)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, controlError{err.Error()})
			return
		}
		id, err := catch(func() int { return s.AddRawUpdate(body) })
		if err != nil {
			writeJSON(w, http.StatusBadRequest, controlError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]int{"update_id": id})
	case what == "webhook":
		var hook struct{ URL, Secret string }
		if err := json.NewDecoder(r.Body).Decode(&hook); err != nil {
			writeJSON(w, http.StatusBadRequest, controlError{err.Error()})
			return
		}
		s.SetWebhook(hook.URL, hook.Secret)
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case what == "fail":
		var f controlFail
		if err := json.NewDecoder(r.Body).Decode(&f); err != nil {
			writeJSON(w, http.StatusBadRequest, controlError{err.Error()})
			return
		}
		if _, err := catch(func() int {
			s.Fail(f.Method, f.Code, f.Description, tgbotapi.ResponseParameters{RetryAfter: f.RetryAfter})
			return 0
		}); err != nil {
			writeJSON(w, http.StatusBadRequest, controlError{err.Error()})
			return
		}
		writeJSON(w, http.StatusOK, map[string]bool{"ok": true})
	case what == "send":
		s.controlSend(w, r)
	default:
		writeJSON(w, http.StatusNotFound, controlError{"no such control endpoint: " + r.Method + " " + r.URL.Path})
	}
}

func (s *Server) controlSend(w http.ResponseWriter, r *http.Request) {
	var st controlStep
	if err := json.NewDecoder(r.Body).Decode(&st); err != nil {
		writeJSON(w, http.StatusBadRequest, controlError{err.Error()})
		return
	}
	wait := DefaultWait
	if st.Wait != "" {
		d, err := time.ParseDuration(st.Wait)
		if err != nil {
			writeJSON(w, http.StatusBadRequest, controlError{err.Error()})
			return
		}
		wait = d
	}
	if st.ChatID == 0 || st.UserID == 0 && st.Update == nil {
		writeJSON(w, http.StatusBadRequest, controlError{"chat_id and user_id are required"})
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	c := s.Chat(st.ChatID, st.UserID)
	if st.ThreadID != 0 {
		c = c.InTopic(st.ThreadID)
	}
	if st.BusinessConnectionID != "" {
		c = c.InBusiness(st.BusinessConnectionID)
	}
	var (
		t   *Turn
		err error
	)
	switch {
	case st.Update != nil:
		t, err = catchTurn(func() (*Turn, error) { return c.Deliver(ctx, st.Update) })
	case st.Press != "":
		t, err = c.Press(ctx, st.Press)
	default:
		t, err = c.Send(ctx, st.Text)
	}
	switch {
	case err == nil:
		writeJSON(w, http.StatusOK, t)
	case errors.Is(err, context.DeadlineExceeded) && t != nil && t.UpdateID != 0:
		writeJSON(w, http.StatusGatewayTimeout, t)
	default:
		writeJSON(w, http.StatusBadRequest, controlError{err.Error()})
	}
}

// catch turns the panics of the scripting methods (mistakes, wrapping
// session.ErrConfig) into errors, for the control API.
func catch[T any](f func() T) (v T, err error) {
	defer func() {
		if r := recover(); r != nil {
			if e, ok := r.(error); ok {
				err = e
			} else {
				err = fmt.Errorf("%v", r)
			}
		}
	}()
	return f(), nil
}

func catchTurn(f func() (*Turn, error)) (t *Turn, err error) {
	v, perr := catch(func() [2]any { t, err := f(); return [2]any{t, err} })
	if perr != nil {
		return nil, perr
	}
	t, _ = v[0].(*Turn)
	err, _ = v[1].(error)
	return t, err
}

// Remote drives a fake Bot API server through its control API (see
// [ControlPrefix]), typically one that another process runs with
// telegramtest/cmd/fakebotapi. Its methods mirror the Server's.
type Remote struct {
	// URL is the server's base URL, e.g. "http://127.0.0.1:8081".
	URL string
	// Client makes the requests; nil means http.DefaultClient.
	Client *http.Client
}

// Endpoint returns the API endpoint format expected by
// tgbotapi.NewBotAPIWithAPIEndpoint.
func (r *Remote) Endpoint() string { return r.URL + "/bot%s/%s" }

// do makes one control call: a GET without body, else a POST of in as
// JSON (raw bytes are sent as they are), decoding the answer into out.
func (r *Remote) do(ctx context.Context, what string, in, out any) (int, error) {
	method, body := http.MethodGet, []byte(nil)
	if in != nil {
		method = http.MethodPost
		if raw, ok := in.([]byte); ok {
			body = raw
		} else {
			b, err := json.Marshal(in)
			if err != nil {
				return 0, fmt.Errorf("telegramtest: Remote %s: %w", what, err)
			}
			body = b
		}
	}
	req, err := http.NewRequestWithContext(ctx, method, strings.TrimSuffix(r.URL, "/")+ControlPrefix+what, bytes.NewReader(body))
	if err != nil {
		return 0, fmt.Errorf("telegramtest: Remote %s: %w", what, err)
	}
	req.Header.Set("Content-Type", "application/json")
	client := r.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return 0, fmt.Errorf("telegramtest: Remote %s: %w", what, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return resp.StatusCode, fmt.Errorf("telegramtest: Remote %s: %w", what, err)
	}
	if resp.StatusCode != http.StatusOK && resp.StatusCode != http.StatusGatewayTimeout {
		var e controlError
		_ = json.Unmarshal(b, &e)
		return resp.StatusCode, fmt.Errorf("telegramtest: Remote %s: %d: %s", what, resp.StatusCode, e.Error)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return resp.StatusCode, fmt.Errorf("telegramtest: Remote %s: %w", what, err)
	}
	return resp.StatusCode, nil
}

// step posts one /control/send step.
func (r *Remote) step(ctx context.Context, st controlStep) (*Turn, error) {
	if d, ok := ctx.Deadline(); ok {
		// The server waits until the deadline, then answers the turn so
		// far; the request itself gets a moment more for that answer,
		// and ends early only if ctx is cancelled.
		wait := time.Until(d)
		st.Wait = wait.String()
		reqCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), wait+2*time.Second)
		defer cancel()
		outer := ctx
		stop := context.AfterFunc(outer, func() {
			if !errors.Is(outer.Err(), context.DeadlineExceeded) {
				cancel()
			}
		})
		defer stop()
		ctx = reqCtx
	}
	t := &Turn{}
	status, err := r.do(ctx, "send", st, t)
	if err == nil && status == http.StatusGatewayTimeout {
		err = fmt.Errorf("telegramtest: update %d in chat %d: not acknowledged in time: %w", t.UpdateID, st.ChatID, context.DeadlineExceeded)
	}
	return t, err
}

// Send sends text as user userID's message in chat chatID, waits until
// the bot acknowledged it, and returns the turn, as [Chat.Send] does.
func (r *Remote) Send(ctx context.Context, chatID, userID int64, text string) (*Turn, error) {
	return r.step(ctx, controlStep{ChatID: chatID, UserID: userID, Text: text})
}

// Press presses button under the bot's latest message in chat chatID that
// has it, as user userID, as [Chat.Press] does.
func (r *Remote) Press(ctx context.Context, chatID, userID int64, button string) (*Turn, error) {
	return r.step(ctx, controlStep{ChatID: chatID, UserID: userID, Press: button})
}

// Deliver delivers raw, an update's JSON, in chat chatID, as
// [Chat.Deliver] does.
func (r *Remote) Deliver(ctx context.Context, chatID int64, raw []byte) (*Turn, error) {
	return r.step(ctx, controlStep{ChatID: chatID, Update: raw})
}

// AddRawUpdate queues raw without waiting and returns its update_id, as
// [Server.AddRawUpdate] does.
func (r *Remote) AddRawUpdate(ctx context.Context, raw []byte) (int, error) {
	var out struct {
		UpdateID int `json:"update_id"`
	}
	_, err := r.do(ctx, "updates", raw, &out)
	return out.UpdateID, err
}

// SetWebhook sets the webhook, as [Server.SetWebhook] does.
func (r *Remote) SetWebhook(ctx context.Context, url, secret string) error {
	var out map[string]bool
	_, err := r.do(ctx, "webhook", map[string]string{"URL": url, "Secret": secret}, &out)
	return err
}

// Sent returns the messages the bot sent, as [Server.Sent] does.
func (r *Remote) Sent(ctx context.Context) ([]Message, error) {
	var out []Message
	_, err := r.do(ctx, "sent", nil, &out)
	return out, err
}

// Deliveries returns the webhook deliveries, as [Server.Deliveries] does.
func (r *Remote) Deliveries(ctx context.Context) ([]Delivery, error) {
	var out []Delivery
	_, err := r.do(ctx, "deliveries", nil, &out)
	return out, err
}
