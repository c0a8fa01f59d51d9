package session

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/tgsession/session/internal/jsonfast"
)

// Codec turns session values into the bytes a [Store] keeps and back.
// [JSON] is the default.
type Codec interface {
	Marshal(v any) ([]byte, error)
	Unmarshal(data []byte, v any) error
}

// JSON is the default [Codec]: encoding/json, so stored sessions stay
// readable by other tools and by bots written in other languages (grammY
// among them). Values survive it as encoding/json round-trips them:
// exported fields only, numbers in interface values come back as float64,
// a nil and an empty slice or map stay apart, time.Time keeps its instant.
type JSON struct{}

// Marshal encodes v with encoding/json.
func (JSON) Marshal(v any) ([]byte, error) { return json.Marshal(v) }

// Unmarshal decodes data with encoding/json.
func (JSON) Unmarshal(data []byte, v any) error { return json.Unmarshal(data, v) }

// Migration converts stored JSON data of the previous version's shape to
// the next (grammY's enhanced storage migrations). It works on JSON rather
// than Go values because the old shape usually no longer has a Go type in
// the program; [Migrate] adds the types back when they do exist.
type Migration func(old json.RawMessage) (json.RawMessage, error)

// Migrate builds a [Migration] from a function between two Go types: the
// stored data is decoded into Old, converted by f, and encoded from New.
// Data that does not decode into Old makes the migration fail. A nil f
// gives a nil Migration, which [New] rejects.
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

// valueCodec is how one part's values become stored bytes: the codec,
// and grammY's envelope {"__d":<data>,"v":<version>,"e":<expiry, Unix ms>}
// when migrations are used ("v") or a TTL must be kept in the data because
// the store has no native expiry ("e").
type valueCodec[F any] struct {
	codec      Codec // nil: JSON through the fast path
	fast       jsonfast.Codec[F]
	envelope   bool          // wrap in the envelope
	dataTTL    time.Duration // > 0: keep the expiry in "e"
	expires    bool          // the session has a TTL, so a stored "e" counts
	versions   []float64     // ascending
	migrations []Migration   // migrations[i] produces versions[i]
	versionTag []byte        // `,"v":<newest version>`, or nil
	now        func() time.Time
}

func newValueCodec[F any](codec Codec, dataTTL time.Duration, migrations map[float64]Migration, now func() time.Time) (*valueCodec[F], error) {
	vc := &valueCodec[F]{fast: jsonfast.For[F](), dataTTL: dataTTL, expires: dataTTL > 0, now: now}
	if _, isJSON := codec.(JSON); !isJSON && codec != nil {
		vc.codec = codec
	}
	vc.envelope = dataTTL > 0 || migrations != nil
	if vc.envelope && vc.codec != nil {
		return nil, fmt.Errorf("%w: grammY's envelope (for Migrations, or a TTL on a store without native expiry) is JSON: it needs the JSON codec, not %T", ErrConfig, codec)
	}
	if dataTTL > 0 && dataTTL < time.Millisecond {
		return nil, fmt.Errorf("%w: TTL %v is below the envelope's resolution of 1ms", ErrConfig, dataTTL)
	}
	if migrations != nil && len(migrations) == 0 {
		return nil, fmt.Errorf("%w: Migrations is empty", ErrConfig)
	}
	for v := range migrations {
		vc.versions = append(vc.versions, v)
	}
	slices.Sort(vc.versions) // so decoding does not depend on map order
	for _, v := range vc.versions {
		if math.IsNaN(v) || math.IsInf(v, 0) {
			return nil, fmt.Errorf("%w: migration version %v is not a finite number", ErrConfig, v)
		}
		m := migrations[v]
		if m == nil {
			return nil, fmt.Errorf("%w: migration %s is nil", ErrConfig, versionLabel(v, true))
		}
		vc.migrations = append(vc.migrations, m)
	}
	if n := len(vc.versions); n > 0 {
		latest, _ := json.Marshal(vc.versions[n-1]) // numbers as JavaScript formats them
		vc.versionTag = append([]byte(`,"v":`), latest...)
	}
	return vc, nil
}

// encode returns the codec's encoding of *v: what is compared with the
// stored data to tell whether the session changed.
func (vc *valueCodec[F]) encode(v *F) ([]byte, error) {
	if vc.codec != nil {
		return vc.codec.Marshal(v)
	}
	return vc.fast.Marshal(v)
}

