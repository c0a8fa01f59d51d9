package jsonfast

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"reflect"
	"strings"
	"testing"
	"time"
	"unsafe"
)

type fastAll struct {
	I   int
	I8  int8
	I16 int16
	I32 int32
	I64 int64
	U   uint
	U8  uint8
	U16 uint16
	U32 uint32
	U64 uint64
	B   bool
	S   string
	T   int    `json:"tagged"`
	O   string `json:"o,omitempty"`
	On  int    `json:",omitempty"`
	X   int    `json:"-"`
	//lint:ignore U1000 present only to show that neither codec touches it
	y int
}

type fastStep int

type withMarshaler struct{ D time.Duration } // a plain int64 kind: planned

type withTime struct{ T time.Time }

type withString struct {
	N int `json:",string"`
}

type counter struct{ Count int }

type withEmbedded struct{ counter }

type caseClash struct {
	A int
	B int `json:"a"`
}

type withSlice struct{ L []int }

func TestJSONPlanTypes(t *testing.T) {
	for _, c := range []struct {
		t    reflect.Type
		plan bool
	}{
		{reflect.TypeFor[counter](), true},
		{reflect.TypeFor[fastAll](), true},
		{reflect.TypeFor[withMarshaler](), true},
		{reflect.TypeFor[withTime](), false},
		{reflect.TypeFor[withString](), false},
		{reflect.TypeFor[withEmbedded](), false},
		{reflect.TypeFor[caseClash](), false},
		{reflect.TypeFor[withSlice](), false},
		{reflect.TypeFor[fastStep](), false},
		{reflect.TypeFor[map[string]int](), false},
	} {
		if got := jsonPlanOf(c.t) != nil; got != c.plan {
			t.Errorf("%v: plan %v, want %v", c.t, got, c.plan)
		}
	}
}

func randomFast(r *rand.Rand) fastAll {
	strs := []string{"", "a", "hello world", "<b>", "a\"b", "back\\slash", "tab\t", "ünï", "\u2028", "x,y", "{}", "\xff"}
	pick := func() int64 {
		switch r.IntN(4) {
		case 0:
			return 0
		case 1:
			return int64(r.IntN(100)) - 50
		case 2:
			return math.MinInt64
		}
		return r.Int64()
	}
	return fastAll{
		I: int(pick()), I8: int8(pick()), I16: int16(pick()), I32: int32(pick()), I64: pick(),
		U: uint(pick()), U8: uint8(pick()), U16: uint16(pick()), U32: uint32(pick()), U64: r.Uint64() >> r.IntN(64),
		B: r.IntN(2) == 0, S: strs[r.IntN(len(strs))], T: int(pick()), O: strs[r.IntN(len(strs))], On: int(pick()) % 2,
	}
}

// The fast codec must produce exactly encoding/json's bytes and values.
func TestJSONFastMatchesEncodingJSON(t *testing.T) {
	c := For[fastAll]()
	r := rand.New(rand.NewPCG(1, 2))
	for range 1000 {
		v := randomFast(r)
		want, err := json.Marshal(&v)
		if err != nil {
			t.Fatal(err)
		}
		got, err := c.Marshal(&v)
		if err != nil || string(got) != string(want) {
			t.Fatalf("marshal %+v:\n got %s\nwant %s", v, got, want)
		}
		checkDecode(t, c, want)
		// Mutations: each must decode as encoding/json decodes it.
		for _, m := range mutations(r, want) {
			checkDecode(t, c, m)
		}
	}
}

func mutations(r *rand.Rand, b []byte) [][]byte {
	s := string(b)
	out := []string{
		strings.Replace(s, ":", ": ", 1),
		strings.Replace(s, `"I"`, `"i"`, 1),
		strings.Replace(s, `"S":"`, `"S":"\u0041`, 1),
		strings.Replace(s, `"tagged":`, `"tagged":-0`, 1),
		strings.Replace(s, `"B":`, `"B":null,"B":`, 1),
		strings.Replace(s, `"U8":`, `"U8":1`, 1),
		strings.Replace(s, `"I8":`, `"I8":+`, 1),
		strings.Replace(s, `}`, `,"Z":1}`, 1),
		strings.Replace(s, `{`, `{"X":5,`, 1),
		strings.Replace(s, `"I":`, `"I":1e2,"J":`, 1),
		s[:len(s)-1],
		s + " ",
		`{}`,
		`{"I":1}`,
		`null`,
	}
	i := r.IntN(len(s))
	out = append(out, s[:i]+s[i+1:], s[:i]+"9"+s[i:])
	res := make([][]byte, len(out))
	for i, o := range out {
		res[i] = []byte(o)
	}
	return res
}

func checkDecode[T any](t *testing.T, c Codec[T], data []byte) {
	t.Helper()
	var want T
	wantErr := json.Unmarshal(data, &want)
	var got T
	if c.plan.decode(data, unsafe.Pointer(&got)) {
		if wantErr != nil || !reflect.DeepEqual(got, want) {
			t.Fatalf("fast decode of %s: got %+v, encoding/json %+v (%v)", data, got, want, wantErr)
		}
	}
	got = *new(T)
	err := c.Unmarshal(data, &got)
	if (err != nil) != (wantErr != nil) || (err == nil && !reflect.DeepEqual(got, want)) {
		t.Fatalf("unmarshal %s: got %+v (%v), encoding/json %+v (%v)", data, got, err, want, wantErr)
	}
}

func FuzzJSONFastDecode(f *testing.F) {
	f.Add([]byte(`{"I":1,"I8":0,"I16":0,"I32":0,"I64":0,"U":0,"U8":0,"U16":0,"U32":0,"U64":0,"B":false,"S":"","tagged":0}`))
	f.Add([]byte(`{"Count":12}`))
	fa, cnt := For[fastAll](), For[counter]()
	f.Fuzz(func(t *testing.T, data []byte) {
		checkDecode(t, fa, data)
		checkDecode(t, cnt, data)
	})
}
