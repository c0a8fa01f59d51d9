// Package telegramtest provides a fake Telegram Bot API server for tests,
// in the spirit of net/http/httptest.
//
// A real tgbotapi.BotAPI talks to it over HTTP, so tests exercise the same
// request encoding (including multipart uploads) and response decoding as
// production code:
//
//	srv := telegramtest.NewServer()
//	defer srv.Close()
//	bot, err := tgbotapi.NewBotAPIWithAPIEndpoint("test-token", srv.Endpoint())
//
// Every method a bot commonly calls answers with the shape Telegram
// answers: a Message for each send*, forwardMessage and edit* (true for
// inline messages), a MessageId for copyMessage, a Chat for getChat, true
// where Telegram answers true, and Telegram's 404 for unknown methods. It
// also rejects what Telegram rejects: empty or too long texts, edits of
// unknown messages or edits that change nothing, files missing from the
// request, chats it cannot know (an unknown @username; getChat of a chat
// never seen). Sending to a numeric chat id is accepted without scripting
// the chat first.
//
// Tests script incoming traffic with SendMessage, PressButton,
// AddUpdate or AddRawUpdate (Telegram's JSON, served byte for byte, for
// what tgbotapi v5.5.1 cannot express), and inspect what the bot did with Sent, WaitSent and
// Requests. Fail makes the next call of a method fail, with retry_after
// for 429; Pending tells what Telegram would still deliver.
//
// Update ids start at a random id in [1<<20, 1<<30) (fix the start with
// [WithFirstUpdateID]), so that a fake made for one test does not reuse
// the ids a persistent store recorded as handled in an earlier one.
//
// # Webhook mode
//
// Once the bot called setWebhook through the fake (runner.SetWebhook
// does), or the test called [Server.SetWebhook], the server POSTs every
// pending and future update to the webhook, as Telegram's JSON with the
// X-Telegram-Bot-Api-Secret-Token header: the updates of one chat one at
// a time, in order, those of different chats concurrently (up to
// max_connections), and each again after a non-2xx answer or no answer
// within [WithWebhookTimeout] (short by default), until one is 2xx.
// [Server.Deliveries] tells the attempts; getWebhookInfo reports the
// pending count and the last error; deleteWebhook goes back to
// getUpdates, which answers 409 while a webhook is set. [RoundRobin] puts
// several replicas behind one webhook URL.
//
// # Conversations
//
// [Server.Chat] scripts a user in a chat with Telegram's JSON (builders
// for messages with their bot_command entities, button presses, edits,
// forum topics, business messages and group migrations), and each step
// waits until the bot acknowledged its update (a confirmed getUpdates
// offset, or a 2xx webhook answer; see [Server.WaitAcknowledged]) and
// returns the [Turn]: the replies, edits and callback answer. In tests,
// [Server.Conversation] does the same and fails the test instead:
//
//	alice := srv.Conversation(t, 101, 101)
//	alice.Send("/start").Expect("Hi! What's your name?")
//	alice.Press("Yes").ExpectAnswer("Great!")
//
// # Other processes
//
// Every server also serves a control API under [ControlPrefix] (driven
// from Go with [Remote]); package telegramtest/cmd/fakebotapi runs a
// server as a process of its own, for several bot processes and a test
// driving them.
//
// A bot run with runner.Run is stopped by cancelling Run's context: Run
// returns after its last, short getUpdates, which also ends its long
// poll, so the server can be closed right after. When the bot uses
// tgbotapi's GetUpdatesChan instead, stop it with srv.StopPolling(bot),
// wait until the updates channel is closed, and only then Close the
// server. Closing first would let tgbotapi's loop poll a closed server
// and sleep through its 3-second error retry. As on Telegram, a newer
// getUpdates call ends a waiting one with 409 Conflict, and getUpdates is
// refused while a webhook is set.
package telegramtest

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode"
	"unicode/utf16"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// Identity of the bot answered by getMe and used as the sender of the
// bot's own messages, exported so tests can compare against it.
const (
	BotID        int64 = 1000
	BotUserName        = "test_bot"
	BotFirstName       = "Test Bot"
)

// maxLimit mirrors the Telegram cap on getUpdates' limit parameter.
const maxLimit = 100

