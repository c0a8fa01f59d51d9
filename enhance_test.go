package session

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

// enhCtxKey carries a marker that TestEnhanceContextPassesThrough looks
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

func mustEnhance[T any](t testing.TB, store StorageAdapter[[]byte], opts EnhanceOptions) StorageAdapter[T] {
	t.Helper()
	s, err := Enhance[T](store, opts)
	require.NoError(t, err)
	return s
}

func TestEnhanceEnvelopeRoundTrip(t *testing.T) {
	const key = "chat-1"
	tests := []struct {
		name string
		opts func(clock *testClock) EnhanceOptions
		want string
	}{
		{
			name: "TTL only",
			opts: func(c *testClock) EnhanceOptions { return EnhanceOptions{TTL: time.Minute, Clock: c.Now} },
			want: `{"__d":{"count":3},"e":1700000060000}`,
		},
		{
			name: "migrations only",
			opts: func(*testClock) EnhanceOptions {
				return EnhanceOptions{Migrations: map[float64]Migration{1: nil, 2: nil}}
			},
			want: `{"__d":{"count":3},"v":2}`,
		},
		{
			name: "both",
			opts: func(c *testClock) EnhanceOptions {
				return EnhanceOptions{TTL: time.Minute, Clock: c.Now, Migrations: map[float64]Migration{10.1: nil}}
			},
			want: `{"__d":{"count":3},"v":10.1,"e":1700000060000}`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			opts := tt.opts(newTestClock())
			for v := range opts.Migrations {
				opts.Migrations[v] = Migrate(func(c enhCounter) (enhCounter, error) { return c, nil })
			}
			store := newRecorder[[]byte]()
			s := mustEnhance[enhCounter](t, store, opts)

			require.NoError(t, s.Write(context.Background(), key, enhCounter{Count: 3}))
			raw, ok := store.get(key)
			require.True(t, ok)
			assert.Equal(t, tt.want, string(raw))

			got, found, err := s.Read(context.Background(), key)
			require.NoError(t, err)
			assert.True(t, found)
			assert.Equal(t, enhCounter{Count: 3}, got)

			require.NoError(t, s.Delete(context.Background(), key))
			_, found, err = s.Read(context.Background(), key)
			require.NoError(t, err)
			assert.False(t, found)
		})
	}
}

