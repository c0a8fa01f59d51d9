package session

import (
	"bytes"
	"encoding/json"
	"reflect"
	"unsafe"
)

// valueOps copies and compares session values of one type. Both happen on
// every update, so the work is planned once per type:
//
//   - flat types (numbers, bools, strings, and arrays and structs of them)
//     hold no references, so assignment is a deep copy and a compiled
//     field-by-field comparison needs no allocation;
//   - []byte is copied with bytes.Clone;
//   - everything else is copied and compared through its JSON encoding,
//     which is what a persistent store would keep: a change to a field JSON
//     does not store (unexported, `json:"-"`) is not a change.
type valueOps[T any] struct {
	equal func(a, b unsafe.Pointer) bool // nil unless T is flat
	bytes bool                           // T is a byte slice
}

func opsFor[T any]() valueOps[T] {
	t := reflect.TypeFor[T]()
	if t.Kind() == reflect.Slice && t.Elem().Kind() == reflect.Uint8 {
		return valueOps[T]{bytes: true}
	}
	return valueOps[T]{equal: flatEqual(t)}
}

// flat reports whether values of T can be copied by assignment.
func (o valueOps[T]) flat() bool { return o.equal != nil }

// clone returns a copy of v that shares no memory with it.
func (o valueOps[T]) clone(v T) (T, error) {
	switch {
	case o.flat():
		return v, nil
	case o.bytes:
		b := bytes.Clone(*(*[]byte)(unsafe.Pointer(&v)))
		return *(*T)(unsafe.Pointer(&b)), nil
	}
	data, err := json.Marshal(v)
	if err != nil {
		return v, err
	}
	var c T
	err = json.Unmarshal(data, &c)
	return c, err
}

// snapshot records v for a later changed check: the value itself for flat
// types (in *keep), its encoding otherwise.
func (o valueOps[T]) snapshot(v *T, keep *T) ([]byte, error) {
	if o.flat() {
		*keep = *v
		return nil, nil
	}
	if o.bytes {
		return bytes.Clone(*(*[]byte)(unsafe.Pointer(v))), nil
	}
	return json.Marshal(v)
}

// changed reports whether v differs from what snapshot recorded.
func (o valueOps[T]) changed(v *T, kept *T, snap []byte) (bool, error) {
	if o.flat() {
		return !o.equal(unsafe.Pointer(v), unsafe.Pointer(kept)), nil
	}
	if o.bytes {
		b := *(*[]byte)(unsafe.Pointer(v))
		return (b == nil) != (snap == nil) || !bytes.Equal(b, snap), nil
	}
	now, err := json.Marshal(v)
	if err != nil {
		return false, err
	}
	return !bytes.Equal(now, snap), nil
}

// flatEqual compiles an equality function for a flat type, or returns nil
// if t holds references (pointers, maps, slices, interfaces, ...).
// Floats compare by bit pattern so that a NaN that did not change is not
// reported as a change.
func flatEqual(t reflect.Type) func(a, b unsafe.Pointer) bool {
	switch t.Kind() {
	case reflect.Bool, reflect.Int8, reflect.Uint8:
		return func(a, b unsafe.Pointer) bool { return *(*uint8)(a) == *(*uint8)(b) }
	case reflect.Int16, reflect.Uint16:
		return func(a, b unsafe.Pointer) bool { return *(*uint16)(a) == *(*uint16)(b) }
	case reflect.Int32, reflect.Uint32, reflect.Float32:
		return func(a, b unsafe.Pointer) bool { return *(*uint32)(a) == *(*uint32)(b) }
	case reflect.Int, reflect.Uint, reflect.Uintptr, reflect.Int64, reflect.Uint64, reflect.Float64:
		if t.Size() == 4 {
			return func(a, b unsafe.Pointer) bool { return *(*uint32)(a) == *(*uint32)(b) }
		}
		return func(a, b unsafe.Pointer) bool { return *(*uint64)(a) == *(*uint64)(b) }
	case reflect.Complex64:
		return func(a, b unsafe.Pointer) bool { return *(*uint64)(a) == *(*uint64)(b) }
	case reflect.Complex128:
		return func(a, b unsafe.Pointer) bool {
			x, y := (*[2]uint64)(a), (*[2]uint64)(b)
			return *x == *y
		}
	case reflect.String:
		return func(a, b unsafe.Pointer) bool { return *(*string)(a) == *(*string)(b) }
	case reflect.Array:
		elem := flatEqual(t.Elem())
		if elem == nil {
			return nil
		}
		n, size := uintptr(t.Len()), t.Elem().Size()
		return func(a, b unsafe.Pointer) bool {
			for i := uintptr(0); i < n; i++ {
				if !elem(unsafe.Add(a, i*size), unsafe.Add(b, i*size)) {
					return false
				}
			}
			return true
		}
	case reflect.Struct:
		type field struct {
			offset uintptr
			equal  func(a, b unsafe.Pointer) bool
		}
		fields := make([]field, 0, t.NumField())
		for i := range t.NumField() {
			f := t.Field(i)
			eq := flatEqual(f.Type)
			if eq == nil {
				return nil
			}
			if f.Type.Size() > 0 {
				fields = append(fields, field{f.Offset, eq})
			}
		}
		if len(fields) == 1 && fields[0].offset == 0 {
			return fields[0].equal // the common one-field struct costs one call
		}
		return func(a, b unsafe.Pointer) bool {
			for _, f := range fields {
				if !f.equal(unsafe.Add(a, f.offset), unsafe.Add(b, f.offset)) {
					return false
				}
			}
			return true
		}
	}
	return nil
}