// ErrClosed is returned by WaitSent when the server is closed before enough
// messages were sent, since no more can arrive after that.
var ErrClosed = errors.New("telegramtest: server closed")

// Request is one recorded Bot API call.
type Request struct {
	// Method is the API method name as the client sent it, e.g. "sendMessage".
	Method string
	// Params holds the form parameters of the call (file parts of
	// multipart uploads are not kept).
	Params url.Values
}

// Message is a message the bot sent (with any send* method,
// forwardMessage, copyMessage or sendMediaGroup), reduced to the fields
// tests usually assert on.
type Message struct {
	// Method is the API method, e.g. "sendMessage" or "sendPhoto".
	Method string
	// MessageID is the id the server gave the message.
	MessageID int
	// ChatID is the chat the message went to.
	ChatID int64
	// Text is the text of sendMessage.
	Text string
	// Caption is the caption of a media message.
	Caption string
	// ParseMode is the parse_mode parameter.
	ParseMode string
	// ReplyTo is the reply_to_message_id parameter, 0 when absent.
	ReplyTo int
	// ReplyMarkup is the reply_markup parameter as sent (JSON), empty
	// when absent.
	ReplyMarkup string
	// InlineKeyboard is the inline keyboard of ReplyMarkup, if it has one.
	InlineKeyboard [][]tgbotapi.InlineKeyboardButton
	// File is the file of a media message: the file_id or URL given, or
	// the name of the uploaded file.
	File string
	// ThreadID is the message_thread_id parameter (a forum topic), 0
	// when absent.
	ThreadID int
	// BusinessConnectionID is the business_connection_id parameter, empty
	// when absent.
	BusinessConnectionID string
}

// migrated records that group became the supergroup super.
func (s *Server) migrated(group, super int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.migratedTo[group] = super
}

type failure struct {
	code        int
	description string
	params      tgbotapi.ResponseParameters
}

// Server is a fake Telegram Bot API server. Create it with NewServer and
// Close it when done. All methods are safe for concurrent use.
type Server struct {
	// URL is the base URL of the server, e.g. "http://127.0.0.1:1234".
	URL string

	ts        *httptest.Server
	closeOnce sync.Once

	mu sync.Mutex
	// changed is closed and replaced on every state change, so waiters
	// (long polls, WaitSent) can block on it instead of polling.
	changed      chan struct{}
	closed       bool
	stopped      bool            // StopPolling was called: getUpdates answers at once
	pending      []pendingUpdate // sorted by id, not yet confirmed
	confirmed    int             // the highest positive offset received: ids below it are gone
	lastUpdateID int
	lastMsgID    int
	chats        map[int64]tgbotapi.Chat // chats seen in scripted updates or sent to
	messages     map[msgKey]*tgbotapi.Message
	requests     []Request
	sent         []Message
	failures     map[string][]failure // keyed by lower-case method name
	stoppedBots  map[*tgbotapi.BotAPI]bool
	polls        int // getUpdates calls so far: a newer call ends a waiting one
	commands     []tgbotapi.BotCommand
	lastFileID   int
	edits        []Message       // the bot's edits, as each left its message
	migratedTo   map[int64]int64 // groups that became supergroups (Chat.Migrate)

	// The webhook, and the delivery to it (see webhook.go).
	cfg         config
	hook        webhook
	inFlight    map[int]bool      // update ids being POSTed
	retryAt     map[int]time.Time // when a failed update is due again
	acked       map[int]bool      // update ids the webhook answered 2xx
	deliveries  []*Delivery
	deliveryOf  map[int]*Delivery
	lastErr     string
	lastErrDate time.Time
	client      *http.Client
	ctx         context.Context // ends at Close, ending deliveries
	cancel      context.CancelFunc
	wg          sync.WaitGroup // the delivery loop and its attempts
}

// pendingUpdate is a queued update: its id and its JSON, served as is.
type pendingUpdate struct {
	id  int
	raw json.RawMessage
	key string // the webhook's ordering key, see orderKey
}

// msgKey identifies a message: ids are per chat in Telegram.
type msgKey struct {
	chat int64
	id   int
}