// TestEnhanceGoldenGrammY reads bytes exactly as grammY's enhanceStorage
// writes them through a JSON adapter. grammY itself emits "v" first; key
// order does not matter to either side.
func TestEnhanceGoldenGrammY(t *testing.T) {
	tests := []struct {
		name, raw string
		want      enhCounter
		found     bool
	}{
		{"ours", `{"__d":{"count":3},"v":2,"e":1700000000001}`, enhCounter{3}, true},
		{"grammY order", `{"v":2,"__d":{"count":3},"e":1700000000001}`, enhCounter{3}, true},
		{"no expiry", `{"v":2,"__d":{"count":4}}`, enhCounter{4}, true},
		{"no version: migrations run", `{"__d":{"count":4},"e":1700000000001}`, enhCounter{5}, true},
		{"legacy bare data: migrations run", `{"count":7}`, enhCounter{8}, true},
		{"whitespace", " \n{ \"__d\" : {\"count\":3} , \"v\" : 2 }\n", enhCounter{3}, true},
		{"extra envelope fields ignored", `{"__d":{"count":3},"v":2,"x":true}`, enhCounter{3}, true},
		{"escaped key", `{"\u005f_d":{"count":3},"\u0076":2}`, enhCounter{3}, true},
		{"tricky strings", `{"x":"}\"{,\\","__d":{"count":3,"s":"\"__d\":"},"v":2,"y":[{"e":"x"}]}`, enhCounter{3}, true},
		{"duplicate keys: last wins", `{"__d":{"count":9},"v":"x","v":2,"__d":{"count":3}}`, enhCounter{3}, true},
		{"__d nested, not top level: bare data", `{"x":{"__d":1},"count":6}`, enhCounter{7}, true},
		{"expired", `{"v":2,"__d":{"count":3},"e":1699999999999}`, enhCounter{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newRecorder[[]byte]()
			store.put("k", []byte(tt.raw))
			clock := newTestClock()
			s := mustEnhance[enhCounter](t, store, EnhanceOptions{
				TTL:   time.Minute,
				Clock: clock.Now,
				Migrations: map[float64]Migration{
					1: Migrate(func(c enhCounter) (enhCounter, error) { c.Count++; return c, nil }),
					2: Migrate(func(c enhCounter) (enhCounter, error) { return c, nil }),
				},
			})
			got, found, err := s.Read(context.Background(), "k")
			require.NoError(t, err)
			assert.Equal(t, tt.found, found)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestEnhanceTTL(t *testing.T) {
	ctx := context.Background()
	const key = "k"

	t.Run("expired read deletes and reports not found", func(t *testing.T) {
		store, clock := newRecorder[[]byte](), newTestClock()
		s := mustEnhance[enhCounter](t, store, EnhanceOptions{TTL: time.Minute, Clock: clock.Now})
		require.NoError(t, s.Write(ctx, key, enhCounter{1}))

		clock.Advance(time.Minute - time.Millisecond)
		got, found, err := s.Read(ctx, key)
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, enhCounter{1}, got)

		clock.Advance(time.Millisecond) // e == now: expired, the boundary of Memory
		got, found, err = s.Read(ctx, key)
		require.NoError(t, err)
		assert.False(t, found)
		assert.Zero(t, got)
		_, stored := store.get(key)
		assert.False(t, stored, "expired data is deleted from the underlying store")
		assert.Equal(t, []string{"write k", "read k", "read k", "delete k"}, store.ops())
	})

	t.Run("rewrite extends expiry", func(t *testing.T) {
		store, clock := newRecorder[[]byte](), newTestClock()
		s := mustEnhance[enhCounter](t, store, EnhanceOptions{TTL: time.Minute, Clock: clock.Now})
		require.NoError(t, s.Write(ctx, key, enhCounter{1}))
		clock.Advance(50 * time.Second)
		require.NoError(t, s.Write(ctx, key, enhCounter{2}))
		clock.Advance(50 * time.Second) // past the first expiry, before the second

		got, found, err := s.Read(ctx, key)
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, enhCounter{2}, got)
		raw, _ := store.get(key)
		assert.Equal(t, `{"__d":{"count":2},"e":1700000110000}`, string(raw))
	})

	t.Run("delete error on expiry is returned", func(t *testing.T) {
		store, clock := newRecorder[[]byte](), newTestClock()
		boom := errors.New("boom")
		store.fail = func(op, _ string) error {
			if op == "delete" {
				return boom
			}
			return nil
		}
		store.put(key, []byte(`{"__d":{"count":1},"e":1}`))
		s := mustEnhance[enhCounter](t, store, EnhanceOptions{TTL: time.Minute, Clock: clock.Now})
		_, found, err := s.Read(ctx, key)
		assert.ErrorIs(t, err, boom)
		assert.Contains(t, err.Error(), `"k"`)
		assert.False(t, found)
	})

	t.Run("data without expiry does not expire", func(t *testing.T) {
		store, clock := newRecorder[[]byte](), newTestClock()
		store.put(key, []byte(`{"count":5}`))
		s := mustEnhance[enhCounter](t, store, EnhanceOptions{TTL: time.Minute, Clock: clock.Now})
		got, found, err := s.Read(ctx, key)
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, enhCounter{5}, got)
		assert.Equal(t, []string{"read k"}, store.ops(), "a read never writes")
	})

	t.Run("stored expiry ignored without TTL", func(t *testing.T) {
		store := newRecorder[[]byte]()
		store.put(key, []byte(`{"__d":{"count":1},"v":1,"e":1}`))
		s := mustEnhance[enhCounter](t, store, EnhanceOptions{
			Migrations: map[float64]Migration{1: Migrate(func(c enhCounter) (enhCounter, error) { return c, nil })},
		})
		got, found, err := s.Read(ctx, key)
		require.NoError(t, err)
		assert.True(t, found)
		assert.Equal(t, enhCounter{1}, got)
	})
}

func TestEnhanceMigrations(t *testing.T) {
	tests := []struct {
		name string
		raw  string
		want []string
	}{
		{"bare data from before enhancement", `{"steps":["old"]}`, []string{"old", "1", "2", "3"}},
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
			store := newRecorder[[]byte]()
			store.put("k", []byte(tt.raw))
			s := mustEnhance[enhTrace](t, store, EnhanceOptions{Migrations: traceMigrations(3, 1, 2)})
			got, found, err := s.Read(context.Background(), "k")
			require.NoError(t, err)
			assert.True(t, found)
			assert.Equal(t, tt.want, got.Steps)
			assert.Equal(t, []string{"read k"}, store.ops(), "migrated data is not written back on read")
			raw, _ := store.get("k")
			assert.Equal(t, tt.raw, string(raw))
		})
	}
}

