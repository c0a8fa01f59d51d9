package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"

	"github.com/tgsession/session"
)

// PollingOptions configures [NewPolling].
type PollingOptions struct {
	// Timeout is the long-polling timeout in seconds. 0 means 30;
	// negative is an error.
	Timeout int
	// Limit is the most updates per getUpdates call, 1 to 100. 0 means
	// 100; anything outside 0 to 100 is an error.
	Limit int
	// AllowedUpdates restricts the update kinds Telegram sends, as
	// getUpdates' allowed_updates (tgbotapi sends nil as null).
	AllowedUpdates []string
}

// Polling is the default [Source]: it fetches updates with getUpdates and
// confirms an update to Telegram only after it was handled (its handler
// returned or panicked): an update reported with ErrStopped at the drain
// deadline is not confirmed, and Telegram sends it again. It calls
// getUpdates itself (bot.MakeRequest, with the parameters of tgbotapi's
// GetUpdates), so that each handler's session.Context.Raw is its update's
// JSON as Telegram sent it, with what tgbotapi v5.5.1 drops; an update of
// a kind tgbotapi does not know is handled too, with only UpdateID set.
//
// Telegram's offset both confirms every update below it and positions the
// next answer, so Polling always asks from its oldest unfinished update
// and skips the ones it already took. Two consequences, both deliberate:
// at most Limit updates past the oldest unfinished one are taken at a
// time, so a handler that runs for long holds back the intake (hand long
// work to a goroutine of your own); and while handlers run, Polling asks
// without waiting (no long poll), paced to a few calls a second, because
// Telegram answers at once while unconfirmed updates exist.
//
// On a graceful stop, Close confirms the offset past the handled updates
// below the oldest unhandled one, with one last short getUpdates. The
// updates from there on come again at the next start: a Polling reused
// by the next Run (pass the same one as Options.Source) remembers which
// of them it handled and skips them, so none is handled twice; a new
// Polling, or a new process, handles them again (at least once). Updates
// taken but not handled when the process dies are sent again too.
type Polling struct {
	bot  *tgbotapi.BotAPI
	opts PollingOptions

	mu sync.Mutex
	// open holds the ids of taken, unfinished updates, ascending (they are
	// taken in id order); it is bounded by the runner's bounds and Limit.
	open []int
	// next is the id after the last update taken: the offset to confirm
	// once nothing is open.
	next int
	// handled holds the ids handled but maybe not yet confirmed: those
	// from the last offset Telegram accepted on. They are skipped when
	// they come again, in this Run or the next one on this Polling. It
	// holds at most about Limit ids past the oldest unhandled update.
	handled map[int]struct{}
	// advanced is closed and replaced when the oldest open update finishes.
	advanced chan struct{}
	// calls counts getUpdates calls still on the wire; callEnded is
	// closed and replaced when one ends.
	calls     int
	callEnded chan struct{}
}

// NewPolling returns a polling source for bot. It panics with an error
// wrapping [session.ErrConfig] if bot is nil, opts.Timeout is negative,
// or opts.Limit is outside 0 to 100.
func NewPolling(bot *tgbotapi.BotAPI, opts PollingOptions) *Polling {
	var errs []error
	bad := func(format string, args ...any) {
		errs = append(errs, fmt.Errorf("%w: runner: NewPolling: "+format, append([]any{session.ErrConfig}, args...)...))
	}
	if bot == nil {
		bad("nil bot")
	}
	if opts.Timeout < 0 {
		bad("PollingOptions.Timeout %d is negative (0 means 30 seconds)", opts.Timeout)
	}
	if opts.Limit < 0 || opts.Limit > 100 {
		bad("PollingOptions.Limit %d is outside 1 to 100 (0 means 100)", opts.Limit)
	}
	if err := errors.Join(errs...); err != nil {
		panic(err)
	}
	if opts.Timeout == 0 {
		opts.Timeout = 30
	}
	if opts.Limit == 0 {
		opts.Limit = 100
	}
	return &Polling{bot: bot, opts: opts, handled: make(map[int]struct{}), advanced: make(chan struct{}), callEnded: make(chan struct{})}
}

// check reports a Polling not made by NewPolling (a &Polling{} literal),
// which has no bot to poll and no channels to wake up on. NewPolling
// always sets bot, which never changes after, so bot alone tells.
func (p *Polling) check() error {
	if p.bot == nil {
		return fmt.Errorf("%w: runner: Polling not made by NewPolling", session.ErrConfig)
	}
	return nil
}

