package session

import (
	"errors"
	"fmt"
	"reflect"
	"sync"
	"time"
	"unsafe"
)

// valueOps copies and compares session values of one type. Memory uses it
// to keep values apart from its callers, and the middleware uses it to
// tell whether a handler changed a session held by a store that does not
// keep bytes. Both happen on every update, so the work is planned once per
// type, by reflection, into a tree of functions over raw memory:
//
//   - flat types (numbers, bools, strings, and arrays and structs of them)
//     hold no references, so assignment is a deep copy and the comparison
//     allocates nothing;
//   - everything else is copied and compared field by field, unexported
//     fields included, keeping the dynamic type of interface values (an int
//     in a map[string]any stays an int) and nil apart from empty.
//
// Channels, functions and unsafe pointers cannot be copied: a type that
// holds one reports errUncopyable from clone.
type valueOps[T any] struct{ ops *typeOps }

func opsFor[T any]() valueOps[T] { return valueOps[T]{opsOf(reflect.TypeFor[T]())} }

// clone returns a deep copy of *v that shares no memory with it.
func (o valueOps[T]) clone(v *T) (T, error) {
	if o.ops.flat {
		return *v, nil
	}
	if o.ops.bytes {
		return cloneBytes(*v), nil
	}
	var c T
	if o.ops.err != nil {
		return c, o.ops.err
	}
	err := o.ops.copy(unsafe.Pointer(&c), unsafe.Pointer(v), 0)
	return c, err
}

// cloneValue is clone for a value held in a local variable: taking the
// address of a local makes the compiler move it to the heap on every call,
// so only values that need a deep copy pay for that (in cloneSlow).
func (o valueOps[T]) cloneValue(v T) (T, error) {
	if o.ops.flat {
		return v, nil
	}
	if o.ops.bytes {
		return cloneBytes(v), nil
	}
	return o.cloneSlow(v)
}

func (o valueOps[T]) cloneSlow(v T) (T, error) { return o.clone(&v) }

// cloneBytes copies a byte slice (T's underlying type is []byte) in one
// allocation; the general slice plan goes through reflect and allocates
// more. Nil stays nil and empty stays empty, as in the general plan.
func cloneBytes[T any](v T) T {
	s := *(*[]byte)(unsafe.Pointer(&v))
	if s != nil {
		s = append(make([]byte, 0, len(s)), s...)
	}
	return *(*T)(unsafe.Pointer(&s))
}

// equal reports whether *a and *b are deeply equal. Floats compare by bit
// pattern, so an unchanged NaN is not a change; values that cannot be
// compared (too deep, uncopyable) are reported unequal, which costs at most
// a write that then reports the problem.
func (o valueOps[T]) equal(a, b *T) bool {
	return o.ops.err == nil && o.ops.equal(unsafe.Pointer(a), unsafe.Pointer(b), 0)
}

// errUncopyable is wrapped by clone for types that hold channels,
// functions or unsafe pointers.
var errUncopyable = errors.New("value cannot be copied")

// maxDepth bounds the recursion through pointers, slices, maps and
// interfaces, so a cyclic value is an error rather than a stack overflow.
const maxDepth = 1000

var errTooDeep = fmt.Errorf("value nested deeper than %d levels (cyclic?)", maxDepth)

// typeOps is the compiled plan for one type. copy writes a deep copy of
// src into dst, which holds the zero value.
type typeOps struct {
	t     reflect.Type
	flat  bool
	bytes bool  // a slice of bytes: copied without reflect
	err   error // non-nil: the type cannot be copied
	copy  func(dst, src unsafe.Pointer, depth int) error
	equal func(a, b unsafe.Pointer, depth int) bool
}

var compiled sync.Map // reflect.Type -> *typeOps

func opsOf(t reflect.Type) *typeOps {
	if o, ok := compiled.Load(t); ok {
		return o.(*typeOps)
	}
	o := compile(t, map[reflect.Type]*typeOps{})
	actual, _ := compiled.LoadOrStore(t, o)
	return actual.(*typeOps)
}