// NewServer starts a fake Bot API server listening on a random port of
// 127.0.0.1 (see [WithAddr]). Any bot token is accepted. Update ids start
// at a random id in [1<<20, 1<<30) (see [WithFirstUpdateID]), and go up
// by one from there. It panics with an error wrapping
// [session.ErrConfig] if an option is invalid, or if it cannot listen on
// the address of WithAddr.
func NewServer(opts ...Option) *Server {
	cfg, err := newConfig(opts)
	if err != nil {
		panic(err)
	}
	s := &Server{
		changed:      make(chan struct{}),
		chats:        make(map[int64]tgbotapi.Chat),
		messages:     make(map[msgKey]*tgbotapi.Message),
		failures:     make(map[string][]failure),
		stoppedBots:  make(map[*tgbotapi.BotAPI]bool),
		migratedTo:   make(map[int64]int64),
		lastUpdateID: cfg.firstUpdateID - 1,
		cfg:          cfg,
		inFlight:     make(map[int]bool),
		retryAt:      make(map[int]time.Time),
		acked:        make(map[int]bool),
		deliveryOf:   make(map[int]*Delivery),
		client:       &http.Client{},
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	s.ts = httptest.NewUnstartedServer(http.HandlerFunc(s.serveHTTP))
	if cfg.addr != "" {
		ln, err := net.Listen("tcp", cfg.addr)
		if err != nil {
			panic(fmt.Errorf("%w: telegramtest: WithAddr(%q): %w", session.ErrConfig, cfg.addr, err))
		}
		s.ts.Listener.Close()
		s.ts.Listener = ln
	}
	s.ts.Start()
	s.URL = s.ts.URL
	s.wg.Add(1)
	go s.deliverLoop()
	return s
}

// Endpoint returns the API endpoint format expected by
// tgbotapi.NewBotAPIWithAPIEndpoint (token and method are filled in by
// tgbotapi).
func (s *Server) Endpoint() string {
	return s.URL + "/bot%s/%s"
}

// Close wakes every waiting long poll (they answer an empty update list),
// then shuts the server down and waits for outstanding requests. Waking the
// polls first is what keeps Close from blocking for a whole poll timeout.
// Close may be called more than once.
func (s *Server) Close() {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		s.notifyLocked()
		s.mu.Unlock()
		s.cancel() // ends webhook attempts on the wire
		s.wg.Wait()
		s.client.CloseIdleConnections()
		s.ts.Close()
	})
}

// StopPolling stops bot's GetUpdatesChan loop without delay: it tells the
// bot to stop and makes the pending long poll, and any later getUpdates,
// answer at once with no updates, so the loop sees the stop and closes its
// updates channel. The server keeps serving other calls until Close.
// Calling it again, for the same bot or another, is harmless. It panics
// with an error wrapping [session.ErrConfig] if bot is nil.
func (s *Server) StopPolling(bot *tgbotapi.BotAPI) {
	if bot == nil {
		panic(fmt.Errorf("%w: telegramtest: StopPolling: nil bot", session.ErrConfig))
	}
	s.mu.Lock()
	if !s.stopped {
		s.stopped = true
		s.notifyLocked()
	}
	first := !s.stoppedBots[bot]
	s.stoppedBots[bot] = true
	s.mu.Unlock()
	if first {
		// tgbotapi closes a channel here, which panics the second time.
		bot.StopReceivingUpdates()
	}
}

// notifyLocked wakes all waiters. s.mu must be held.
func (s *Server) notifyLocked() {
	close(s.changed)
	s.changed = make(chan struct{})
}

// AddUpdate queues an update for getUpdates. A zero UpdateID is replaced by
// the next sequential id; the id actually used is returned. Updates are
// delivered in update_id order, as tgbotapi encodes u (so the handler's
// session.Context.Raw, under package runner, is that encoding); to send
// JSON that tgbotapi cannot express, use [Server.AddRawUpdate].
//
// Telegram's update ids are positive and unique, and a bot skips an id it
// has seen or confirmed, so an update breaking that would never be
// handled and the test would wait for it in vain: AddUpdate panics with
// an error wrapping [session.ErrConfig] if UpdateID is negative, already
// pending, or below an offset a getUpdates call has confirmed.
func (s *Server) AddUpdate(u tgbotapi.Update) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	u.UpdateID = s.updateIDLocked("AddUpdate", u.UpdateID)
	raw, err := json.Marshal(u)
	if err != nil {
		panic(fmt.Errorf("telegramtest: AddUpdate: encoding the update: %w", err))
	}
	s.queueLocked(&u, raw)
	return u.UpdateID
}