func TestEnhanceMigrationFloatOrder(t *testing.T) {
	versions := []float64{1, 2, 3, 10, 10.1, 11}
	want := []string{"1", "2", "3", "10", "10.1", "11"}
	// Maps have no order; insert in many orders so any dependence on
	// iteration order would show.
	for i := range 50 {
		shuffled := append([]float64(nil), versions...)
		rand.Shuffle(len(shuffled), func(a, b int) { shuffled[a], shuffled[b] = shuffled[b], shuffled[a] })
		store := newRecorder[[]byte]()
		store.put("k", []byte(`{"steps":[]}`))
		s := mustEnhance[enhTrace](t, store, EnhanceOptions{Migrations: traceMigrations(shuffled...)})
		got, found, err := s.Read(context.Background(), "k")
		require.NoError(t, err, "round %d", i)
		require.True(t, found)
		require.Equal(t, want, got.Steps, "round %d, inserted as %v", i, shuffled)
	}

	store := newRecorder[[]byte]()
	store.put("k", []byte(`{"__d":{"steps":[]},"v":10}`))
	s := mustEnhance[enhTrace](t, store, EnhanceOptions{Migrations: traceMigrations(versions...)})
	got, _, err := s.Read(context.Background(), "k")
	require.NoError(t, err)
	assert.Equal(t, []string{"10.1", "11"}, got.Steps, "10.1 runs once, between 10 and 11")
}

func TestEnhanceMigratedDataWrittenWithNewestVersion(t *testing.T) {
	ctx := context.Background()
	store := newRecorder[[]byte]()
	store.put("k", []byte(`{"__d":{"steps":[]},"v":1}`))
	s := mustEnhance[enhTrace](t, store, EnhanceOptions{Migrations: traceMigrations(1, 2)})
	got, _, err := s.Read(ctx, "k")
	require.NoError(t, err)
	require.NoError(t, s.Write(ctx, "k", got))
	raw, _ := store.get("k")
	assert.Equal(t, `{"__d":{"steps":["2"]},"v":2}`, string(raw))

	got, _, err = s.Read(ctx, "k")
	require.NoError(t, err)
	assert.Equal(t, []string{"2"}, got.Steps, "no migration runs again")
}

func TestEnhanceNoMigrationForMissingData(t *testing.T) {
	runs := 0
	count := func(old json.RawMessage) (json.RawMessage, error) { runs++; return old, nil }
	store := newRecorder[[]byte]()
	s := mustEnhance[enhCounter](t, store, EnhanceOptions{Migrations: map[float64]Migration{1: count, 2: count}})
	got, found, err := s.Read(context.Background(), "missing")
	require.NoError(t, err)
	assert.False(t, found)
	assert.Zero(t, got)
	assert.Zero(t, runs)
}

func TestEnhanceNewerVersion(t *testing.T) {
	store := newRecorder[[]byte]()
	store.put("chat-9", []byte(`{"__d":{"steps":[]},"v":4.5}`))
	s := mustEnhance[enhTrace](t, store, EnhanceOptions{Migrations: traceMigrations(1, 2, 3)})
	_, found, err := s.Read(context.Background(), "chat-9")
	require.ErrorIs(t, err, ErrNewerVersion)
	assert.NotErrorIs(t, err, ErrCorrupt)
	assert.False(t, found)
	for _, part := range []string{`"chat-9"`, "4.5", "3"} {
		assert.Contains(t, err.Error(), part)
	}
	raw, _ := store.get("chat-9")
	assert.Equal(t, `{"__d":{"steps":[]},"v":4.5}`, string(raw), "never relabelled")
	assert.Equal(t, []string{"read chat-9"}, store.ops())
}

func TestEnhanceMigrationFails(t *testing.T) {
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
		t.Run(tt.name, func(t *testing.T) {
			migrations := traceMigrations(1, 2, 3)
			for v, m := range tt.replace {
				migrations[v] = m
			}
			store := newRecorder[[]byte]()
			store.put("k", []byte(tt.raw))
			s := mustEnhance[enhTrace](t, store, EnhanceOptions{Migrations: migrations})

			_, found, err := s.Read(context.Background(), "k")
			require.ErrorIs(t, err, ErrMigration)
			assert.NotErrorIs(t, err, ErrCorrupt)
			if tt.cause != nil {
				assert.ErrorIs(t, err, tt.cause)
			}
			for _, m := range tt.messages {
				assert.Contains(t, err.Error(), m)
			}
			assert.False(t, found)
			raw, _ := store.get("k")
			assert.Equal(t, tt.raw, string(raw), "stored bytes unchanged")
			assert.Equal(t, []string{"read k"}, store.ops(), "store not written")
		})
	}
}