// compile plans t. Types under compilation are in busy, so a recursive
// type refers to its own (not yet finished) plan through the pointer.
func compile(t reflect.Type, busy map[reflect.Type]*typeOps) *typeOps {
	if o, ok := compiled.Load(t); ok {
		return o.(*typeOps)
	}
	if o := busy[t]; o != nil {
		return o
	}
	o := &typeOps{t: t}
	busy[t] = o
	if eq := flatEqual(t); eq != nil {
		size := t.Size()
		o.flat = true
		o.equal = func(a, b unsafe.Pointer, _ int) bool { return eq(a, b) }
		o.copy = func(dst, src unsafe.Pointer, _ int) error {
			copy(unsafe.Slice((*byte)(dst), size), unsafe.Slice((*byte)(src), size))
			return nil
		}
		return o
	}
	switch t.Kind() {
	case reflect.Chan, reflect.Func, reflect.UnsafePointer:
		o.err = fmt.Errorf("%w: %v holds a %v", errUncopyable, t, t.Kind())
	case reflect.Pointer:
		compilePointer(o, t, busy)
	case reflect.Slice:
		o.bytes = t.Elem().Kind() == reflect.Uint8
		compileSlice(o, t, busy)
	case reflect.Map:
		compileMap(o, t, busy)
	case reflect.Interface:
		compileInterface(o, t)
	case reflect.Array:
		compileArray(o, t, busy)
	case reflect.Struct:
		compileStruct(o, t, busy)
	default:
		o.err = fmt.Errorf("%w: unsupported kind %v", errUncopyable, t.Kind())
	}
	if o.err != nil {
		err := o.err
		o.copy = func(_, _ unsafe.Pointer, _ int) error { return err }
		o.equal = func(_, _ unsafe.Pointer, _ int) bool { return false }
	}
	return o
}

// locationType is shared rather than copied: a *time.Location is
// immutable, and time.Time values compare their location by pointer.
var locationType = reflect.TypeFor[*time.Location]()

func compilePointer(o *typeOps, t reflect.Type, busy map[reflect.Type]*typeOps) {
	if t == locationType {
		o.copy = func(dst, src unsafe.Pointer, _ int) error {
			*(*unsafe.Pointer)(dst) = *(*unsafe.Pointer)(src)
			return nil
		}
		o.equal = func(a, b unsafe.Pointer, _ int) bool { return *(*unsafe.Pointer)(a) == *(*unsafe.Pointer)(b) }
		return
	}
	elem := compile(t.Elem(), busy)
	o.err = elem.err
	o.copy = func(dst, src unsafe.Pointer, depth int) error {
		p := *(*unsafe.Pointer)(src)
		if p == nil {
			return nil
		}
		if depth >= maxDepth {
			return errTooDeep
		}
		n := reflect.New(elem.t).UnsafePointer()
		if err := elem.copy(n, p, depth+1); err != nil {
			return err
		}
		*(*unsafe.Pointer)(dst) = n
		return nil
	}
	o.equal = func(a, b unsafe.Pointer, depth int) bool {
		pa, pb := *(*unsafe.Pointer)(a), *(*unsafe.Pointer)(b)
		switch {
		case pa == pb:
			return true
		case pa == nil || pb == nil || depth >= maxDepth:
			return false
		}
		return elem.equal(pa, pb, depth+1)
	}
}

func compileSlice(o *typeOps, t reflect.Type, busy map[reflect.Type]*typeOps) {
	elem := compile(t.Elem(), busy)
	o.err = elem.err
	size := t.Elem().Size()
	o.copy = func(dst, src unsafe.Pointer, depth int) error {
		s := (*sliceHeader)(src)
		if s.data == nil {
			return nil // nil stays nil; an empty slice has a data pointer
		}
		if depth >= maxDepth {
			return errTooDeep
		}
		n := reflect.MakeSlice(t, s.len, s.len)
		d := (*sliceHeader)(dst)
		d.data, d.len, d.cap = n.UnsafePointer(), s.len, s.len
		if elem.flat {
			copy(unsafe.Slice((*byte)(d.data), uintptr(s.len)*size), unsafe.Slice((*byte)(s.data), uintptr(s.len)*size))
			return nil
		}
		for i := range uintptr(s.len) {
			if err := elem.copy(unsafe.Add(d.data, i*size), unsafe.Add(s.data, i*size), depth+1); err != nil {
				return err
			}
		}
		return nil
	}
	o.equal = func(a, b unsafe.Pointer, depth int) bool {
		sa, sb := (*sliceHeader)(a), (*sliceHeader)(b)
		switch {
		case (sa.data == nil) != (sb.data == nil) || sa.len != sb.len:
			return false
		case sa.data == sb.data:
			return true
		case depth >= maxDepth:
			return false
		}
		for i := range uintptr(sa.len) {
			if !elem.equal(unsafe.Add(sa.data, i*size), unsafe.Add(sb.data, i*size), depth+1) {
				return false
			}
		}
		return true
	}
}

type sliceHeader struct {
	data     unsafe.Pointer
	len, cap int
}