// AddRawUpdate queues an update given as its JSON, as Telegram would send
// it, for getUpdates, and returns its update_id. getUpdates serves it byte
// for byte, fields tgbotapi v5.5.1 does not know included (such as
// message_thread_id, or a whole business_message update), so a bot that
// reads the raw JSON (package runner's session.Context.Raw) sees them. An
// update_id that is missing or 0 is set to the next sequential id, the
// only change made to raw; otherwise the rules of [Server.AddUpdate]
// apply. raw is copied. The update's chat and message are remembered as
// with AddUpdate, as far as tgbotapi decodes them.
//
// It panics with an error wrapping [session.ErrConfig] if raw is not a
// JSON object, does not decode as a tgbotapi.Update (a known field of the
// wrong type: the bot could not decode it either), or breaks AddUpdate's
// rules for update_id.
func (s *Server) AddRawUpdate(raw []byte) int {
	var u tgbotapi.Update
	if err := json.Unmarshal(raw, &u); err != nil || !isObject(raw) {
		if err == nil {
			err = errors.New("not a JSON object")
		}
		panic(fmt.Errorf("%w: telegramtest: AddRawUpdate: %q is not an update: %w", session.ErrConfig, raw, err))
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	id := s.updateIDLocked("AddRawUpdate", u.UpdateID)
	if id != u.UpdateID {
		raw = withUpdateID(raw, id)
		u.UpdateID = id
	} else {
		raw = bytes.Clone(raw)
	}
	s.queueLocked(&u, raw)
	return id
}

// updateIDLocked checks id by AddUpdate's rules, naming caller in the
// panic, and returns it, or the next sequential id for 0. s.mu must be
// held.
func (s *Server) updateIDLocked(caller string, id int) int {
	if id != 0 {
		i := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].id >= id })
		switch {
		case id < 0:
			panic(fmt.Errorf("%w: telegramtest: %s: UpdateID %d is negative (0 picks the next id)", session.ErrConfig, caller, id))
		case i < len(s.pending) && s.pending[i].id == id:
			panic(fmt.Errorf("%w: telegramtest: %s: UpdateID %d is already pending (0 picks the next id)", session.ErrConfig, caller, id))
		case id < s.confirmed:
			panic(fmt.Errorf("%w: telegramtest: %s: UpdateID %d is below the confirmed offset %d (0 picks the next id)", session.ErrConfig, caller, id, s.confirmed))
		}
		return id
	}
	return s.lastUpdateID + 1
}

// queueLocked queues u, whose id was checked, with raw, its JSON as
// getUpdates serves it. s.mu must be held.
func (s *Server) queueLocked(u *tgbotapi.Update, raw json.RawMessage) {
	if u.UpdateID > s.lastUpdateID {
		s.lastUpdateID = u.UpdateID
	}
	// Remember the chat so replies to it carry the right chat type, and
	// the message so the bot can forward, copy or reply to it.
	if c := updateChat(u); c != nil {
		s.chats[c.ID] = *c
	}
	for _, m := range []*tgbotapi.Message{u.Message, u.ChannelPost} {
		if m != nil && m.Chat != nil {
			cp := *m
			s.messages[msgKey{m.Chat.ID, m.MessageID}] = &cp
		}
	}
	i := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].id > u.UpdateID })
	s.pending = append(s.pending, pendingUpdate{})
	copy(s.pending[i+1:], s.pending[i:])
	s.pending[i] = pendingUpdate{id: u.UpdateID, raw: raw, key: orderKey(raw)}
	s.notifyLocked()
}

// isObject tells whether raw, valid JSON, is an object.
func isObject(raw []byte) bool {
	b := bytes.TrimLeft(raw, " \t\r\n")
	return len(b) > 0 && b[0] == '{'
}

