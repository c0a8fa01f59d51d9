package session

import (
	"fmt"
	"reflect"
)

// Configuration checks, run when a middleware, fragment or store is built
// so that a mistake is a clear error then, not a nil dereference or a
// failing update later.

// isNil reports whether v is nil, including a typed nil pointer (or map,
// func, chan, slice) inside an interface: (*Memory[T])(nil) as a
// StorageAdapter passes a v == nil check and panics on the first call.
func isNil(v any) bool {
	if v == nil {
		return true
	}
	rv := reflect.ValueOf(v)
	switch rv.Kind() {
	case reflect.Pointer, reflect.Map, reflect.Func, reflect.Chan, reflect.Slice, reflect.Interface:
		return rv.IsNil()
	}
	return false
}

// configErr panics with an error wrapping ErrConfig, for constructors that
// return no error.
func configErr(format string, args ...any) {
	panic(fmt.Errorf("%w: "+format, append([]any{ErrConfig}, args...)...))
}

// checkOptions checks what a session or fragment is given: a usable
// store, an initial value for types whose zero value is nil, and a type
// the store can keep. what names it in the errors ("session", `fragment
// "cart"`).
func checkOptions[T any](what string, opts Options[T]) {
	t := reflect.TypeFor[T]()
	if opts.Storage != nil && isNil(opts.Storage) {
		configErr("%s: Options.Storage is a nil %T", what, opts.Storage)
	}
	if opts.Initial == nil {
		switch t.Kind() {
		case reflect.Pointer, reflect.Map:
			configErr("%s: the zero value of %v is nil, so a new session could not be used: set Options.Initial", what, t)
		}
	}
	if c, ok := opts.Storage.(typeChecker); ok {
		if err := c.checkType(); err != nil {
			configErr("%s: %w", what, err)
		}
	}
}

// typeChecker is implemented by the stores of this package: checkType
// reports a session type they cannot keep.
type typeChecker interface{ checkType() error }

// checkStore panics if a byte store given to a wrapper is nil.
func checkStore(what string, store StorageAdapter[[]byte]) {
	if isNil(store) {
		configErr("%s: nil store", what)
	}
}

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
