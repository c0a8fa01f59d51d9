package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"iter"
	"math"
	"reflect"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"
	"unsafe"
)

// EnhanceOptions configures [Enhance]. At least one of TTL or Migrations
// must be set, since an enhancement that does nothing is most likely a
// configuration mistake.
type EnhanceOptions struct {
	// TTL, when > 0, makes a session expire once it has gone unused for
	// TTL. The expiry is stored in milliseconds (as grammY does), so a TTL
	// must be at least a millisecond. A session is expired from the
	// millisecond its expiry is reached, as in [Memory].
	//
	// Used through a session middleware, a session that an update reads
	// and leaves unchanged is rewritten with a new expiry once less than
	// half its TTL is left, so a chat that keeps talking keeps its session
	// at the cost of at most one extra write per TTL/2; data stored without
	// an expiry (by grammY, or before TTL was set) gains one on first use.
	TTL time.Duration

	// Migrations maps a version to the migration that converts data
	// stored at the previous version (the next lower key; for the lowest
	// key, data stored without a version) into that version's shape.
	// Versions are compared as numbers, so 10.1 sits between 10 and 11.
	// A non-nil map must not be empty.
	Migrations map[float64]Migration

	// Clock replaces time.Now, so tests can move time without sleeping.
	Clock func() time.Time
}

// Migration converts stored JSON data of the previous version's shape to
// the next. It works on JSON rather than Go values because the old shape
// usually no longer has a Go type in the program; [Migrate] adds the
// types back when they do exist.
type Migration func(old json.RawMessage) (json.RawMessage, error)

// Migrate builds a [Migration] from a function between two Go types: the
// stored data is decoded into Old, converted by f, and encoded from New.
// Data that does not decode into Old makes the migration fail. A nil f
// gives a nil Migration, which [Enhance] rejects.
func Migrate[Old, New any](f func(Old) (New, error)) Migration {
	if f == nil {
		return nil
	}
	return func(old json.RawMessage) (json.RawMessage, error) {
		var o Old
		if err := json.Unmarshal(old, &o); err != nil {
			return nil, fmt.Errorf("decode %T: %w", o, err)
		}
		n, err := f(o)
		if err != nil {
			return nil, err
		}
		return json.Marshal(n)
	}
}

// ErrNewerVersion reports stored data whose version is newer than the
// newest migration: most likely written by a newer release of the bot.
// Reading it as the current shape would silently lose data, so it is an
// error. Errors that wrap it name the key and both versions.
var ErrNewerVersion = errors.New("session: stored version is newer than the newest migration")

// ErrMigration reports a migration that failed. Errors that wrap it name
// the key and the versions migrated from and to, and wrap the cause. The
// stored data is left as it was.
var ErrMigration = errors.New("session: migration failed")

