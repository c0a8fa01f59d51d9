package session

import (
	"encoding"
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
)

// jsonProblem is the check, made when a session is built, that JSON can
// keep its type: a mistake is a clear error then, not a failing update
// later.

var (
	jsonMarshaler = reflect.TypeFor[json.Marshaler]()
	textMarshaler = reflect.TypeFor[encoding.TextMarshaler]()
	errNoLister   = errors.ErrUnsupported
)

// jsonProblem reports the first part of t that encoding/json cannot
// encode (a channel, a function, a complex number, an unsafe pointer, a map
// with keys it cannot name), with its path from t, or nil. Fields json
// skips (unexported, `json:"-"`) and types with their own MarshalJSON are
// not looked into. Interfaces are checked when the value is known, by the
// codec.
func jsonProblem(t reflect.Type) error {
	return jsonWalk(t, t.String(), map[reflect.Type]bool{})
}

func jsonWalk(t reflect.Type, path string, seen map[reflect.Type]bool) error {
	if seen[t] {
		return nil
	}
	seen[t] = true
	if t.Implements(jsonMarshaler) || reflect.PointerTo(t).Implements(jsonMarshaler) {
		return nil
	}
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.Complex64, reflect.Complex128, reflect.UnsafePointer:
		return fmt.Errorf("%s is a %v, which JSON cannot encode", path, t)
	case reflect.Pointer:
		return jsonWalk(t.Elem(), path, seen)
	case reflect.Slice, reflect.Array:
		return jsonWalk(t.Elem(), path+"[]", seen)
	case reflect.Map:
		k := t.Key()
		switch {
		case k.Kind() == reflect.String, k.Implements(textMarshaler), reflect.PointerTo(k).Implements(textMarshaler):
		case k.Kind() >= reflect.Int && k.Kind() <= reflect.Uintptr:
		default:
			return fmt.Errorf("%s is a map with %v keys, which JSON cannot encode", path, k)
		}
		return jsonWalk(t.Elem(), path+"[]", seen)
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			if (!f.IsExported() && !f.Anonymous) || f.Tag.Get("json") == "-" {
				continue
			}
			if err := jsonWalk(f.Type, path+"."+f.Name, seen); err != nil {
				return err
			}
		}
	}
	return nil
}