func compileMap(o *typeOps, t reflect.Type, busy map[reflect.Type]*typeOps) {
	key, elem := compile(t.Key(), busy), compile(t.Elem(), busy)
	o.err = errors.Join(key.err, elem.err)
	o.copy = func(dst, src unsafe.Pointer, depth int) error {
		m := reflect.NewAt(t, src).Elem()
		if m.IsNil() {
			return nil
		}
		if depth >= maxDepth {
			return errTooDeep
		}
		n := reflect.MakeMapWithSize(t, m.Len())
		k, v := reflect.New(t.Key()).Elem(), reflect.New(t.Elem()).Elem()
		for it := m.MapRange(); it.Next(); {
			if err := copyValue(key, k, it.Key(), depth+1); err != nil {
				return err
			}
			if err := copyValue(elem, v, it.Value(), depth+1); err != nil {
				return err
			}
			n.SetMapIndex(k, v)
		}
		reflect.NewAt(t, dst).Elem().Set(n)
		return nil
	}
	o.equal = func(a, b unsafe.Pointer, depth int) bool {
		ma, mb := reflect.NewAt(t, a).Elem(), reflect.NewAt(t, b).Elem()
		switch {
		case ma.IsNil() != mb.IsNil() || ma.Len() != mb.Len():
			return false
		case ma.UnsafePointer() == mb.UnsafePointer():
			return true
		case depth >= maxDepth:
			return false
		}
		va, vb := reflect.New(t.Elem()).Elem(), reflect.New(t.Elem()).Elem()
		for it := ma.MapRange(); it.Next(); {
			w := mb.MapIndex(it.Key())
			if !w.IsValid() {
				return false
			}
			va.Set(it.Value())
			vb.Set(w)
			if !elem.equal(va.Addr().UnsafePointer(), vb.Addr().UnsafePointer(), depth+1) {
				return false
			}
		}
		return true
	}
}

// copyValue deep-copies src (of ops' type, not addressable) into dst,
// which is addressable and is overwritten.
func copyValue(ops *typeOps, dst, src reflect.Value, depth int) error {
	dst.SetZero()
	if ops.flat {
		dst.Set(src)
		return nil
	}
	tmp := reflect.New(ops.t).Elem()
	tmp.Set(src)
	return ops.copy(dst.Addr().UnsafePointer(), tmp.Addr().UnsafePointer(), depth)
}

func compileInterface(o *typeOps, t reflect.Type) {
	o.copy = func(dst, src unsafe.Pointer, depth int) error {
		v := reflect.NewAt(t, src).Elem()
		if v.IsNil() {
			return nil
		}
		if depth >= maxDepth {
			return errTooDeep
		}
		dyn := v.Elem()
		c := reflect.New(dyn.Type()).Elem()
		if err := copyValue(opsOf(dyn.Type()), c, dyn, depth+1); err != nil {
			return err
		}
		reflect.NewAt(t, dst).Elem().Set(c)
		return nil
	}
	o.equal = func(a, b unsafe.Pointer, depth int) bool {
		va, vb := reflect.NewAt(t, a).Elem(), reflect.NewAt(t, b).Elem()
		switch {
		case va.IsNil() || vb.IsNil():
			return va.IsNil() == vb.IsNil()
		case va.Elem().Type() != vb.Elem().Type() || depth >= maxDepth:
			return false
		}
		dt := va.Elem().Type()
		ca, cb := reflect.New(dt), reflect.New(dt)
		ca.Elem().Set(va.Elem())
		cb.Elem().Set(vb.Elem())
		return opsOf(dt).equal(ca.UnsafePointer(), cb.UnsafePointer(), depth+1)
	}
}

func compileArray(o *typeOps, t reflect.Type, busy map[reflect.Type]*typeOps) {
	elem := compile(t.Elem(), busy)
	o.err = elem.err
	n, size := uintptr(t.Len()), t.Elem().Size()
	o.copy = func(dst, src unsafe.Pointer, depth int) error {
		for i := range n {
			if err := elem.copy(unsafe.Add(dst, i*size), unsafe.Add(src, i*size), depth); err != nil {
				return err
			}
		}
		return nil
	}
	o.equal = func(a, b unsafe.Pointer, depth int) bool {
		for i := range n {
			if !elem.equal(unsafe.Add(a, i*size), unsafe.Add(b, i*size), depth) {
				return false
			}
		}
		return true
	}
}

func compileStruct(o *typeOps, t reflect.Type, busy map[reflect.Type]*typeOps) {
	type field struct {
		offset uintptr
		ops    *typeOps
	}
	fields := make([]field, 0, t.NumField())
	var errs []error
	for i := range t.NumField() {
		f := t.Field(i)
		fo := compile(f.Type, busy)
		if fo.err != nil {
			errs = append(errs, fmt.Errorf("field %s: %w", f.Name, fo.err))
		}
		fields = append(fields, field{f.Offset, fo})
	}
	o.err = errors.Join(errs...)
	o.copy = func(dst, src unsafe.Pointer, depth int) error {
		for _, f := range fields {
			if err := f.ops.copy(unsafe.Add(dst, f.offset), unsafe.Add(src, f.offset), depth); err != nil {
				return err
			}
		}
		return nil
	}
	o.equal = func(a, b unsafe.Pointer, depth int) bool {
		for _, f := range fields {
			if !f.ops.equal(unsafe.Add(a, f.offset), unsafe.Add(b, f.offset), depth) {
				return false
			}
		}
		return true
	}
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