// Enhance wraps byte-oriented storage with expiring sessions and
// versioned migrations, storing each session as a JSON envelope
//
//	{"__d":<data>,"v":<version>,"e":<expiry, Unix ms>}
//
// with "v" only when migrations are used and "e" only when TTL is. This is
// the format of grammY's enhanceStorage over a JSON adapter, so sessions
// move freely between a grammY bot and a Go bot sharing a database.
//
// Read deletes expired sessions and reports them missing. Data stored
// before enhancement was turned on (not an object with a "__d" key) counts
// as unversioned, older than every migration. Every migration newer than
// the stored version runs once, in numeric order. Read itself never
// writes: used through a session middleware, migrated data is written
// back with the newest version after the update that read it succeeds.
//
// The middleware compares the session's JSON with the stored data to
// decide whether to write. The result locks, touches and iterates through
// the base store, as [Encoded] does; iteration skips expired sessions and
// migrates the rest.
//
// Stored bytes that are not JSON, an envelope whose "v" or "e" is not a
// number, and data that does not decode into T are reported as
// [ErrCorrupt]; once migrations are involved, their failures are
// [ErrMigration], and data newer than the newest migration is
// [ErrNewerVersion].
func Enhance[T any](store StorageAdapter[[]byte], opts EnhanceOptions) (StorageAdapter[T], error) {
	switch {
	case isNil(store):
		return nil, fmt.Errorf("%w: Enhance: nil store", ErrConfig)
	case opts.TTL < 0:
		return nil, fmt.Errorf("%w: Enhance: negative TTL %v", ErrConfig, opts.TTL)
	case opts.TTL > 0 && opts.TTL < time.Millisecond:
		return nil, fmt.Errorf("%w: Enhance: TTL %v is below the stored resolution of 1ms", ErrConfig, opts.TTL)
	case opts.TTL == 0 && opts.Migrations == nil:
		return nil, fmt.Errorf("%w: Enhance: neither TTL nor Migrations given", ErrConfig)
	case opts.Migrations != nil && len(opts.Migrations) == 0:
		return nil, fmt.Errorf("%w: Enhance: empty Migrations", ErrConfig)
	}
	e := &enhanced[T]{byteBase: byteBase{store}, ttl: opts.TTL, now: opts.Clock, json: jsonCodecFor[T]()}
	if e.now == nil {
		e.now = time.Now
	}
	// Sort once here so that Read does not depend on map iteration order.
	for v := range opts.Migrations {
		e.versions = append(e.versions, v)
	}
	slices.Sort(e.versions)
	for _, v := range e.versions {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: Enhance: migration version %v is not a finite number", ErrConfig, v)
		}
		m := opts.Migrations[v]
		if m == nil {
			return nil, fmt.Errorf("%w: Enhance: migration %s is nil", ErrConfig, versionLabel(v, true))
		}
		e.migrations = append(e.migrations, m)
	}
	if n := len(e.versions); n > 0 {
		// json.Marshal formats numbers the way JavaScript does.
		latest, err := json.Marshal(e.versions[n-1])
		if err != nil {
			return nil, fmt.Errorf("%w: Enhance: %w", ErrConfig, err)
		}
		e.versionField = append([]byte(`,"v":`), latest...)
	}
	return e, nil
}

// checkType reports a session type JSON cannot encode.
func (s *enhanced[T]) checkType() error { return jsonProblem(reflect.TypeFor[T]()) }

type enhanced[T any] struct {
	byteBase
	ttl          time.Duration
	now          func() time.Time
	versions     []float64   // ascending
	migrations   []Migration // migrations[i] produces versions[i]
	versionField []byte      // `,"v":<newest version>`, or nil without migrations
	json         jsonCodec[T]
}

// envelope is stored data taken apart: the session data and, when
// present, its version and expiry.
type envelope struct {
	data                json.RawMessage
	version, expiry     float64
	versioned, expiring bool
}

func (s *enhanced[T]) Read(ctx context.Context, key string) (T, bool, error) {
	var v T
	_, found, err := s.readRaw(ctx, key, &v)
	return v, found, err
}

// readRaw reads key and decodes it into *into (left zero when not found).
// The bytes it returns for comparison are the stored data, unless the
// data must be rewritten even if the handler leaves it as it is:
// migrations ran, or the expiry is missing or less than half a TTL away.
func (s *enhanced[T]) readRaw(ctx context.Context, key string, into *T) ([]byte, bool, error) {
	var zero T
	*into = zero
	raw, found, err := s.store.Read(ctx, key)
	if err != nil || !found {
		return nil, false, err
	}
	now := s.nowMilli()
	env, ran, live, err := s.decode(key, raw, now, into)
	if err != nil {
		return nil, false, err
	}
	if !live {
		// Delete now rather than leave expired data for the next write.
		if err := s.store.Delete(ctx, key); err != nil {
			return nil, false, fmt.Errorf("session: delete expired %q: %w", key, err)
		}
		return nil, false, nil
	}
	stored := []byte(env.data)
	if ran || (s.ttl > 0 && (!env.expiring || env.expiry-float64(now) < float64(s.ttl.Milliseconds())/2)) {
		stored = nil
	}
	return stored, true, nil
}

