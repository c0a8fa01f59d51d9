package session

// grammY's enhanced storage: the envelope {"__d":<data>,"v":<version>,
// "e":<expiry, Unix ms>} that Migrations, and a TTL on a store without
// native expiry, keep in the stored bytes, seen through the middleware.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// enhCtxKey carries a marker that TestEnvelopeContextPassesThrough looks
// for in the contexts the store sees.
type enhCtxKey struct{}

type enhCounter struct {
	Count int `json:"count"`
}

// enhTrace records, in order, the migrations that ran over it.
type enhTrace struct {
	Steps []string `json:"steps"`
}

// traceMigrations returns a migration per version that appends the
// version's label to the trace.
func traceMigrations(versions ...float64) map[float64]Migration {
	m := make(map[float64]Migration, len(versions))
	for _, v := range versions {
		label := fmt.Sprint(v)
		m[v] = Migrate(func(t enhTrace) (enhTrace, error) {
			t.Steps = append(t.Steps, label)
			return t, nil
		})
	}
	return m
}

// keyK puts every update in the session "k".
func keyK(Update) (string, bool) { return "k", true }

// missing is the Initial of the envelope tests: a value no stored session
// has, so a test tells a missing (or expired) session from a stored one.
func missing() enhCounter { return enhCounter{Count: -1} }

// load runs one strict update of the session "k" that leaves it as it
// is, and returns what the handler saw, or the load's error.
func load[S any](t *testing.T, opts Options[S]) (S, error) {
	t.Helper()
	if opts.Key == nil {
		opts.Key = keyK
	}
	var got S
	err := run(with(t, opts, func(c *Context[S]) error {
		s, err := c.Session()
		if err == nil {
			got = *s
		}
		return err
	}), msg(1, 1))
	return got, err
}

// store runs one update that sets the session "k" to v.
func store[S any](t *testing.T, opts Options[S], v S) error {
	t.Helper()
	opts.Key = keyK
	return run(with(t, opts, func(c *Context[S]) error { return c.SetSession(v) }), msg(1, 1))
}