// withUpdateID returns a copy of raw, a JSON object, with id as the value
// of its update_id keys (matched as encoding/json matches them), or with
// "update_id" added first if it has none; every other byte is kept.
func withUpdateID(raw []byte, id int) []byte {
	value := strconv.Itoa(id)
	dec := json.NewDecoder(bytes.NewReader(raw))
	if _, err := dec.Token(); err != nil { // the '{'
		panic(err) // raw was checked
	}
	open := int(dec.InputOffset())
	empty := !dec.More()
	type span struct{ start, end int }
	var spans []span
	for dec.More() {
		key, err := dec.Token()
		if err != nil {
			panic(err)
		}
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			panic(err)
		}
		if k, _ := key.(string); strings.EqualFold(k, "update_id") {
			end := int(dec.InputOffset())
			spans = append(spans, span{end - len(v), end})
		}
	}
	var out []byte
	if len(spans) == 0 {
		out = append(out, raw[:open]...)
		out = append(out, `"update_id":`+value...)
		if !empty {
			out = append(out, ',')
		}
		return append(out, raw[open:]...)
	}
	last := 0
	for _, sp := range spans {
		out = append(out, raw[last:sp.start]...)
		out = append(out, value...)
		last = sp.end
	}
	return append(out, raw[last:]...)
}

// SendMessage queues a text message update from user userID in chat chatID
// and returns its update_id. The chat is "private" when chatID == userID and
// "group" otherwise. Text starting with "/" gets a bot_command entity so
// Message.IsCommand and Message.Command work as with real Telegram.
func (s *Server) SendMessage(chatID, userID int64, text string) int {
	user := &tgbotapi.User{
		ID:        userID,
		FirstName: "User" + strconv.FormatInt(userID, 10),
		UserName:  "user" + strconv.FormatInt(userID, 10),
	}
	chat := &tgbotapi.Chat{ID: chatID}
	if chatID == userID {
		chat.Type = "private"
		chat.FirstName = user.FirstName
		chat.UserName = user.UserName
	} else {
		chat.Type = "group"
		chat.Title = "Group " + strconv.FormatInt(chatID, 10)
	}
	msg := &tgbotapi.Message{
		MessageID: s.nextMessageID(),
		From:      user,
		Date:      int(time.Now().Unix()),
		Chat:      chat,
		Text:      text,
	}
	if strings.HasPrefix(text, "/") {
		cmd := text
		if i := strings.IndexFunc(text, unicode.IsSpace); i >= 0 {
			cmd = text[:i]
		}
		msg.Entities = []tgbotapi.MessageEntity{{
			Type:   "bot_command",
			Offset: 0,
			Length: len(utf16.Encode([]rune(cmd))),
		}}
	}
	return s.AddUpdate(tgbotapi.Update{Message: msg})
}

// Requests returns a copy of every API call received so far, in order,
// including getMe and each getUpdates poll.
func (s *Server) Requests() []Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Request, len(s.requests))
	for i, r := range s.requests {
		out[i] = Request{Method: r.Method, Params: cloneValues(r.Params)}
	}
	return out
}

// Sent returns a copy of the messages the bot sent (send* methods,
// forwardMessage, copyMessage), in order. Edits change the stored message,
// not this record.
func (s *Server) Sent() []Message {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Message(nil), s.sent...)
}

// WaitSent blocks until the bot has sent at least n messages (see Sent) and
// returns all sent so far. If ctx ends first it returns the messages sent so
// far and ctx.Err(); if the server is closed first it returns ErrClosed.
func (s *Server) WaitSent(ctx context.Context, n int) ([]Message, error) {
	for {
		s.mu.Lock()
		sent := append([]Message(nil), s.sent...)
		closed := s.closed
		ch := s.changed
		s.mu.Unlock()
		if len(sent) >= n {
			return sent, nil
		}
		if closed {
			return sent, ErrClosed
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return sent, ctx.Err()
		}
	}
}