// nowMilli is the clock in Unix ms, read only when a TTL needs it.
func (s *enhanced[T]) nowMilli() int64 {
	if s.ttl == 0 {
		return 0
	}
	return s.now().UnixMilli()
}

// decode takes stored bytes apart, checks expiry against now (Unix ms),
// migrates and decodes into *into, which holds the zero value. live is
// false for expired data, which is not decoded.
func (s *enhanced[T]) decode(key string, raw []byte, now int64, into *T) (env envelope, ran, live bool, err error) {
	if env, ok := s.fastDecode(raw, into); ok {
		if s.ttl > 0 && env.expiring && env.expiry <= float64(now) {
			var zero T
			*into = zero
			return env, false, false, nil
		}
		return env, false, true, nil
	}
	return s.decodeGeneral(key, raw, now, into)
}

// decodeGeneral is decode for any stored bytes.
func (s *enhanced[T]) decodeGeneral(key string, raw []byte, now int64, into *T) (env envelope, ran, live bool, err error) {
	env, err = unwrap(raw)
	if err != nil {
		return env, false, false, fmt.Errorf("%w: key %q: %w", ErrCorrupt, key, err)
	}
	if s.ttl > 0 && env.expiring && env.expiry <= float64(now) {
		return env, false, false, nil
	}
	data, ran, err := s.migrate(key, env)
	if err != nil {
		return env, false, false, err
	}
	if err := s.json.unmarshal(data, into); err != nil {
		var zero T // *into may be half-decoded
		*into = zero
		if ran {
			// The stored data was readable, since migrations ran: what the
			// last one produced is not a T.
			return env, false, false, fmt.Errorf("%w: key %q: data migrated from version %s to %s does not decode: %w",
				ErrMigration, key, versionLabel(env.version, env.versioned), s.latest(), err)
		}
		return env, false, false, fmt.Errorf("%w: key %q: %w", ErrCorrupt, key, err)
	}
	return env, ran, true, nil
}

// fastDecode decodes an envelope exactly as this package writes it, with
// data at the newest version, in one pass and without encoding/json: it
// skips json.Valid over the whole envelope, which costs more than the rest
// of a read. It accepts raw only if it is `{"__d":` + data, then the
// newest version field when there are migrations, then optionally
// `,"e":` + an integer written as strconv writes it, then `}`, where data
// is the canonical encoding of a T (see jsonPlan.decode). Then raw is
// valid JSON with exactly those members, and the result is what the
// general path would give. Anything else (reports false, *into zero) goes
// through the general path.
func (s *enhanced[T]) fastDecode(raw []byte, into *T) (envelope, bool) {
	const head = `{"__d":`
	if s.json.plan == nil || len(raw) < len(head)+1 || string(raw[:len(head)]) != head || raw[len(raw)-1] != '}' {
		return envelope{}, false
	}
	body := raw[len(head) : len(raw)-1]
	var env envelope
	if i := bytes.LastIndex(body, []byte(`,"e":`)); i >= 0 {
		digits := body[i+len(`,"e":`):]
		if len(digits) == 0 || len(digits) > 15 || (digits[0] == '0' && len(digits) > 1) {
			return envelope{}, false
		}
		neg, n, ok := parseDigits(digits) // digits only: no sign, at most 15
		if !ok || neg {
			return envelope{}, false
		}
		env.expiry, env.expiring = float64(n), true
		body = body[:i]
	}
	if n := len(s.versionField); n > 0 {
		if !bytes.HasSuffix(body, s.versionField) {
			return envelope{}, false
		}
		body = body[:len(body)-n]
		env.version, env.versioned = s.versions[len(s.versions)-1], true
	}
	if !s.json.plan.decode(body, unsafe.Pointer(into)) {
		var zero T
		*into = zero
		return envelope{}, false
	}
	env.data = body
	return env, true
}