func TestEnhanceCorrupt(t *testing.T) {
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
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store := newRecorder[[]byte]()
			store.put("chat-5", []byte(tt.raw))
			s := mustEnhance[enhCounter](t, store, EnhanceOptions{TTL: time.Hour, Clock: newTestClock().Now})
			var (
				got   enhCounter
				found bool
				err   error
			)
			require.NotPanics(t, func() { got, found, err = s.Read(context.Background(), "chat-5") })
			if tt.wantErr != nil {
				require.ErrorIs(t, err, tt.wantErr)
				assert.Contains(t, err.Error(), `"chat-5"`)
				assert.False(t, found)
				assert.Zero(t, got, "no half-decoded value")
				return
			}
			require.NoError(t, err)
			assert.True(t, found)
			assert.Equal(t, tt.want, got)
		})
	}

	// Envelope-level corruption stays ErrCorrupt with migrations on: no
	// migration sees it.
	for _, raw := range []string{`{`, `[`, `{"__d":1,"v":"x"}`, `{"__d":1,"e":[]}`} {
		store := newRecorder[[]byte]()
		store.put("k", []byte(raw))
		s := mustEnhance[enhCounter](t, store, EnhanceOptions{
			Migrations: map[float64]Migration{1: func(json.RawMessage) (json.RawMessage, error) {
				t.Errorf("migration ran on %q", raw)
				return nil, nil
			}},
		})
		_, _, err := s.Read(context.Background(), "k")
		assert.ErrorIs(t, err, ErrCorrupt, raw)
	}
}

func TestEnhanceOptionsRejected(t *testing.T) {
	ok := Migrate(func(c enhCounter) (enhCounter, error) { return c, nil })
	tests := []struct {
		name  string
		store StorageAdapter[[]byte]
		opts  EnhanceOptions
		msg   string
	}{
		{"nil store", nil, EnhanceOptions{TTL: time.Second}, "nil store"},
		{"nothing to do", newRecorder[[]byte](), EnhanceOptions{}, "neither"},
		{"negative TTL", newRecorder[[]byte](), EnhanceOptions{TTL: -time.Second}, "negative"},
		{"TTL below a millisecond", newRecorder[[]byte](), EnhanceOptions{TTL: time.Microsecond}, "1ms"},
		{"empty migrations", newRecorder[[]byte](), EnhanceOptions{Migrations: map[float64]Migration{}}, "empty"},
		{"empty migrations with TTL", newRecorder[[]byte](), EnhanceOptions{TTL: time.Second, Migrations: map[float64]Migration{}}, "empty"},
		{"NaN version", newRecorder[[]byte](), EnhanceOptions{Migrations: map[float64]Migration{1: ok, math.NaN(): ok}}, "NaN"},
		{"infinite version", newRecorder[[]byte](), EnhanceOptions{Migrations: map[float64]Migration{math.Inf(1): ok}}, "+Inf"},
		{"negative infinite version", newRecorder[[]byte](), EnhanceOptions{Migrations: map[float64]Migration{math.Inf(-1): ok}}, "-Inf"},
		{"nil migration", newRecorder[[]byte](), EnhanceOptions{Migrations: map[float64]Migration{1: ok, 2.5: nil}}, "2.5"},
		{"Migrate(nil)", newRecorder[[]byte](), EnhanceOptions{Migrations: map[float64]Migration{1: Migrate[int, int](nil)}}, "nil"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Enhance[enhCounter](tt.store, tt.opts)
			require.Error(t, err)
			assert.Nil(t, s)
			assert.ErrorIs(t, err, ErrConfig, "reported like Multi's mistakes")
			assert.Contains(t, err.Error(), tt.msg)
		})
	}
}

func TestEnhanceContextPassesThrough(t *testing.T) {
	marker := new(int)
	store := newRecorder[[]byte]()
	clock := newTestClock()
	s := mustEnhance[enhCounter](t, store, EnhanceOptions{TTL: time.Minute, Clock: clock.Now})
	ctx := context.WithValue(context.Background(), enhCtxKey{}, marker)

	require.NoError(t, s.Write(ctx, "k", enhCounter{1}))
	_, found, err := s.Read(ctx, "k")
	require.NoError(t, err)
	assert.True(t, found)
	clock.Advance(2 * time.Minute)
	_, found, err = s.Read(ctx, "k") // expired: the delete gets ctx too
	require.NoError(t, err)
	assert.False(t, found)
	require.NoError(t, s.Delete(ctx, "k"))
	assert.Equal(t, []string{"write k", "read k", "read k", "delete k", "delete k"}, store.ops())

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	_, _, err = s.Read(cancelled, "k")
	assert.ErrorIs(t, err, context.Canceled)
	assert.ErrorIs(t, s.Write(cancelled, "k", enhCounter{1}), context.Canceled)
	assert.ErrorIs(t, s.Delete(cancelled, "k"), context.Canceled)

	// Every call, cancelled ones included, carried the caller's context.
	ctxs := store.contexts()
	require.Len(t, ctxs, 8)
	for i, c := range ctxs {
		assert.True(t, c.Value(enhCtxKey{}) == any(marker), "call %d (%s): context not passed through", i, store.ops()[i])
		if i >= 5 {
			assert.ErrorIs(t, c.Err(), context.Canceled, "call %d (%s)", i, store.ops()[i])
		}
	}
}