// Fail makes the next call of method (case-insensitive) answer ok:false with
// the given error_code and description, as Telegram does for rejected calls.
// Optional parameters are answered as "parameters": RetryAfter for 429
// Too Many Requests (1 second when not given), MigrateToChatID for a group
// that became a supergroup. Repeated calls queue several failures. Note
// that tgbotapi's GetUpdatesChan sleeps 3 seconds after a failed
// getUpdates. It panics with an error wrapping [session.ErrConfig] if
// method is empty or holds a "/" or a space, since no call could match it.
//
//	srv.Fail("sendMessage", 429, "Too Many Requests: retry after 5",
//		tgbotapi.ResponseParameters{RetryAfter: 5})
func (s *Server) Fail(method string, code int, description string, params ...tgbotapi.ResponseParameters) {
	if method == "" || strings.ContainsRune(method, '/') || strings.IndexFunc(method, unicode.IsSpace) >= 0 {
		panic(fmt.Errorf("%w: telegramtest: Fail: method %q can never match a call", session.ErrConfig, method))
	}
	f := failure{code: code, description: description}
	if len(params) > 0 {
		f.params = params[0]
	}
	if code == http.StatusTooManyRequests && f.params.RetryAfter == 0 {
		f.params.RetryAfter = 1
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	key := strings.ToLower(method)
	s.failures[key] = append(s.failures[key], f)
}

// Pending returns how many updates are queued and not yet confirmed by a
// getUpdates offset: what Telegram would still deliver.
func (s *Server) Pending() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.pending)
}

func (s *Server) nextMessageID() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastMsgID++
	return s.lastMsgID
}

func (s *Server) botUser() *tgbotapi.User {
	return &tgbotapi.User{ID: BotID, IsBot: true, FirstName: BotFirstName, UserName: BotUserName}
}

// serveHTTP routes /bot<token>/<method> requests.
func (s *Server) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, ControlPrefix) {
		s.serveControl(w, r)
		return
	}
	rest, ok := strings.CutPrefix(r.URL.Path, "/bot")
	i := strings.LastIndex(rest, "/")
	if !ok || i < 0 || rest[i+1:] == "" {
		writeError(w, http.StatusNotFound, "Not Found")
		return
	}
	method := rest[i+1:]

	params, err := parseParams(r)
	if err != nil {
		writeError(w, http.StatusBadRequest, "Bad Request: "+err.Error())
		return
	}

	key := strings.ToLower(method)
	s.mu.Lock()
	s.requests = append(s.requests, Request{Method: method, Params: cloneValues(params)})
	var fail *failure
	if q := s.failures[key]; len(q) > 0 {
		fail = &q[0]
		s.failures[key] = q[1:]
	}
	s.mu.Unlock()

	if fail != nil {
		writeFailure(w, fail.code, fail.description, fail.params)
		return
	}
	if key == "getupdates" {
		s.getUpdates(w, r, params)
		return
	}
	result, apiErr := s.call(key, &call{method: method, params: params, r: r})
	if apiErr != nil {
		writeFailure(w, apiErr.code, apiErr.description, apiErr.params)
		return
	}
	writeResult(w, result)
}

func (s *Server) getUpdates(w http.ResponseWriter, r *http.Request, params url.Values) {
	offset, _ := strconv.Atoi(params.Get("offset"))
	limit, _ := strconv.Atoi(params.Get("limit"))
	if limit <= 0 || limit > maxLimit {
		limit = maxLimit
	}
	timeout, _ := strconv.Atoi(params.Get("timeout"))
	var deadline <-chan time.Time
	if timeout > 0 {
		t := time.NewTimer(time.Duration(timeout) * time.Second)
		defer t.Stop()
		deadline = t.C
	}

	s.mu.Lock()
	if s.hook.url != "" {
		s.mu.Unlock()
		writeError(w, http.StatusConflict, "Conflict: can't use getUpdates method while webhook is active; use deleteWebhook to delete the webhook first")
		return
	}
	// Like Telegram, a newer getUpdates call ends a waiting one.
	s.polls++
	poll := s.polls
	s.notifyLocked()
	s.mu.Unlock()

	for {
		s.mu.Lock()
		if s.polls != poll {
			s.mu.Unlock()
			writeError(w, http.StatusConflict, "Conflict: terminated by other getUpdates request; make sure that only one bot instance is running")
			return
		}
		s.confirmLocked(offset)
		n := min(limit, len(s.pending))
		batch := make([]json.RawMessage, n)
		for i, p := range s.pending[:n] {
			batch[i] = p.raw
		}
		closed, stopped := s.closed, s.stopped
		ch := s.changed
		s.mu.Unlock()

		if stopped {
			writeResult(w, []tgbotapi.Update{})
			return
		}
		if len(batch) > 0 || deadline == nil || closed {
			writeUpdates(w, batch)
			return
		}
		select {
		case <-ch:
		case <-deadline:
			writeResult(w, []tgbotapi.Update{})
			return
		case <-r.Context().Done():
			return
		}
	}
}