// Keys yields the key of every live session, through the base store's
// [Iterator].
func (s *enhanced[T]) Keys(ctx context.Context) iter.Seq2[string, error] {
	return func(yield func(string, error) bool) {
		for e, err := range s.Entries(ctx) {
			if !yield(e.Key, err) {
				return
			}
		}
	}
}

// Values yields every live session, migrated, through the base store's
// [Iterator].
func (s *enhanced[T]) Values(ctx context.Context) iter.Seq2[T, error] {
	return values(s.Entries(ctx))
}

// Entries yields every live session with its key, migrated, through the
// base store's [Iterator]. Expired sessions are skipped, not deleted.
func (s *enhanced[T]) Entries(ctx context.Context) iter.Seq2[Entry[T], error] {
	return decodeEntries(ctx, s.store, func(key string, raw []byte) (T, bool, error) {
		var v T
		_, _, live, err := s.decode(key, raw, s.nowMilli(), &v)
		return v, live, err
	})
}

// migrate runs, in order, every migration newer than the stored version,
// and reports whether any ran.
func (s *enhanced[T]) migrate(key string, env envelope) (json.RawMessage, bool, error) {
	if len(s.versions) == 0 {
		return env.data, false, nil
	}
	first := 0 // unversioned data is older than every migration
	if env.versioned {
		if env.version > s.versions[len(s.versions)-1] {
			return nil, false, fmt.Errorf("%w: key %q has version %s, newest migration is %s",
				ErrNewerVersion, key, versionLabel(env.version, true), s.latest())
		}
		first = sort.Search(len(s.versions), func(i int) bool { return s.versions[i] > env.version })
	}
	data := env.data
	for i := first; i < len(s.versions); i++ {
		out, err := s.migrations[i](data)
		if err != nil {
			from := versionLabel(env.version, env.versioned)
			if i > first {
				from = versionLabel(s.versions[i-1], true)
			}
			return nil, false, fmt.Errorf("%w: key %q from version %s to %s: %w",
				ErrMigration, key, from, versionLabel(s.versions[i], true), err)
		}
		data = out
	}
	return data, first < len(s.versions), nil
}

func (s *enhanced[T]) Write(ctx context.Context, key string, value T) error {
	data, err := s.encode(key, &value)
	if err != nil {
		return err
	}
	return s.writeRaw(ctx, key, data)
}

func (s *enhanced[T]) encode(key string, v *T) ([]byte, error) {
	data, err := s.json.marshal(v)
	if err != nil {
		return nil, fmt.Errorf("session: encode %q: %w", key, err)
	}
	return data, nil
}

// writeRaw stores data in its envelope, built by hand rather than by
// marshalling a struct so the data is not scanned twice and the field
// order is fixed: __d, v, e.
func (s *enhanced[T]) writeRaw(ctx context.Context, key string, data []byte) error {
	buf := make([]byte, 0, len(data)+len(s.versionField)+28)
	buf = append(buf, `{"__d":`...)
	buf = append(buf, data...)
	buf = append(buf, s.versionField...)
	if s.ttl > 0 {
		buf = append(buf, `,"e":`...)
		buf = strconv.AppendInt(buf, s.now().UnixMilli()+s.ttl.Milliseconds(), 10)
	}
	buf = append(buf, '}')
	return s.store.Write(ctx, key, buf)
}

func (s *enhanced[T]) latest() string {
	return versionLabel(s.versions[len(s.versions)-1], true)
}