// Pacing of getUpdates while updates are open, and the backoff after
// failures (doubling up to the maximum).
const (
	busyPollInterval = 200 * time.Millisecond
	minBackoff       = time.Second
	maxBackoff       = 30 * time.Second
)

// Receive implements [Source]. A Polling serves one Run at a time; it may
// serve several in turn.
func (p *Polling) Receive(ctx context.Context, feed *Feed) error {
	if err := p.check(); err != nil {
		return err
	}
	// Start from what Telegram still holds: updates a previous Run left
	// behind were not confirmed, so they come again and must be taken.
	p.mu.Lock()
	p.open, p.next = nil, 0
	p.mu.Unlock()

	backoff := minBackoff
	for ctx.Err() == nil {
		offset, busy := p.offset()
		timeout := p.opts.Timeout
		if busy {
			timeout = 0 // Telegram would answer at once with the open updates anyway
		}
		start := time.Now()
		ups, err := p.get(ctx, tgbotapi.UpdateConfig{Offset: offset, Limit: p.opts.Limit, Timeout: timeout, AllowedUpdates: p.opts.AllowedUpdates})
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			// Telegram's retry_after says how long to wait; otherwise
			// back off, doubling up to maxBackoff.
			wait, told := backoff, false
			var apiErr *tgbotapi.Error
			if errors.As(err, &apiErr) {
				switch {
				case apiErr.Code == http.StatusUnauthorized || apiErr.Code == http.StatusNotFound:
					return fmt.Errorf("runner: getUpdates: %w", err) // bad token: retrying cannot help
				case apiErr.RetryAfter > 0:
					wait, told = time.Duration(apiErr.RetryAfter)*time.Second, true
				}
			}
			feed.Error(ctx, fmt.Errorf("runner: getUpdates (retrying in %v): %w", wait, err))
			if !sleep(ctx, wait) {
				return nil
			}
			if !told {
				backoff = min(2*backoff, maxBackoff)
			}
			continue
		}
		backoff = minBackoff
		p.confirmed(offset)

		taken := 0
		for i := range ups {
			u := &ups[i].u
			if !p.take(u.UpdateID) {
				continue // taken before, still open
			}
			id := u.UpdateID
			if err := feed.Put(ctx, u, ups[i].raw, func(handled bool) { p.finish(id, handled) }); err != nil {
				p.untake(id)
				return nil // stopped: the rest stays with Telegram
			}
			taken++
		}
		// Updates skipped as handled moved the offset on: ask again at
		// once, past them.
		moved := false
		if next, _ := p.offset(); next != offset {
			moved = true
		}
		if taken == 0 && !moved && (busy || len(ups) > 0 || time.Since(start) < busyPollInterval) {
			// Nothing new, and asking again at once would get the same
			// answer: only open updates, or an early empty one (the
			// open updates were confirmed elsewhere, or a proxy does not
			// long-poll). If the answer was full, nothing new is visible
			// until the oldest finishes; else look again soon.
			p.mu.Lock()
			ch := p.advanced
			p.mu.Unlock()
			var tick <-chan time.Time
			t := time.NewTimer(busyPollInterval)
			if len(ups) < p.opts.Limit {
				tick = t.C
			}
			select {
			case <-ch:
			case <-tick:
			case <-ctx.Done():
			}
			t.Stop()
		}
	}
	return nil
}

// Close implements [Source]: it confirms the offset past every finished
// update with a getUpdates call that asks for nothing to wait for. That
// call also ends a long poll still on the wire, since Telegram terminates
// the older of two getUpdates calls; a poll that reaches Telegram only
// after it would wait out its timeout, so Close repeats the short call
// until the long poll has ended or ctx ends.
func (p *Polling) Close(ctx context.Context) error {
	if err := p.check(); err != nil {
		return err
	}
	offset, _ := p.offset()
	cfg := tgbotapi.UpdateConfig{Offset: offset, Limit: 1, Timeout: 0, AllowedUpdates: p.opts.AllowedUpdates}
	var err error
	for confirmed := false; ; {
		if _, e := p.get(ctx, cfg); e == nil {
			confirmed, err = true, nil
			p.confirmed(offset)
		} else if !confirmed {
			err = fmt.Errorf("runner: confirm offset %d: %w", offset, e)
		}
		p.mu.Lock()
		calls, ended := p.calls, p.callEnded
		p.mu.Unlock()
		if calls == 0 {
			return err
		}
		t := time.NewTimer(busyPollInterval)
		select {
		case <-ended:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return err
		}
		t.Stop()
	}
}