// confirmLocked drops updates confirmed by offset, as Telegram does: a
// positive offset forgets every update with a smaller id, a negative offset
// keeps only the last -offset updates. s.mu must be held.
func (s *Server) confirmLocked(offset int) {
	switch {
	case offset > s.confirmed:
		// Wake WaitAcknowledged.
		s.confirmed = offset
		s.notifyLocked()
		fallthrough
	case offset > 0:
		i := sort.Search(len(s.pending), func(i int) bool { return s.pending[i].id >= offset })
		s.pending = s.pending[i:]
	case offset < 0 && -offset < len(s.pending):
		s.pending = s.pending[len(s.pending)+offset:]
	}
}

// chatLocked returns the chat seen in scripted updates, or a guess based on
// Telegram's convention that user ids are positive and group ids negative.
// s.mu must be held.
func (s *Server) chatLocked(id int64) *tgbotapi.Chat {
	if c, ok := s.chats[id]; ok {
		return &c
	}
	c := &tgbotapi.Chat{ID: id, Type: "private"}
	if id < 0 {
		c.Type = "group"
	}
	return c
}

// updateChat returns the chat of u, if any. tgbotapi's Update.FromChat is
// not used because it panics on callback queries without a message.
func updateChat(u *tgbotapi.Update) *tgbotapi.Chat {
	switch {
	case u.Message != nil:
		return u.Message.Chat
	case u.EditedMessage != nil:
		return u.EditedMessage.Chat
	case u.ChannelPost != nil:
		return u.ChannelPost.Chat
	case u.EditedChannelPost != nil:
		return u.EditedChannelPost.Chat
	case u.CallbackQuery != nil && u.CallbackQuery.Message != nil:
		return u.CallbackQuery.Message.Chat
	}
	return nil
}

// parseParams reads the call's parameters from the query string and the
// body, which tgbotapi sends url-encoded or, for uploads, as multipart.
func parseParams(r *http.Request) (url.Values, error) {
	ct, _, _ := mime.ParseMediaType(r.Header.Get("Content-Type"))
	if ct == "multipart/form-data" {
		if err := r.ParseMultipartForm(32 << 20); err != nil {
			return nil, err
		}
	} else if err := r.ParseForm(); err != nil {
		return nil, err
	}
	return r.Form, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

func writeResult(w http.ResponseWriter, result any) {
	writeJSON(w, http.StatusOK, struct {
		Ok     bool `json:"ok"`
		Result any  `json:"result"`
	}{true, result})
}

// writeUpdates answers getUpdates with the updates' JSON byte for byte:
// encoding/json would compact each of them.
func writeUpdates(w http.ResponseWriter, raws []json.RawMessage) {
	b := []byte(`{"ok":true,"result":[`)
	for i, raw := range raws {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, raw...)
	}
	b = append(b, "]}\n"...)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(b)
}

// writeError answers like Telegram: ok:false with the code both as HTTP
// status (when it is a valid error status) and as error_code.
func writeError(w http.ResponseWriter, code int, description string) {
	writeFailure(w, code, description, tgbotapi.ResponseParameters{})
}

// writeFailure is writeError with "parameters" (retry_after,
// migrate_to_chat_id) when any is set.
func writeFailure(w http.ResponseWriter, code int, description string, params tgbotapi.ResponseParameters) {
	status := code
	if status < 400 || status > 599 {
		status = http.StatusBadRequest
	}
	var p *tgbotapi.ResponseParameters
	if params != (tgbotapi.ResponseParameters{}) {
		p = &params
	}
	writeJSON(w, status, struct {
		Ok          bool                         `json:"ok"`
		ErrorCode   int                          `json:"error_code"`
		Description string                       `json:"description"`
		Parameters  *tgbotapi.ResponseParameters `json:"parameters,omitempty"`
	}{false, code, description, p})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
