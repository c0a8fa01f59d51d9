package redisstore_test

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
	"github.com/tgsession/session/redisstore"
)

// A panic anywhere in an update (loading its session, in the handler,
// writing the session back) must give back the chat's lease in Redis at
// once and stop renewing it: otherwise the chat is stuck, in every
// process, for as long as the panicking process lives.

// panicLease is the lease of these scenarios: it is renewed every
// panicLease/3. quickly bounds the updates that must get the chat at
// once: far below what a leaked lease would still have left after the
// wait of the scenario (panicLease/2), it only detects a failure.
const (
	panicLease = time.Second
	quickly    = panicLease / 3
)

// counter is the session of the panic scenarios.
type counter struct{ N int }

// panickyCodec is JSON that panics in Unmarshal or Marshal while told to.
type panickyCodec struct {
	unmarshal, marshal atomic.Bool
}

func (c *panickyCodec) Marshal(v any) ([]byte, error) {
	if c.marshal.Load() {
		panic("boom: Marshal")
	}
	return json.Marshal(v)
}

func (c *panickyCodec) Unmarshal(data []byte, v any) error {
	if c.unmarshal.Load() {
		panic("boom: Unmarshal")
	}
	return json.Unmarshal(data, v)
}

// Where a scenario's update panics.
const (
	inInitial   = "boom: Initial"
	inUnmarshal = "boom: Unmarshal"
	inHandler   = "boom: handler"
	inMarshal   = "boom: Marshal"
)

// chatUpdate is a message of a private chat: the chat and its user share
// their ID.
func chatUpdate(id int, chat int64) tgbotapi.Update {
	return tgbotapi.Update{UpdateID: id, Message: &tgbotapi.Message{
		Chat: &tgbotapi.Chat{ID: chat}, From: &tgbotapi.User{ID: chat}}}
}

// runPanicScenario lets one update of a chat panic at where, with the
// store's lease on the chat held, and then checks that the lease is gone
// from Redis at once, that nothing renews it, and that another process
// and this one can both handle the chat again right away.
func runPanicScenario(t *testing.T, where string) {
	const chat = 4242
	key := strconv.Itoa(chat)
	c := newClient(t)
	prefix := uniquePrefix(t)
	opts := redisstore.Options{Prefix: prefix, LockLease: panicLease}
	lockKey, dataKey := prefix+"{"+key+"}:lock", prefix+"{"+key+"}"

	// A long-lived context, as a bot's is: if the lease leaked, nothing
	// would end its renewal before the test does. (The timeout only
	// keeps a broken test from hanging.)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	a := newStore(t, c, opts)
	seeded, wantStored := 0, int64(0)
	if where == inUnmarshal { // Unmarshal runs only on a stored session
		seeded, wantStored = 5, 1
		require.NoError(t, a.Write(ctx, key, []byte(`{"N":5}`)))
	}
	codec := &panickyCodec{}
	var armed atomic.Bool // the next update panics at where
	sa, err := session.New(session.Options[counter]{
		Storage: a,
		Codec:   codec,
		Initial: func() counter {
			if armed.Load() && where == inInitial {
				panic(inInitial)
			}
			return counter{}
		},
	})
	require.NoError(t, err)
	h := sa.Middleware(func(c *session.Context[counter]) error {
		v, err := c.Session()
		if err != nil {
			return err
		}
		v.N++
		switch {
		case armed.Load() && where == inHandler:
			panic(inHandler)
		case armed.Load() && where == inMarshal:
			// Only now: the middleware may also encode a new session when
			// loading it, and this scenario is about the write.
			codec.marshal.Store(true)
		}
		return nil
	})

	armed.Store(true)
	codec.unmarshal.Store(where == inUnmarshal)
	assert.PanicsWithValue(t, where, func() {
		_ = h(session.NewContext[counter](ctx, nil, chatUpdate(1, chat)))
	})
	armed.Store(false)
	codec.unmarshal.Store(false)
	codec.marshal.Store(false)

	// (a) The lease is gone the moment the update is over.
	pttl, err := c.PTTL(ctx, lockKey).Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-2), pttl, "the lock key right after the panic (-2: none; else its remaining lease)")
	// Nothing was written by the update that panicked.
	stored, err := c.Exists(ctx, dataKey).Result()
	require.NoError(t, err)
	assert.Equal(t, wantStored, stored, "sessions stored after the panic")

	// (b) Nothing brings it back: wait for longer than a renewal period.
	time.Sleep(panicLease / 2)
	pttl, err = c.PTTL(ctx, lockKey).Result()
	require.NoError(t, err)
	assert.Equal(t, time.Duration(-2), pttl, "the lock key %v after the panic", panicLease/2)

	// (c) Another process handles the chat at once.
	b := newStore(t, newClient(t), opts)
	sb, err := session.New(session.Options[counter]{Storage: b})
	require.NoError(t, err)
	hb := sb.Middleware(increment)
	handleQuickly := func(h session.Handler[counter], id int) error {
		quick, cancel := context.WithTimeout(ctx, quickly)
		defer cancel()
		return h(session.NewContext[counter](quick, nil, chatUpdate(id, chat)))
	}
	require.NoError(t, handleQuickly(hb, 2), "another process handles the chat within %v", quickly)
	// (d) And so does the process that panicked: its own lock on the
	// chat is free too.
	require.NoError(t, handleQuickly(h, 3), "the panicking process handles the chat again within %v", quickly)

	raw, found, err := b.Read(ctx, key)
	require.NoError(t, err)
	require.True(t, found)
	var v counter
	require.NoError(t, json.Unmarshal(raw, &v), "%s", raw)
	assert.Equal(t, counter{N: seeded + 2}, v, "both updates after the panic counted, the one that panicked not")
}

// increment is a handler that counts the updates of its chat.
func increment(c *session.Context[counter]) error {
	v, err := c.Session()
	if err != nil {
		return err
	}
	v.N++
	return nil
}

// TestScenarioPanicWhileLoadingReleasesTheLease: Initial panics while the
// middleware loads a new session, after the lease was taken.
func TestScenarioPanicWhileLoadingReleasesTheLease(t *testing.T) {
	runPanicScenario(t, inInitial)
}

// TestScenarioPanicWhileDecodingReleasesTheLease: the codec's Unmarshal
// panics on the stored session while the middleware loads it.
func TestScenarioPanicWhileDecodingReleasesTheLease(t *testing.T) {
	runPanicScenario(t, inUnmarshal)
}

// TestScenarioPanicInTheHandlerReleasesTheLease: the handler panics after
// changing its session.
func TestScenarioPanicInTheHandlerReleasesTheLease(t *testing.T) {
	runPanicScenario(t, inHandler)
}

// TestScenarioPanicWhileWritingReleasesTheLease: the codec's Marshal
// panics when the middleware encodes the changed session to write it.
func TestScenarioPanicWhileWritingReleasesTheLease(t *testing.T) {
	runPanicScenario(t, inMarshal)
}