func TestEnvelopeRoundTrip(t *testing.T) {
	tests := []struct {
		name   string
		native bool // on an Expirer: the TTL is the store's
		ttl    time.Duration
		vs     []float64
		want   string
	}{
		{name: "TTL only", ttl: time.Minute, want: `{"__d":{"count":3},"e":1700000090000}`},
		{name: "migrations only", vs: []float64{1, 2}, want: `{"__d":{"count":3},"v":2}`},
		{name: "both", ttl: time.Minute, vs: []float64{10.1}, want: `{"__d":{"count":3},"v":10.1,"e":1700000090000}`},
		{name: "migrations, native TTL", native: true, ttl: time.Minute, vs: []float64{1, 2}, want: `{"__d":{"count":3},"v":2}`},
		{name: "native TTL only: no envelope", native: true, ttl: time.Minute, want: `{"count":3}`},
		{name: "neither: no envelope", want: `{"count":3}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := newTestClock()
			var migrations map[float64]Migration
			for _, v := range tt.vs {
				if migrations == nil {
					migrations = map[float64]Migration{}
				}
				migrations[v] = Migrate(func(c enhCounter) (enhCounter, error) { return c, nil })
			}
			rec := newExpRecorder(clock.Now)
			var s Store = rec.recorder
			if tt.native {
				s = rec
			}
			opts := Options[enhCounter]{Storage: s, TTL: tt.ttl, Migrations: migrations, Clock: clock.Now, Initial: missing}

			require.NoError(t, store(t, opts, enhCounter{Count: 3}))
			raw, ok := rec.get("k")
			require.True(t, ok)
			assert.Equal(t, tt.want, raw)
			if tt.native {
				assert.Equal(t, []call{rd("k"), wrTTL("k", tt.want, tt.ttl)}, rec.take(), "the TTL goes to the store")
			}

			got, err := load(t, opts)
			require.NoError(t, err)
			assert.Equal(t, enhCounter{Count: 3}, got)

			opts.Key = keyK
			require.NoError(t, run(with(t, opts, func(c *Context[enhCounter]) error { return c.ClearSession() }), msg(1, 1)))
			_, ok = rec.get("k")
			assert.False(t, ok)
			got, err = load(t, opts)
			require.NoError(t, err)
			assert.Equal(t, missing(), got)
		})
	}
}

// TestEnvelopeGoldenGrammY reads bytes exactly as grammY's enhanceStorage
// writes them through a JSON adapter. grammY itself emits "v" first; key
// order does not matter to either side. The clock stands at Unix ms
// 1_700_000_000_000.
func TestEnvelopeGoldenGrammY(t *testing.T) {
	tests := []struct {
		name, raw string
		want      enhCounter
	}{
		{"ours", `{"__d":{"count":3},"v":2,"e":1700000000001}`, enhCounter{3}},
		{"grammY order", `{"v":2,"__d":{"count":3},"e":1700000000001}`, enhCounter{3}},
		{"no expiry", `{"v":2,"__d":{"count":4}}`, enhCounter{4}},
		{"no version: migrations run", `{"__d":{"count":4},"e":1700000000001}`, enhCounter{5}},
		{"legacy bare data: migrations run", `{"count":7}`, enhCounter{8}},
		{"whitespace", " \n{ \"__d\" : {\"count\":3} , \"v\" : 2 }\n", enhCounter{3}},
		{"extra envelope fields ignored", `{"__d":{"count":3},"v":2,"x":true}`, enhCounter{3}},
		{"escaped key", `{"\u005f_d":{"count":3},"\u0076":2}`, enhCounter{3}},
		{"tricky strings", `{"x":"}\"{,\\","__d":{"count":3,"s":"\"__d\":"},"v":2,"y":[{"e":"x"}]}`, enhCounter{3}},
		{"duplicate keys: last wins", `{"__d":{"count":9},"v":"x","v":2,"__d":{"count":3}}`, enhCounter{3}},
		{"__d nested, not top level: bare data", `{"x":{"__d":1},"count":6}`, enhCounter{7}},
		{"expired", `{"v":2,"__d":{"count":3},"e":1699999999999}`, missing()},
		{"expires now", `{"v":2,"__d":{"count":3},"e":1700000000000}`, missing()},
	}
	for _, native := range []bool{false, true} {
		for _, tt := range tests {
			t.Run(fmt.Sprintf("%s native=%v", tt.name, native), func(t *testing.T) {
				clock := newTestClock()
				rec := newExpRecorder(clock.Now)
				rec.put("k", tt.raw)
				var s Store = rec.recorder
				if native {
					s = rec
				}
				got, err := load(t, Options[enhCounter]{
					Storage: s,
					TTL:     time.Minute,
					Clock:   clock.Now,
					Initial: missing,
					Migrations: map[float64]Migration{
						1: Migrate(func(c enhCounter) (enhCounter, error) { c.Count++; return c, nil }),
						2: Migrate(func(c enhCounter) (enhCounter, error) { return c, nil }),
					},
				})
				require.NoError(t, err)
				assert.Equal(t, tt.want, got)
			})
		}
	}
}

func TestEnvelopeTTL(t *testing.T) {
	t.Run("expired data is missing, and deleted by an update that leaves it", func(t *testing.T) {
		clock := newTestClock()
		rec := newRecorder(MemoryOptions{Clock: clock.Now})
		opts := Options[enhCounter]{Storage: rec, TTL: time.Minute, Clock: clock.Now, Initial: missing}
		view := mustNew(t, Options[enhCounter]{Storage: listStore{plainStore{rec.inner}}, Key: keyK, TTL: time.Minute, Clock: clock.Now})
		require.NoError(t, store(t, opts, enhCounter{1}))
		raw, _ := rec.get("k")
		assert.Equal(t, `{"__d":{"count":1},"e":1700000090000}`, raw, "1.5×TTL from the write")

		clock.Advance(90*time.Second - time.Millisecond)
		assert.True(t, alive(t, view, "k"), "a millisecond before e")

		clock.Advance(time.Millisecond) // e == now: expired, the boundary of Memory
		assert.False(t, alive(t, view, "k"), "expired at e")
		got, err := load(t, opts)
		require.NoError(t, err)
		assert.Equal(t, missing(), got)
		_, stored := rec.get("k")
		assert.False(t, stored, "expired data is deleted from the store")
		assert.Equal(t, []string{"read k", "write k", "read k", "delete k"}, rec.ops())
	})

	t.Run("expired data is replaced by what the update writes", func(t *testing.T) {
		rec, clock := newRecorder(), newTestClock()
		rec.put("k", `{"__d":{"count":1},"e":1}`)
		opts := Options[enhCounter]{Storage: rec, TTL: time.Minute, Clock: clock.Now, Initial: missing}
		opts.Key = keyK
		require.NoError(t, run(with(t, opts, func(c *Context[enhCounter]) error {
			s, err := c.Session()
			assert.Equal(t, missing(), *s)
			s.Count = 5
			return err
		}), msg(1, 1)))
		raw, _ := rec.get("k")
		assert.Equal(t, `{"__d":{"count":5},"e":1700000090000}`, raw)
	})

	t.Run("rewrite extends expiry", func(t *testing.T) {
		rec, clock := newRecorder(), newTestClock()
		opts := Options[enhCounter]{Storage: rec, TTL: time.Minute, Clock: clock.Now}
		require.NoError(t, store(t, opts, enhCounter{1}))
		clock.Advance(50 * time.Second)
		require.NoError(t, store(t, opts, enhCounter{2}))
		raw, _ := rec.get("k")
		assert.Equal(t, `{"__d":{"count":2},"e":1700000140000}`, raw, "50s + 1.5×TTL")
		clock.Advance(50 * time.Second) // past the first expiry, before the second

		got, err := load(t, opts)
		require.NoError(t, err)
		assert.Equal(t, enhCounter{2}, got)
		raw, _ = rec.get("k")
		assert.Equal(t, `{"__d":{"count":2},"e":1700000190000}`, raw, "40s were left, less than a TTL: pushed out to 100s + 1.5×TTL")
	})

	t.Run("delete error on expiry is returned", func(t *testing.T) {
		rec, clock := newRecorder(), newTestClock()
		boom := errors.New("boom")
		rec.fail = func(op, _ string) error {
			if op == "delete" {
				return boom
			}
			return nil
		}
		rec.put("k", `{"__d":{"count":1},"e":1}`)
		_, err := load(t, Options[enhCounter]{Storage: rec, TTL: time.Minute, Clock: clock.Now})
		assert.ErrorIs(t, err, boom)
		assert.Contains(t, err.Error(), `"k"`)
	})

	t.Run("data without expiry gains one", func(t *testing.T) {
		rec, clock := newRecorder(), newTestClock()
		rec.put("k", `{"count":5}`)
		got, err := load(t, Options[enhCounter]{Storage: rec, TTL: time.Minute, Clock: clock.Now})
		require.NoError(t, err)
		assert.Equal(t, enhCounter{5}, got)
		assert.Equal(t, []call{rd("k"), wr("k", `{"__d":{"count":5},"e":1700000090000}`)}, rec.take())
	})

	t.Run("stored expiry ignored without TTL", func(t *testing.T) {
		// As in grammY: without millisecondsToLive, "e" is not looked at.
		rec := newRecorder()
		rec.put("k", `{"__d":{"count":1},"v":1,"e":1}`)
		got, err := load(t, Options[enhCounter]{
			Storage: rec, Initial: missing,
			Migrations: map[float64]Migration{1: Migrate(func(c enhCounter) (enhCounter, error) { return c, nil })},
		})
		require.NoError(t, err)
		assert.Equal(t, enhCounter{1}, got)
		for _, c := range rec.take() {
			assert.NotEqual(t, "delete", c.Op, "a session without a TTL is never expired")
		}

		rec.put("k", `{"__d":{"count":2},"e":1}`)
		got, err = load(t, Options[enhCounter]{Storage: rec, Initial: missing})
		require.NoError(t, err)
		assert.Equal(t, enhCounter{2}, got, "nor without migrations")
	})

	t.Run("an envelope no longer needed is rewritten bare", func(t *testing.T) {
		rec := newRecorder()
		rec.put("k", `{"__d":{"count":2}}`)
		got, err := load(t, Options[enhCounter]{Storage: rec})
		require.NoError(t, err)
		assert.Equal(t, enhCounter{2}, got)
		assert.Equal(t, []call{rd("k"), wr("k", `{"count":2}`)}, rec.take())
	})
}

func TestEnvelopeMigrations(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want []string
	}{
		{"bare data from before migrations", `{"steps":["old"]}`, []string{"old", "1", "2", "3"}},
		{"envelope without version", `{"__d":{"steps":["old"]}}`, []string{"old", "1", "2", "3"}},
		{"below every version", `{"__d":{"steps":[]},"v":-7}`, []string{"1", "2", "3"}},
		{"from the first", `{"__d":{"steps":[]},"v":1}`, []string{"2", "3"}},
		{"from the middle", `{"__d":{"steps":[]},"v":2}`, []string{"3"}},
		{"between two versions", `{"__d":{"steps":[]},"v":1.5}`, []string{"2", "3"}},
		{"from the newest", `{"__d":{"steps":["x"]},"v":3}`, []string{"x"}},
		{"null data", `{"__d":null}`, []string{"1", "2", "3"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			rec.put("k", tt.raw)
			got, err := load(t, Options[enhTrace]{Storage: rec, Migrations: traceMigrations(3, 1, 2)})
			require.NoError(t, err)
			assert.Equal(t, tt.want, got.Steps)
			raw, _ := rec.get("k")
			if tt.name == "from the newest" {
				assert.Equal(t, []string{"read k"}, rec.ops(), "current data is left as it is")
				assert.Equal(t, tt.raw, raw)
				return
			}
			assert.Equal(t, []string{"read k", "write k"}, rec.ops(), "migrated data is written back at the newest version")
			steps, _ := json.Marshal(tt.want)
			assert.Equal(t, fmt.Sprintf(`{"__d":{"steps":%s},"v":3}`, steps), raw)
		})
	}
}

func TestEnvelopeMigratedDataIsNotWrittenAfterAFailedHandler(t *testing.T) {
	rec := newRecorder()
	const raw = `{"__d":{"steps":[]},"v":1}`
	rec.put("k", raw)
	boom := errors.New("boom")
	err := run(with(t, Options[enhTrace]{Storage: rec, Key: keyK, Migrations: traceMigrations(1, 2)}, func(c *Context[enhTrace]) error {
		s, err := c.Session()
		require.NoError(t, err)
		assert.Equal(t, []string{"2"}, s.Steps)
		return boom
	}), msg(1, 1))
	require.ErrorIs(t, err, boom)
	got, _ := rec.get("k")
	assert.Equal(t, raw, got)
}

func TestEnvelopeMigrationFloatOrder(t *testing.T) {
	versions := []float64{1, 2, 3, 10, 10.1, 11}
	want := []string{"1", "2", "3", "10", "10.1", "11"}
	// Maps have no order; insert in many orders so any dependence on
	// iteration order would show.
	for i := range 50 {
		shuffled := append([]float64(nil), versions...)
		rand.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		rec := newRecorder()
		rec.put("k", `{"steps":[]}`)
		got, err := load(t, Options[enhTrace]{Storage: rec, Migrations: traceMigrations(shuffled...)})
		require.NoError(t, err, "round %d", i)
		require.Equal(t, want, got.Steps, "round %d, inserted as %v", i, shuffled)
	}

	rec := newRecorder()
	rec.put("k", `{"__d":{"steps":[]},"v":10}`)
	got, err := load(t, Options[enhTrace]{Storage: rec, Migrations: traceMigrations(versions...)})
	require.NoError(t, err)
	assert.Equal(t, []string{"10.1", "11"}, got.Steps, "10.1 runs once, between 10 and 11")
}

func TestEnvelopeMigratedDataWrittenWithNewestVersion(t *testing.T) {
	rec := newRecorder()
	rec.put("k", `{"__d":{"steps":[]},"v":1}`)
	opts := Options[enhTrace]{Storage: rec, Migrations: traceMigrations(1, 2)}
	got, err := load(t, opts)
	require.NoError(t, err)
	assert.Equal(t, []string{"2"}, got.Steps)
	raw, _ := rec.get("k")
	assert.Equal(t, `{"__d":{"steps":["2"]},"v":2}`, raw)
	rec.take()

	got, err = load(t, opts)
	require.NoError(t, err)
	assert.Equal(t, []string{"2"}, got.Steps, "no migration runs again")
	assert.Equal(t, []call{rd("k")}, rec.take(), "and nothing is written")
}

func TestEnvelopeNoMigrationForMissingData(t *testing.T) {
	runs := 0
	count := func(old json.RawMessage) (json.RawMessage, error) { runs++; return old, nil }
	rec := newRecorder()
	opts := Options[enhCounter]{Storage: rec, Initial: missing, Migrations: map[float64]Migration{1: count, 2: count}}
	got, err := load(t, opts)
	require.NoError(t, err)
	assert.Equal(t, missing(), got)
	assert.Zero(t, runs)
	assert.Equal(t, []call{rd("k")}, rec.take(), "an untouched new session is not written")

	require.NoError(t, store(t, opts, enhCounter{1}))
	raw, _ := rec.get("k")
	assert.Equal(t, `{"__d":{"count":1},"v":2}`, raw, "a new session is stored at the newest version")
	assert.Zero(t, runs)
}

func TestEnvelopeNewerVersion(t *testing.T) {
	rec := newRecorder()
	rec.put("chat-9", `{"__d":{"steps":[]},"v":4.5}`)
	ran := false
	err := run(with(t, Options[enhTrace]{Storage: rec, Prefix: "chat-", Migrations: traceMigrations(1, 2, 3)}, func(*Context[enhTrace]) error {
		ran = true
		return nil
	}), msg(9, 1))
	require.ErrorIs(t, err, ErrNewerVersion)
	assert.NotErrorIs(t, err, ErrCorrupt)
	assert.False(t, ran, "the handler does not run on data it cannot read")
	for _, part := range []string{`"chat-9"`, "4.5", "3"} {
		assert.Contains(t, err.Error(), part)
	}
	raw, _ := rec.get("chat-9")
	assert.Equal(t, `{"__d":{"steps":[]},"v":4.5}`, raw, "never relabelled")
	assert.Equal(t, []string{"read chat-9"}, rec.ops())
	assert.Zero(t, heldIn(rec))
}

func TestEnvelopeMigrationFails(t *testing.T) {
	boom := errors.New("boom")
	failWith := func(err error) Migration {
		return func(json.RawMessage) (json.RawMessage, error) { return nil, err }
	}
	notATrace := func(json.RawMessage) (json.RawMessage, error) { return json.RawMessage(`{"steps":7}`), nil }
	tests := []struct {
		name     string
		raw      string
		replace  map[float64]Migration // replaces migrations of traceMigrations(1, 2, 3)
		cause    error
		messages []string
	}{
		{"migration returns error", `{"__d":{"steps":[]},"v":1}`, map[float64]Migration{2: failWith(boom)}, boom,
			[]string{`"k"`, "from version 1 to 2", "boom"}},
		{"error after an earlier migration ran", `{"__d":{"steps":[]},"v":1}`, map[float64]Migration{3: failWith(boom)}, boom,
			[]string{`"k"`, "from version 2 to 3", "boom"}},
		{"Migrate cannot decode Old", `{"__d":{"steps":"nope"},"v":1}`, nil, nil,
			[]string{`"k"`, "from version 1 to 2", "enhTrace"}},
		{"unversioned data", `{"steps":{}}`, nil, nil,
			[]string{`"k"`, "from version none to 1"}},
		{"result is not a T", `{"__d":{"steps":[]},"v":2}`, map[float64]Migration{3: notATrace}, nil,
			[]string{`"k"`, "from version 2 to 3", "does not decode"}},
	}
	for _, tt := range tests {
		for mode, isLazy := range strictAndLazy {
			t.Run(tt.name+" "+mode, func(t *testing.T) {
				migrations := traceMigrations(1, 2, 3)
				for v, m := range tt.replace {
					migrations[v] = m
				}
				rec := newRecorder()
				rec.put("k", tt.raw)
				_, err := load(t, Options[enhTrace]{Storage: rec, Migrations: migrations, Lazy: isLazy})
				require.ErrorIs(t, err, ErrMigration)
				assert.NotErrorIs(t, err, ErrCorrupt)
				if tt.cause != nil {
					assert.ErrorIs(t, err, tt.cause)
				}
				for _, m := range tt.messages {
					assert.Contains(t, err.Error(), m)
				}
				raw, _ := rec.get("k")
				assert.Equal(t, tt.raw, raw, "stored bytes unchanged")
				assert.Equal(t, []string{"read k"}, rec.ops(), "store not written")
				assert.Zero(t, heldIn(rec), "the key is released")
			})
		}
	}
}

func TestEnvelopeCorrupt(t *testing.T) {
	tests := []struct {
		name, raw string
		want      enhCounter // when no error
		wantErr   error
	}{
		{"truncated", `{`, enhCounter{}, ErrCorrupt},
		{"empty", ``, enhCounter{}, ErrCorrupt},
		{"garbage", "\x00\xff", enhCounter{}, ErrCorrupt},
		{"array", `[]`, enhCounter{}, ErrCorrupt},
		{"unterminated array", `[`, enhCounter{}, ErrCorrupt},
		{"string", `"str"`, enhCounter{}, ErrCorrupt},
		{"trailing garbage", `{"__d":{}} x`, enhCounter{}, ErrCorrupt},
		{"version not a number", `{"__d":1,"v":"x"}`, enhCounter{}, ErrCorrupt},
		{"version null", `{"__d":{},"v":null}`, enhCounter{}, ErrCorrupt},
		{"version out of range", `{"__d":{},"v":1e400}`, enhCounter{}, ErrCorrupt},
		{"expiry not a number", `{"__d":{},"e":"tomorrow"}`, enhCounter{}, ErrCorrupt},
		{"expiry object", `{"__d":{},"e":{}}`, enhCounter{}, ErrCorrupt},
		{"wrong field type", `{"__d":{"count":"no"}}`, enhCounter{}, ErrCorrupt},
		{"half decoded", `{"__d":{"count":5,"count":"no"}}`, enhCounter{}, ErrCorrupt},
		{"data is a number", `{"__d":1}`, enhCounter{}, ErrCorrupt},
		{"null is valid for a struct", `null`, enhCounter{}, nil},
		{"null data is valid for a struct", `{"__d":null}`, enhCounter{}, nil},
		{"unknown fields are ignored", `{"__d":{"other":1,"count":2}}`, enhCounter{2}, nil},
		{"case differs from __d: bare data", `{"__D":1,"count":2}`, enhCounter{2}, nil},
	}
	clock := newTestClock()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rec := newRecorder()
			rec.put("chat-5", tt.raw)
			var (
				got enhCounter
				err error
			)
			ran := false
			require.NotPanics(t, func() {
				err = run(with(t, Options[enhCounter]{Storage: rec, Prefix: "chat-", TTL: time.Hour, Clock: clock.Now}, func(c *Context[enhCounter]) error {
					ran = true
					s, err := c.Session()
					if err == nil {
						got = *s
					}
					return err
				}), msg(5, 1))
			})
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Contains(t, err.Error(), `"chat-5"`)
				assert.False(t, ran, "the handler does not run on data it cannot read")
				raw, _ := rec.get("chat-5")
				assert.Equal(t, tt.raw, raw, "corrupt data is left for a human to look at")

				// The decoder leaves no half-decoded value behind.
				vc, verr := newValueCodec[enhCounter](nil, time.Hour, nil, clock.Now)
				require.NoError(t, verr)
				into := enhCounter{}
				_, derr := vc.decode("chat-5", []byte(tt.raw), &into)
				assert.ErrorIs(t, derr, tt.wantErr)
				assert.Zero(t, into, "no half-decoded value")
				return
			}
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}

	// Envelope-level corruption stays ErrCorrupt with migrations on: no
	// migration sees it.
	for _, raw := range []string{`{`, `[`, `{"__d":1,"v":"x"}`, `{"__d":1,"e":[]}`} {
		rec := newRecorder()
		rec.put("k", raw)
		_, err := load(t, Options[enhCounter]{
			Storage: rec,
			Migrations: map[float64]Migration{1: func(json.RawMessage) (json.RawMessage, error) {
				t.Errorf("migration ran on %q", raw)
				return nil, nil
			}},
		})
		assert.ErrorIs(t, err, ErrCorrupt, raw)
	}
}

func TestEnvelopeOptionsRejected(t *testing.T) {
	ok := Migrate(func(c enhCounter) (enhCounter, error) { return c, nil })
	plain := newPlainStore()
	tests := []struct {
		name string
		opts Options[enhCounter]
		msg  string
	}{
		{"negative TTL", Options[enhCounter]{TTL: -time.Second}, "negative"},
		{"TTL below a millisecond in the envelope", Options[enhCounter]{Storage: plain, TTL: time.Microsecond}, "1ms"},
		{"empty migrations", Options[enhCounter]{Migrations: map[float64]Migration{}}, "empty"},
		{"empty migrations with TTL", Options[enhCounter]{TTL: time.Second, Migrations: map[float64]Migration{}}, "empty"},
		{"NaN version", Options[enhCounter]{Migrations: map[float64]Migration{1: ok, math.NaN(): ok}}, "NaN"},
		{"infinite version", Options[enhCounter]{Migrations: map[float64]Migration{math.Inf(1): ok}}, "+Inf"},
		{"negative infinite version", Options[enhCounter]{Migrations: map[float64]Migration{math.Inf(-1): ok}}, "-Inf"},
		{"nil migration", Options[enhCounter]{Migrations: map[float64]Migration{1: ok, 2.5: nil}}, "migration 2.5 is nil"},
		{"Migrate(nil)", Options[enhCounter]{Migrations: map[float64]Migration{1: Migrate[int, int](nil)}}, "migration 1 is nil"},
		{"a codec of its own", Options[enhCounter]{Codec: gobCodec{}, Migrations: map[float64]Migration{1: ok}}, "needs the JSON codec"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(tt.opts)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.ErrorIs(t, err, ErrConfig, "reported like every configuration mistake")
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
	t.Run("a microsecond TTL is fine natively", func(t *testing.T) {
		_, err := New(Options[enhCounter]{TTL: time.Microsecond})
		assert.NoError(t, err, "Memory keeps nanoseconds")
	})
}

func TestEnvelopeContextPassesThrough(t *testing.T) {
	marker := new(int)
	rec := newRecorder()
	clock := newTestClock()
	ctx := context.WithValue(context.Background(), enhCtxKey{}, marker)
	sess := mustNew(t, Options[enhCounter]{Storage: rec, Key: keyK, TTL: time.Minute, Clock: clock.Now})
	update := func(ctx context.Context, h Handler[enhCounter]) error {
		return sess.Middleware(h)(NewContext[enhCounter](ctx, nil, msg(1, 1)))
	}
	change := func(c *Context[enhCounter]) error {
		s, err := c.Session()
		if err == nil {
			s.Count++
		}
		return err
	}
	read := func(c *Context[enhCounter]) error { _, err := c.Session(); return err }

	require.NoError(t, update(ctx, change))
	require.NoError(t, update(ctx, read))
	clock.Advance(2 * time.Minute)
	require.NoError(t, update(ctx, read)) // expired: the delete gets ctx too
	require.NoError(t, update(ctx, change))
	require.NoError(t, update(ctx, func(c *Context[enhCounter]) error { return c.ClearSession() }))
	assert.Equal(t, []string{"read k", "write k", "read k", "read k", "delete k", "read k", "write k", "read k", "delete k"}, rec.ops())

	// A copy of the Context with a context of its own makes the lazy
	// load with that context.
	type copyKey struct{}
	lazySess := mustNew(t, Options[enhCounter]{Storage: rec, Key: keyK, Lazy: true})
	require.NoError(t, lazySess.Middleware(func(c *Context[enhCounter]) error {
		c2 := *c
		c2.Context = context.WithValue(c, copyKey{}, marker)
		_, err := c2.Session()
		return err
	})(NewContext[enhCounter](ctx, nil, msg(1, 1))))

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	assert.ErrorIs(t, update(cancelled, read), context.Canceled)

	// Every call carried the update's context.
	ctxs := rec.contexts()
	require.Len(t, ctxs, 10, "%v", rec.ops())
	for i, c := range ctxs {
		assert.True(t, c.Value(enhCtxKey{}) == any(marker), "call %d (%s): context not passed through", i, rec.ops()[i])
	}
	assert.True(t, ctxs[9].Value(copyKey{}) == any(marker), "the lazy load used the copy's context")
}

func TestEnvelopeStoreErrorsPassThrough(t *testing.T) {
	boom := errors.New("boom")
	rec := newRecorder()
	rec.fail = func(op, _ string) error {
		if op == "read" {
			return boom
		}
		return nil
	}
	_, err := load(t, Options[enhCounter]{Storage: rec, TTL: time.Minute})
	assert.ErrorIs(t, err, boom)
}

func TestEncodeErrorWritesNothing(t *testing.T) {
	type holder struct{ V any }
	for name, s := range map[string]Store{"bare": newRecorder(), "envelope": newRecorder()} {
		t.Run(name, func(t *testing.T) {
			rec := s.(*recorder)
			opts := Options[holder]{Storage: rec, Key: keyK}
			if name == "envelope" {
				opts.TTL = time.Minute
			}
			err := run(with(t, opts, func(c *Context[holder]) error {
				s, err := c.Session()
				if err == nil {
					s.V = func() {} // JSON cannot encode it; the type check cannot see into an interface
				}
				return err
			}), msg(1, 1))
			require.Error(t, err)
			assert.Contains(t, err.Error(), `"k"`)
			assert.Equal(t, []string{"read k"}, rec.ops())
			assert.Zero(t, heldIn(rec))
		})
	}
}

func TestMigrate(t *testing.T) {
	boom := errors.New("boom")
	m := Migrate(func(n int) (string, error) {
		if n < 0 {
			return "", boom
		}
		return fmt.Sprint(n * 2), nil
	})
	out, err := m(json.RawMessage(`21`))
	require.NoError(t, err)
	assert.JSONEq(t, `"42"`, string(out))

	_, err = m(json.RawMessage(`-1`))
	assert.ErrorIs(t, err, boom)

	_, err = m(json.RawMessage(`"x"`))
	assert.ErrorContains(t, err, "decode int")

	assert.Nil(t, Migrate[int, int](nil))
}

// FuzzEnhancedRead feeds arbitrary stored bytes through the envelope's
// decoder with migrations and a TTL on. It must never panic, every error
// must be one of the documented kinds, and whatever reads cleanly must
// survive being stored and read back unchanged. The seed corpus (golden
// grammY envelopes and corrupt inputs) is in testdata/fuzz/FuzzEnhancedRead.
func FuzzEnhancedRead(f *testing.F) {
	type session struct {
		Count int      `json:"count"`
		Pets  []string `json:"pets"`
		Note  string   `json:"note"`
	}
	bump := Migrate(func(s session) (session, error) { s.Count++; return s, nil })
	clock := func() time.Time { return time.UnixMilli(1_699_999_999_000) }
	migrations := map[float64]Migration{
		1: bump, 2: bump, 10: bump, 10.1: bump,
		11: func(old json.RawMessage) (json.RawMessage, error) { return old, nil },
	}
	vc, err := newValueCodec[session](nil, time.Hour, migrations, clock)
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, raw []byte) {
		if trimmed := bytes.TrimLeft(raw, " \t\r\n"); json.Valid(raw) && trimmed[0] == '{' {
			// The hand-written envelope scan must agree with encoding/json.
			var ref map[string]json.RawMessage
			require.NoError(t, json.Unmarshal(raw, &ref))
			d, v, e := envelopeFields(raw)
			for name, got := range map[string][]byte{"__d": d, "v": v, "e": e} {
				want, ok := ref[name]
				require.Equal(t, ok, got != nil, "%q present in %q", name, raw)
				require.Equal(t, string(want), string(got), "%q in %q", name, raw)
			}
		}
		var got session
		d, err := vc.decode("k", raw, &got)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNewerVersion) && !errors.Is(err, ErrMigration) {
				t.Fatalf("undocumented error for %q: %v", raw, err)
			}
			require.Zero(t, got, "no half-decoded value for %q", raw)
			return
		}
		if !d.live {
			return
		}
		data, err := vc.encode(&got)
		require.NoError(t, err)
		var again session
		d, err = vc.decode("k", vc.wrap(data), &again)
		require.NoError(t, err)
		require.True(t, d.live)
		require.Equal(t, got, again)
		require.Equal(t, data, d.same, "read back unchanged: no write")
	})
}