func TestEnhanceStoreErrorsPassThrough(t *testing.T) {
	boom := errors.New("boom")
	store := newRecorder[[]byte]()
	store.fail = func(op, _ string) error {
		if op == "read" {
			return boom
		}
		return nil
	}
	s := mustEnhance[enhCounter](t, store, EnhanceOptions{TTL: time.Minute})
	_, found, err := s.Read(context.Background(), "k")
	assert.ErrorIs(t, err, boom)
	assert.False(t, found)
}

func TestEnhanceWriteEncodeError(t *testing.T) {
	store := newRecorder[[]byte]()
	s := mustEnhance[func()](t, store, EnhanceOptions{TTL: time.Minute})
	err := s.Write(context.Background(), "k", func() {})
	require.Error(t, err)
	assert.Contains(t, err.Error(), `"k"`)
	assert.Empty(t, store.ops())
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
}

// FuzzEnhancedRead feeds arbitrary stored bytes through Read with
// migrations and TTL on. It must never panic, every error must be one of
// the documented kinds, and whatever reads cleanly must survive a write
// and read back unchanged. The seed corpus (golden grammY envelopes and
// corrupt inputs) is in testdata/fuzz/FuzzEnhancedRead.
func FuzzEnhancedRead(f *testing.F) {
	type session struct {
		Count int      `json:"count"`
		Pets  []string `json:"pets"`
		Note  string   `json:"note"`
	}
	bump := Migrate(func(s session) (session, error) { s.Count++; return s, nil })
	opts := EnhanceOptions{
		TTL:   time.Hour,
		Clock: func() time.Time { return time.UnixMilli(1_699_999_999_000) },
		Migrations: map[float64]Migration{
			1: bump, 2: bump, 10: bump, 10.1: bump,
			11: func(old json.RawMessage) (json.RawMessage, error) { return old, nil },
		},
	}
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
		store := newRecorder[[]byte]()
		store.put("k", raw)
		s, err := Enhance[session](store, opts)
		require.NoError(t, err)
		got, found, err := s.Read(context.Background(), "k")
		if err != nil {
			if !errors.Is(err, ErrCorrupt) && !errors.Is(err, ErrNewerVersion) && !errors.Is(err, ErrMigration) {
				t.Fatalf("undocumented error for %q: %v", raw, err)
			}
			return
		}
		if !found {
			return
		}
		require.NoError(t, s.Write(context.Background(), "k", got))
		again, found, err := s.Read(context.Background(), "k")
		require.NoError(t, err)
		require.True(t, found)
		require.Equal(t, got, again)
	})
}

// ExampleEnhance upgrades sessions stored by an older release of a bot,
// which kept only pet names, to the new shape with a Pet per name.
func ExampleEnhance() {
	type oldSession struct {
		PetNames []string `json:"petNames"`
	}
	type Pet struct {
		Name     string `json:"name"`
		Birthday int64  `json:"birthday,omitempty"`
	}
	type Session struct {
		Pets []Pet `json:"pets"`
	}

	ctx := context.Background()
	store := NewMemory[[]byte]()
	// Stored by the old release, before it used migrations.
	_ = store.Write(ctx, "42", []byte(`{"petNames":["Bob","Ann"]}`))

	sessions, err := Enhance[Session](store, EnhanceOptions{
		Migrations: map[float64]Migration{
			1: Migrate(func(old oldSession) (Session, error) {
				var s Session
				for _, name := range old.PetNames {
					s.Pets = append(s.Pets, Pet{Name: name})
				}
				return s, nil
			}),
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	s, _, err := sessions.Read(ctx, "42")
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%+v\n", s.Pets)

	// The next write stores the new shape at the newest version.
	_ = sessions.Write(ctx, "42", s)
	raw, _, _ := store.Read(ctx, "42")
	fmt.Println(string(raw))
	// Output:
	// [{Name:Bob Birthday:0} {Name:Ann Birthday:0}]
	// {"__d":{"pets":[{"name":"Bob"},{"name":"Ann"}]},"v":1}
}
