package session

import (
	"math"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

type allKinds struct {
	B   bool
	I8  int8
	I16 int16
	I32 int32
	I64 int64
	I   int
	U8  uint8
	U16 uint16
	U32 uint32
	U64 uint64
	U   uint
	P   uintptr
	F32 float32
	F64 float64
	C64 complex64
	C   complex128
	S   string
	A   [3]int16
	N   struct {
		X string
		Y [2]bool
	}
	_ struct{}
}

// changedAfter reports what valueOps says after mutate changes v, which
// it compares with a deep copy taken before.
func changedAfter[T any](t *testing.T, v T, mutate func(*T)) bool {
	t.Helper()
	ops := opsFor[T]()
	kept, err := ops.clone(&v)
	require.NoError(t, err)
	mutate(&v)
	return !ops.equal(&v, &kept)
}

func TestFlatTypesCompareFieldByField(t *testing.T) {
	require.True(t, opsFor[allKinds]().ops.flat, "a struct of scalars, strings and arrays is flat")
	base := allKinds{S: "s", A: [3]int16{1, 2, 3}}
	base.N.X = "x"
	for name, mutate := range map[string]func(*allKinds){
		"bool": func(v *allKinds) { v.B = true }, "int8": func(v *allKinds) { v.I8 = -1 },
		"int16": func(v *allKinds) { v.I16 = 300 }, "int32": func(v *allKinds) { v.I32 = 1 << 20 },
		"int64": func(v *allKinds) { v.I64 = 1 << 40 }, "int": func(v *allKinds) { v.I = 7 },
		"uint8": func(v *allKinds) { v.U8 = 1 }, "uint16": func(v *allKinds) { v.U16 = 1 },
		"uint32": func(v *allKinds) { v.U32 = 1 }, "uint64": func(v *allKinds) { v.U64 = 1 << 63 },
		"uint": func(v *allKinds) { v.U = 1 }, "uintptr": func(v *allKinds) { v.P = 1 },
		"float32": func(v *allKinds) { v.F32 = 0.5 }, "float64": func(v *allKinds) { v.F64 = 0.25 },
		"complex64": func(v *allKinds) { v.C64 = 1i }, "complex128": func(v *allKinds) { v.C = 2 + 1i },
		"string": func(v *allKinds) { v.S = "t" }, "array element": func(v *allKinds) { v.A[2] = 9 },
		"nested string": func(v *allKinds) { v.N.X = "y" }, "nested array": func(v *allKinds) { v.N.Y[1] = true },
	} {
		assert.True(t, changedAfter(t, base, mutate), name)
	}
	assert.False(t, changedAfter(t, base, func(v *allKinds) { v.S = string([]byte("s")) }), "equal content in a new string is no change")
	assert.False(t, changedAfter(t, base, func(*allKinds) {}), "untouched")
}

func TestFloatsCompareByBits(t *testing.T) {
	nan := struct{ F float64 }{math.NaN()}
	assert.False(t, changedAfter(t, nan, func(*struct{ F float64 }) {}), "an unchanged NaN is no change")
	assert.True(t, changedAfter(t, struct{ F float64 }{0}, func(v *struct{ F float64 }) { v.F = math.Copysign(0, -1) }), "-0 differs from +0")
}

func TestTypesWithReferencesAreNotFlat(t *testing.T) {
	assert.False(t, opsFor[struct{ P *int }]().ops.flat)
	assert.False(t, opsFor[struct{ M map[string]int }]().ops.flat)
	assert.False(t, opsFor[[]int]().ops.flat)
	assert.False(t, opsFor[struct{ A any }]().ops.flat)
	assert.False(t, opsFor[[2]*int]().ops.flat)
	assert.False(t, opsFor[time.Time]().ops.flat, "time.Time holds a *Location")
	assert.True(t, opsFor[struct{}]().ops.flat)
}

func TestDeepChangeDetection(t *testing.T) {
	type inner struct{ N int }
	type withRefs struct {
		Items  map[string]int
		Hidden []int `json:"-"`
		Any    any
		Ptr    *inner
		secret []string
	}
	// A fresh value per case: the mutations reach through shared references.
	v := func() withRefs {
		return withRefs{Items: map[string]int{"a": 1}, Any: map[string]any{"n": 1}, Ptr: &inner{1}, secret: []string{"s"}}
	}
	for name, mutate := range map[string]func(*withRefs){
		"map entry added":        func(v *withRefs) { v.Items["b"] = 2 },
		"field JSON skips":       func(v *withRefs) { v.Hidden = []int{1} },
		"unexported slice":       func(v *withRefs) { v.secret[0] = "t" },
		"dynamic type":           func(v *withRefs) { v.Any.(map[string]any)["n"] = int64(1) },
		"through a pointer":      func(v *withRefs) { v.Ptr.N = 2 },
		"nil to empty map":       func(v *withRefs) { v.Items = nil },
		"interface to nil":       func(v *withRefs) { v.Any = nil },
		"pointer to nil pointer": func(v *withRefs) { v.Ptr = nil },
	} {
		assert.True(t, changedAfter(t, v(), mutate), name)
	}
	assert.False(t, changedAfter(t, v(), func(v *withRefs) { v.Items["a"] = 1 }), "same value again")
	assert.False(t, changedAfter(t, v(), func(v *withRefs) { v.Ptr = &inner{1} }), "equal pointee")

	_, err := opsFor[struct{ C chan int }]().clone(&struct{ C chan int }{make(chan int)})
	assert.ErrorIs(t, err, errUncopyable, "a value that cannot be copied is an error, not a panic")
}

func TestByteSlicesCopyAndCompare(t *testing.T) {
	ops := opsFor[[]byte]()
	orig := []byte("abc")
	c, err := ops.clone(&orig)
	require.NoError(t, err)
	c[0] = 'X'
	assert.Equal(t, "abc", string(orig), "clone shares no memory")

	assert.True(t, changedAfter(t, []byte("abc"), func(v *[]byte) { (*v)[1] = 'Z' }), "in-place change")
	assert.False(t, changedAfter(t, []byte("abc"), func(*[]byte) {}))
	assert.True(t, changedAfter(t, []byte(nil), func(v *[]byte) { *v = []byte{} }), "nil to empty")
}