// unwrap takes stored bytes apart. Like grammY, it treats an object with
// a "__d" key as an envelope and anything else as bare data written before
// enhancement was turned on. The returned data is always valid JSON.
func unwrap(raw []byte) (envelope, error) {
	if !json.Valid(raw) {
		return envelope{}, errors.New("invalid JSON")
	}
	data, v, e := envelopeFields(raw)
	if data == nil {
		return envelope{data: raw}, nil
	}
	env := envelope{data: data}
	var err error
	if v != nil {
		if env.version, err = number(v); err != nil {
			return envelope{}, fmt.Errorf("envelope version: %w", err)
		}
		env.versioned = true
	}
	if e != nil {
		if env.expiry, err = number(e); err != nil {
			return envelope{}, fmt.Errorf("envelope expiry: %w", err)
		}
		env.expiring = true
	}
	return env, nil
}

// envelopeFields returns the raw values of the "__d", "v" and "e" members
// of raw if it is an object, nil for those absent; the last of duplicate
// keys wins, as in JavaScript. raw must be valid JSON, so the scan needs no
// error handling. It is hand-written because decoding the envelope into a
// map costs several times more than decoding the session data itself, and
// a struct would match keys case-insensitively where JavaScript does not.
func envelopeFields(raw []byte) (data, v, e []byte) {
	i := skipSpace(raw, 0)
	if raw[i] != '{' {
		return nil, nil, nil
	}
	for i = skipSpace(raw, i+1); raw[i] == '"'; {
		keyEnd := skipString(raw, i)
		key := raw[i:keyEnd]
		start := skipSpace(raw, skipSpace(raw, keyEnd)+1) // past the colon
		end := skipValue(raw, start)
		switch string(unquoteKey(key)) {
		case "__d":
			data = raw[start:end]
		case "v":
			v = raw[start:end]
		case "e":
			e = raw[start:end]
		}
		if i = skipSpace(raw, end); raw[i] == ',' {
			i = skipSpace(raw, i+1)
		}
	}
	return data, v, e
}

// unquoteKey returns the text of a quoted JSON key. Escapes are rare in
// keys, so only keys that have them pay for a full decode.
func unquoteKey(quoted []byte) []byte {
	if bytes.IndexByte(quoted, '\\') < 0 {
		return quoted[1 : len(quoted)-1]
	}
	var s string
	_ = json.Unmarshal(quoted, &s) // cannot fail: raw is valid JSON
	return []byte(s)
}

func skipSpace(raw []byte, i int) int {
	for i < len(raw) && (raw[i] == ' ' || raw[i] == '\t' || raw[i] == '\n' || raw[i] == '\r') {
		i++
	}
	return i
}

// skipString returns the index just past the JSON string at raw[i].
func skipString(raw []byte, i int) int {
	for i++; raw[i] != '"'; i++ {
		if raw[i] == '\\' {
			i++ // the escaped byte cannot end the string
		}
	}
	return i + 1
}

// skipValue returns the index just past the JSON value at raw[i].
func skipValue(raw []byte, i int) int {
	switch raw[i] {
	case '"':
		return skipString(raw, i)
	case '{', '[':
		for depth := 0; ; {
			switch raw[i] {
			case '"':
				i = skipString(raw, i)
				continue
			case '{', '[':
				depth++
			case '}', ']':
				if depth--; depth == 0 {
					return i + 1
				}
			}
			i++
		}
	}
	// A number, true, false or null: it runs to the next delimiter.
	for i < len(raw) && strings.IndexByte(",]} \t\r\n", raw[i]) < 0 {
		i++
	}
	return i
}

// number parses a JSON value that must be a number. The value is already
// valid JSON, so checking its first byte tells a number from the rest.
func number(raw json.RawMessage) (float64, error) {
	if len(raw) == 0 || (raw[0] != '-' && (raw[0] < '0' || raw[0] > '9')) {
		return 0, errors.New("not a number")
	}
	return strconv.ParseFloat(string(raw), 64)
}

// versionLabel formats a version for error messages.
func versionLabel(v float64, ok bool) string {
	if !ok {
		return "none"
	}
	return strconv.FormatFloat(v, 'g', -1, 64)
}
