// Package jsonfast encodes and decodes simple struct types exactly as
// encoding/json does, without reflection or allocation per call, and falls
// back to encoding/json for everything else. The session middleware encodes
// a session at every commit and decodes it at every load; for the flat
// structs most bots keep this is several times faster than encoding/json
// (see BENCHMARKS.md), and its differential and fuzz tests check it against
// encoding/json byte for byte.
package jsonfast

import (
	"bytes"
	"encoding"
	"encoding/json"
	"math"
	"reflect"
	"strconv"
	"strings"
	"unsafe"
)

// jsonPlan encodes and decodes one simple struct type exactly as
// encoding/json does, without reflection or allocation per call. JSON
// sessions are encoded at every write and decoded at every read, and
// encoding/json's decoder costs several times the rest of an update.
//
// Only types where the result provably matches encoding/json get a plan:
// structs whose fields are all non-embedded, of integer, bool or string
// kind, with no json or text (un)marshalers anywhere, tags limited to a
// plain name, "-" and omitempty, and names that differ even ignoring case.
// For everything else jsonPlanOf returns nil and encoding/json is used.
//
// Encoding bails out (ok false: use encoding/json) on any string that
// encoding/json would escape. Decoding parses the common shape and then
// re-encodes the result: only if that reproduces the input byte for byte
// is it accepted. For these types json.Unmarshal(json.Marshal(v)) == v, so
// a value whose encoding is the input is exactly what json.Unmarshal
// would have produced; any other input (spaces, escapes, other key order,
// unknown keys, null) goes to encoding/json.
type jsonPlan struct {
	fields []jsonField
}

type jsonField struct {
	offset    uintptr
	kind      reflect.Kind
	size      uintptr
	key       string // `"name":`
	omitEmpty bool
}

var (
	jsonMarshaler   = reflect.TypeFor[json.Marshaler]()
	jsonUnmarshaler = reflect.TypeFor[json.Unmarshaler]()
	textMarshaler   = reflect.TypeFor[encoding.TextMarshaler]()
	textUnmarshaler = reflect.TypeFor[encoding.TextUnmarshaler]()
)

// customJSON reports whether t or *t has its own JSON or text encoding.
func customJSON(t reflect.Type) bool {
	for _, x := range []reflect.Type{t, reflect.PointerTo(t)} {
		if x.Implements(jsonMarshaler) || x.Implements(jsonUnmarshaler) || x.Implements(textMarshaler) || x.Implements(textUnmarshaler) {
			return true
		}
	}
	return false
}

// jsonPlanOf returns the plan of t, or nil if encoding/json must be used.
func jsonPlanOf(t reflect.Type) *jsonPlan {
	if t.Kind() != reflect.Struct || customJSON(t) {
		return nil
	}
	p := &jsonPlan{}
	seen := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if f.Anonymous {
			return nil // promotion rules: leave them to encoding/json
		}
		if !f.IsExported() {
			continue // encoding/json neither writes nor reads it
		}
		tag, hasTag := f.Tag.Lookup("json")
		if tag == "-" {
			continue
		}
		name, opts, _ := strings.Cut(tag, ",")
		if !hasTag || name == "" {
			name = f.Name
		}
		if !plainName(name) || (opts != "" && opts != "omitempty") {
			return nil
		}
		if seen[strings.ToLower(name)] {
			return nil
		}
		seen[strings.ToLower(name)] = true
		switch f.Type.Kind() {
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
			reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64,
			reflect.Bool, reflect.String:
		default:
			return nil
		}
		if customJSON(f.Type) {
			return nil
		}
		p.fields = append(p.fields, jsonField{
			offset:    f.Offset,
			kind:      f.Type.Kind(),
			size:      f.Type.Size(),
			key:       `"` + name + `":`,
			omitEmpty: opts == "omitempty",
		})
	}
	return p
}

// plainName reports whether a JSON key needs no escaping and is kept by
// encoding/json as it is: letters, digits and underscores.
func plainName(s string) bool {
	for _, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return s != ""
}

// appendJSON appends the encoding/json encoding of the value at v, or
// reports false if a string would need escaping.
func (p *jsonPlan) appendJSON(buf []byte, v unsafe.Pointer) ([]byte, bool) {
	buf = append(buf, '{')
	first := true
	for i := range p.fields {
		f := &p.fields[i]
		at := unsafe.Add(v, f.offset)
		if f.omitEmpty && isZero(at, f) {
			continue
		}
		if !first {
			buf = append(buf, ',')
		}
		first = false
		buf = append(buf, f.key...)
		switch f.kind {
		case reflect.Bool:
			buf = strconv.AppendBool(buf, *(*bool)(at))
		case reflect.String:
			s := *(*string)(at)
			if !plainString(s) {
				return buf, false
			}
			buf = append(buf, '"')
			buf = append(buf, s...)
			buf = append(buf, '"')
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			buf = strconv.AppendInt(buf, loadInt(at, f.size), 10)
		default:
			buf = strconv.AppendUint(buf, loadUint(at, f.size), 10)
		}
	}
	return append(buf, '}'), true
}

// plainString reports whether encoding/json writes s between quotes as it
// is: printable ASCII other than the quote, the backslash and the HTML
// characters it escapes.
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < 0x20 || c > 0x7e || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			return false
		}
	}
	return true
}

func isZero(at unsafe.Pointer, f *jsonField) bool {
	switch f.kind {
	case reflect.Bool:
		return !*(*bool)(at)
	case reflect.String:
		return *(*string)(at) == ""
	}
	return loadUint(at, f.size) == 0
}