// wrap returns the bytes to store for an encoding.
func (vc *valueCodec[F]) wrap(data []byte) []byte {
	if !vc.envelope {
		return data
	}
	buf := make([]byte, 0, len(data)+len(vc.versionTag)+28)
	buf = append(buf, `{"__d":`...)
	buf = append(buf, data...)
	buf = append(buf, vc.versionTag...)
	if vc.dataTTL > 0 {
		// Gone by 1.5×TTL after the last use, alive for at least TTL: see
		// decode for when it is rewritten.
		buf = append(buf, `,"e":`...)
		buf = strconv.AppendInt(buf, vc.now().UnixMilli()+(vc.dataTTL+vc.dataTTL/2).Milliseconds(), 10)
	}
	return append(buf, '}')
}

// decoded is what decode found in stored bytes.
type decoded struct {
	live bool   // false: expired, reported missing
	same []byte // the encoding that means unchanged; nil: write anyway
}

// decode decodes stored bytes into *into, which holds the zero value.
func (vc *valueCodec[F]) decode(key string, raw []byte, into *F) (decoded, error) {
	if vc.codec != nil {
		if err := vc.codec.Unmarshal(raw, into); err != nil {
			return vc.corrupt(key, into, err)
		}
		return decoded{live: true, same: raw}, nil
	}
	if !vc.envelope && !bytes.HasPrefix(raw, []byte(`{"__d":`)) {
		if err := vc.fast.Unmarshal(raw, into); err != nil {
			return vc.corrupt(key, into, err)
		}
		return decoded{live: true, same: raw}, nil
	}
	env, err := unwrap(raw)
	if err != nil {
		return vc.corrupt(key, into, err)
	}
	now := vc.now().UnixMilli()
	if env.expiring && vc.expires && env.expiry <= float64(now) {
		return decoded{}, nil
	}
	data, ran, err := vc.migrate(key, env)
	if err != nil {
		return decoded{}, err
	}
	if err := vc.fast.Unmarshal(data, into); err != nil {
		if ran {
			var zero F
			*into = zero
			return decoded{}, fmt.Errorf("%w: key %q: data migrated from version %s to %s does not decode: %w",
				ErrMigration, key, versionLabel(env.version, env.versioned), vc.latest(), err)
		}
		return vc.corrupt(key, into, err)
	}
	d := decoded{live: true, same: data}
	switch {
	case ran, env.versioned != (len(vc.versions) > 0):
		d.same = nil // rewrite at the newest version
	case vc.dataTTL > 0 && (!env.expiring || env.expiry-float64(now) < float64(vc.dataTTL.Milliseconds())):
		d.same = nil // less than a TTL left: push the expiry out again
	case vc.dataTTL == 0 && env.expiring:
		d.same = nil // an expiry the store keeps natively now
	case !vc.envelope:
		d.same = nil // an envelope no longer needed
	}
	return d, nil
}

func (vc *valueCodec[F]) corrupt(key string, into *F, err error) (decoded, error) {
	var zero F
	*into = zero // may be half-decoded
	return decoded{}, fmt.Errorf("%w: key %q: %w", ErrCorrupt, key, err)
}

func (vc *valueCodec[F]) latest() string {
	return versionLabel(vc.versions[len(vc.versions)-1], true)
}

// migrate runs, in order, every migration newer than the stored version,
// and reports whether any ran.
func (vc *valueCodec[F]) migrate(key string, env envelope) (json.RawMessage, bool, error) {
	if len(vc.versions) == 0 {
		return env.data, false, nil
	}
	first := 0 // unversioned data is older than every migration
	if env.versioned {
		if env.version > vc.versions[len(vc.versions)-1] {
			return nil, false, fmt.Errorf("%w: key %q has version %s, newest migration is %s",
				ErrNewerVersion, key, versionLabel(env.version, true), vc.latest())
		}
		first = sort.Search(len(vc.versions), func(i int) bool { return vc.versions[i] > env.version })
	}
	data := env.data
	for i := first; i < len(vc.versions); i++ {
		out, err := vc.migrations[i](data)
		if err != nil {
			from := versionLabel(env.version, env.versioned)
			if i > first {
				from = versionLabel(vc.versions[i-1], true)
			}
			return nil, false, fmt.Errorf("%w: key %q from version %s to %s: %w",
				ErrMigration, key, from, versionLabel(vc.versions[i], true), err)
		}
		data = out
	}
	return data, first < len(vc.versions), nil
}

// envelope is stored data taken apart.
type envelope struct {
	data                json.RawMessage
	version, expiry     float64
	versioned, expiring bool
}

// unwrap takes stored bytes apart. Like grammY, it treats an object with
// a "__d" key as an envelope and anything else as bare data written before
// the envelope was used. The returned data is always valid JSON.
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
// error handling. A struct would match keys case-insensitively where
// JavaScript does not.
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