// rawUpdate is an update from getUpdates with its JSON as Telegram sent
// it.
type rawUpdate struct {
	u   tgbotapi.Update
	raw json.RawMessage
}

// get calls getUpdates, giving up waiting when ctx ends: tgbotapi takes
// no context, so the call itself finishes in the background (Close ends
// it).
func (p *Polling) get(ctx context.Context, cfg tgbotapi.UpdateConfig) ([]rawUpdate, error) {
	type result struct {
		ups []rawUpdate
		err error
	}
	ch := make(chan result, 1)
	p.mu.Lock()
	p.calls++
	p.mu.Unlock()
	go func() {
		ups, err := getUpdates(p.bot, cfg)
		p.mu.Lock()
		p.calls--
		close(p.callEnded)
		p.callEnded = make(chan struct{})
		p.mu.Unlock()
		ch <- result{ups, err}
	}()
	select {
	case r := <-ch:
		return r.ups, r.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// getUpdates is bot.GetUpdates(cfg), but keeps each update's JSON: it
// sends the same parameters as tgbotapi's UpdateConfig, so it fails the
// same way (a *tgbotapi.Error for Telegram's refusals), and decodes the
// result element by element.
func getUpdates(bot *tgbotapi.BotAPI, cfg tgbotapi.UpdateConfig) ([]rawUpdate, error) {
	params := make(tgbotapi.Params)
	params.AddNonZero("offset", cfg.Offset)
	params.AddNonZero("limit", cfg.Limit)
	params.AddNonZero("timeout", cfg.Timeout)
	if err := params.AddInterface("allowed_updates", cfg.AllowedUpdates); err != nil {
		return nil, err
	}
	resp, err := bot.MakeRequest("getUpdates", params)
	if err != nil {
		return nil, err
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(resp.Result, &raws); err != nil {
		return nil, err
	}
	ups := make([]rawUpdate, len(raws))
	for i, raw := range raws {
		if err := json.Unmarshal(raw, &ups[i].u); err != nil {
			return nil, err
		}
		ups[i].raw = raw
	}
	return ups, nil
}

// offset returns the offset to send: the oldest open update, or the one
// after the last taken; busy tells whether updates are open.
func (p *Polling) offset() (offset int, busy bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if len(p.open) > 0 {
		return p.open[0], true
	}
	return p.next, false
}

// take records id as taken, unless it was taken before or handled
// already (by an earlier Run on this Polling).
func (p *Polling) take(id int) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if id < p.next {
		return false
	}
	if _, ok := p.handled[id]; ok {
		p.next = id + 1 // confirmed with the next offset, once nothing older is open
		return false
	}
	p.open = append(p.open, id)
	p.next = id + 1
	return true
}

// untake forgets the last id taken: the runner refused it.
func (p *Polling) untake(id int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if n := len(p.open); n > 0 && p.open[n-1] == id {
		p.open = p.open[:n-1]
	}
	p.next = id
}

// finish records the end of id: handled, or given up by the runner
// without being handled. An update not handled stays open, so the
// offset never passes it and Telegram sends it again.
func (p *Polling) finish(id int, handled bool) {
	if !handled {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	i := sort.SearchInts(p.open, id)
	if i == len(p.open) || p.open[i] != id {
		return
	}
	p.handled[id] = struct{}{}
	if i == 0 {
		p.open = p.open[1:]
		if len(p.open) == 0 {
			p.open = nil // give the backing array back
		}
		close(p.advanced)
		p.advanced = make(chan struct{})
		return
	}
	p.open = append(p.open[:i], p.open[i+1:]...)
}

// confirmed records that Telegram accepted offset: the updates below it
// never come again, so they need not be remembered.
func (p *Polling) confirmed(offset int) {
	p.mu.Lock()
	defer p.mu.Unlock()
	for id := range p.handled {
		if id < offset {
			delete(p.handled, id)
		}
	}
}

// sleep waits d or until ctx ends, and reports whether d passed.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