func loadInt(at unsafe.Pointer, size uintptr) int64 {
	switch size {
	case 1:
		return int64(*(*int8)(at))
	case 2:
		return int64(*(*int16)(at))
	case 4:
		return int64(*(*int32)(at))
	}
	return *(*int64)(at)
}

func loadUint(at unsafe.Pointer, size uintptr) uint64 {
	switch size {
	case 1:
		return uint64(*(*uint8)(at))
	case 2:
		return uint64(*(*uint16)(at))
	case 4:
		return uint64(*(*uint32)(at))
	}
	return *(*uint64)(at)
}

// decode fills the value at v (the zero value) from data and reports
// whether that is exactly what json.Unmarshal would have done; on false
// the value may be partly set and the caller must zero it and fall back.
func (p *jsonPlan) decode(data []byte, v unsafe.Pointer) bool {
	if len(data) < 2 || data[0] != '{' || data[len(data)-1] != '}' {
		return false
	}
	rest := data[1 : len(data)-1]
	for i := range p.fields {
		if len(rest) == 0 {
			break
		}
		f := &p.fields[i]
		if len(rest) < len(f.key) || string(rest[:len(f.key)]) != f.key {
			if f.omitEmpty {
				continue // omitted: stays zero
			}
			return false
		}
		rest = rest[len(f.key):]
		end := bytes.IndexByte(rest, ',')
		if f.kind == reflect.String {
			if len(rest) < 2 || rest[0] != '"' {
				return false
			}
			end = bytes.IndexByte(rest[1:], '"') + 2 // plain strings hold no quote
			if end < 2 {
				return false
			}
		} else if end < 0 {
			end = len(rest)
		}
		val := rest[:end]
		at := unsafe.Add(v, f.offset)
		switch f.kind {
		case reflect.Bool:
			switch string(val) {
			case "true":
				*(*bool)(at) = true
			case "false":
			default:
				return false
			}
		case reflect.String:
			*(*string)(at) = string(val[1 : len(val)-1])
		case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64:
			n, ok := parseInt(val, f.size*8)
			if !ok {
				return false
			}
			storeInt(at, f.size, n)
		default:
			neg, u, ok := parseDigits(val)
			if !ok || neg || (f.size < 8 && u >= 1<<(f.size*8)) {
				return false
			}
			storeInt(at, f.size, int64(u))
		}
		rest = rest[end:]
		if len(rest) > 0 {
			if rest[0] != ',' {
				return false
			}
			rest = rest[1:]
		}
	}
	// Accept only the canonical encoding of what was parsed.
	var scratch [128]byte
	out, ok := p.appendJSON(scratch[:0], v)
	return ok && bytes.Equal(out, data)
}

// parseDigits parses an optional minus sign and decimal digits, without
// strconv's string conversion (an allocation per field). It accepts some
// forms encoding/json would not write ("-0", leading zeros): the
// re-encoding check in decode rejects those.
func parseDigits(b []byte) (neg bool, u uint64, ok bool) {
	if len(b) > 0 && b[0] == '-' {
		neg, b = true, b[1:]
	}
	if len(b) == 0 || len(b) > 20 {
		return false, 0, false
	}
	for _, c := range b {
		if c < '0' || c > '9' || u > math.MaxUint64/10 {
			return false, 0, false
		}
		d := uint64(c - '0')
		if u*10 > math.MaxUint64-d {
			return false, 0, false
		}
		u = u*10 + d
	}
	return neg, u, true
}

// parseInt parses a signed integer that fits in bits bits.
func parseInt(b []byte, bits uintptr) (int64, bool) {
	neg, u, ok := parseDigits(b)
	limit := uint64(1) << (bits - 1) // magnitude of the most negative value
	switch {
	case !ok:
		return 0, false
	case neg && u <= limit:
		return int64(-u), true // -limit wraps to the most negative value
	case !neg && u < limit:
		return int64(u), true
	}
	return 0, false
}

func storeInt(at unsafe.Pointer, size uintptr, n int64) {
	switch size {
	case 1:
		*(*int8)(at) = int8(n)
	case 2:
		*(*int16)(at) = int16(n)
	case 4:
		*(*int32)(at) = int32(n)
	default:
		*(*int64)(at) = n
	}
}

// Codec encodes and decodes values of one type T as encoding/json does.
type Codec[T any] struct{ plan *jsonPlan }

// For returns the codec of T: the fast path where T is a simple struct,
// encoding/json otherwise.
func For[T any]() Codec[T] {
	return Codec[T]{jsonPlanOf(reflect.TypeFor[T]())}
}

// Fast reports whether T has the fast path.
func (c Codec[T]) Fast() bool { return c.plan != nil }

// Marshal encodes *v as json.Marshal does.
func (c Codec[T]) Marshal(v *T) ([]byte, error) {
	if c.plan != nil {
		if out, ok := c.plan.appendJSON(make([]byte, 0, 32), unsafe.Pointer(v)); ok {
			return out, nil
		}
	}
	return json.Marshal(v)
}

// Unmarshal decodes data into *into, which holds the zero value, as
// json.Unmarshal does.
func (c Codec[T]) Unmarshal(data []byte, into *T) error {
	if c.plan != nil {
		if c.plan.decode(data, unsafe.Pointer(into)) {
			return nil
		}
		var zero T
		*into = zero
	}
	return json.Unmarshal(data, into)
}
