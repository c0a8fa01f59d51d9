package storagetest

import (
	"context"
	"encoding/json"
	"strconv"
	"sync/atomic"
	"testing"
	"time"

	tgbotapi "github.com/go-telegram-bot-api/telegram-bot-api/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/tgsession/session"
)

// Panics configures [RunPanics].
type Panics struct {
	// NewPair returns two clients of one empty backing store, as two
	// processes would have, whose leases last Lease.
	NewPair func(t *testing.T) (a, b session.Store)
	// Lease is the lease the clients were given: short (about a second),
	// since the scenario waits half of it to see that nothing renews it.
	Lease time.Duration
	// LeaseLeft reports what is left in the backend of the lease on key
	// (the stored key, as given to Lock); held is false if there is none.
	LeaseLeft func(t *testing.T, key string) (left time.Duration, held bool)
}

// Where a panic scenario's update panics.
const (
	inInitial   = "boom: Initial"
	inUnmarshal = "boom: Unmarshal"
	inHandler   = "boom: handler"
	inMarshal   = "boom: Marshal"
)

// RunPanics lets one update of a chat panic while the store's lease on the
// chat is held (in Initial, in the codec's Unmarshal, in the handler, in
// the codec's Marshal at the commit) and checks, for each, that the lease
// is gone from the backend at once, that nothing renews it, and that
// another client and the same one both handle the chat again right away.
// Without that, a panicking update blocks its chat in every process for as
// long as the panicking one lives.
func RunPanics(t *testing.T, cfg Panics) {
	for _, where := range []string{inInitial, inUnmarshal, inHandler, inMarshal} {
		t.Run(where[len("boom: "):], func(t *testing.T) { runPanic(t, cfg, where) })
	}
}

// panickyCodec is JSON that panics in Unmarshal or Marshal while told to.
type panickyCodec struct{ unmarshal, marshal atomic.Bool }

func (c *panickyCodec) Marshal(v any) ([]byte, error) {
	if c.marshal.Load() {
		panic(inMarshal)
	}
	return json.Marshal(v)
}

func (c *panickyCodec) Unmarshal(data []byte, v any) error {
	if c.unmarshal.Load() {
		panic(inUnmarshal)
	}
	return json.Unmarshal(data, v)
}

func runPanic(t *testing.T, cfg Panics, where string) {
	const chat = 4242
	key := strconv.Itoa(chat)
	// quickly bounds the updates that must get the chat at once: far
	// below what a leaked lease would still have left after the wait
	// below (Lease/2), it only detects a failure.
	quickly := cfg.Lease / 3
	// A long-lived context, as a bot's is: if the lease leaked, nothing
	// would end its renewal before the test does.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	update := func(id int) tgbotapi.Update {
		return tgbotapi.Update{UpdateID: id, Message: &tgbotapi.Message{
			Chat: &tgbotapi.Chat{ID: chat}, From: &tgbotapi.User{ID: chat}}}
	}

	a, b := cfg.NewPair(t)
	seeded := 0
	if where == inUnmarshal { // Unmarshal runs only on a stored session
		seeded = 5
		require.NoError(t, a.Write(ctx, key, []byte(`{"N":5}`)))
	}
	codec := &panickyCodec{}
	var armed atomic.Bool // the next update panics at where
	sa, err := session.New(session.Options[Counter]{
		Storage: a,
		Codec:   codec,
		Initial: func() Counter {
			if armed.Load() && where == inInitial {
				panic(inInitial)
			}
			return Counter{}
		},
	})
	require.NoError(t, err)
	h := sa.Middleware(func(c *session.Context[Counter]) error {
		v, err := c.Session()
		if err != nil {
			return err
		}
		v.N++
		switch {
		case armed.Load() && where == inHandler:
			panic(inHandler)
		case armed.Load() && where == inMarshal:
			// Only now: the middleware also encodes a new session when
			// loading it, and this scenario is about the commit.
			codec.marshal.Store(true)
		}
		return nil
	})

	armed.Store(true)
	codec.unmarshal.Store(where == inUnmarshal)
	assert.PanicsWithValue(t, where, func() { _ = h(session.NewContext[Counter](ctx, nil, update(1))) })
	armed.Store(false)
	codec.unmarshal.Store(false)
	codec.marshal.Store(false)

	// The lease is gone the moment the update is over, and nothing brings
	// it back: wait for longer than a renewal period.
	left, held := cfg.LeaseLeft(t, key)
	assert.False(t, held, "a lease right after the panic, with %v left", left)
	_, found, err := a.Read(ctx, key)
	require.NoError(t, err)
	assert.Equal(t, where == inUnmarshal, found, "the update that panicked wrote nothing")
	time.Sleep(cfg.Lease / 2)
	left, held = cfg.LeaseLeft(t, key)
	assert.False(t, held, "a lease %v after the panic, with %v left", cfg.Lease/2, left)

	// Another process handles the chat at once, and so does the one that
	// panicked: its own lock on the chat is free too.
	sb, err := session.New(session.Options[Counter]{Storage: b})
	require.NoError(t, err)
	hb := sb.Middleware(func(c *session.Context[Counter]) error {
		v, err := c.Session()
		if err == nil {
			v.N++
		}
		return err
	})
	handleQuickly := func(h session.Handler[Counter], id int) error {
		quick, cancel := context.WithTimeout(ctx, quickly)
		defer cancel()
		return h(session.NewContext[Counter](quick, nil, update(id)))
	}
	require.NoError(t, handleQuickly(hb, 2), "another process handles the chat within %v", quickly)
	require.NoError(t, handleQuickly(h, 3), "the panicking process handles the chat again within %v", quickly)

	raw, found, err := b.Read(ctx, key)
	require.NoError(t, err)
	require.True(t, found)
	var v Counter
	require.NoError(t, json.Unmarshal(raw, &v), "%s", raw)
	assert.Equal(t, Counter{N: seeded + 2}, v, "both updates after the panic counted, the one that panicked not")
}
