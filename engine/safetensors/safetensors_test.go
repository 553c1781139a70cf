package safetensors

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

const fixture = "testdata/reference.safetensors"

// TestReferenceVectors checks Encode against byte strings from the
// reference implementation's own test suite (huggingface/safetensors,
// tensor.rs: test_serialization, test_empty).
func TestReferenceVectors(t *testing.T) {
	le := func(n uint64) string {
		var b [8]byte
		binary.LittleEndian.PutUint64(b[:], n)
		return string(b[:])
	}
	f32s := func(vs ...float32) string {
		var b bytes.Buffer
		binary.Write(&b, binary.LittleEndian, vs)
		return b.String()
	}
	tests := []struct {
		name     string
		tensors  []Tensor
		metadata map[string]string
		want     string
	}{
		{
			name:    "one tensor",
			tensors: []Tensor{{Name: "attn.0", DType: F32, Shape: []int{1, 2, 3}, F32: []float32{0, 1, 2, 3, 4, 5}}},
			want:    le(64) + `{"attn.0":{"dtype":"F32","shape":[1,2,3],"data_offsets":[0,24]}}` + f32s(0, 1, 2, 3, 4, 5),
		},
		{
			name:    "forced alignment",
			tensors: []Tensor{{Name: "attn0", DType: F32, Shape: []int{1, 1, 2, 3}, F32: []float32{0, 1, 2, 3, 4, 5}}},
			want:    le(72) + `{"attn0":{"dtype":"F32","shape":[1,1,2,3],"data_offsets":[0,24]}}       ` + f32s(0, 1, 2, 3, 4, 5),
		},
		{name: "empty", want: le(8) + "{}      "},
		{
			name:     "empty with metadata",
			metadata: map[string]string{"framework": "pt"},
			want:     le(40) + `{"__metadata__":{"framework":"pt"}}     `,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var b bytes.Buffer
			if err := Encode(&b, tc.tensors, tc.metadata); err != nil {
				t.Fatal(err)
			}
			if b.String() != tc.want {
				t.Errorf("got  %q\nwant %q", b.String(), tc.want)
			}
		})
	}
}

// TestFixtureByteCompatible reads the torch-written fixture and writes its
// tensors back: the result must be byte-identical, which checks header
// parsing, dtype decoding, ordering, JSON formatting and padding at once.
func TestFixtureByteCompatible(t *testing.T) {
	want, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	f, err := Open(fixture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var tensors []Tensor
	for _, name := range f.Names() {
		info, _ := f.Info(name)
		tt := Tensor{Name: name, DType: info.DType, Shape: info.Shape}
		if IsFloat(info.DType) {
			tt.F32, _, err = f.Float32(name)
		} else {
			tt.I64, _, err = f.Int64s(name)
		}
		if err != nil {
			t.Fatal(err)
		}
		tensors = append(tensors, tt)
	}
	var got bytes.Buffer
	if err := Encode(&got, tensors, f.Metadata()); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got.Bytes(), want) {
		g := got.Bytes()
		i := 0
		for i < min(len(g), len(want)) && g[i] == want[i] {
			i++
		}
		n := int(binary.LittleEndian.Uint64(want))
		t.Fatalf("re-encoded fixture differs from byte %d (data offset %d; lengths %d, %d)\n got header %q\nwant header %q",
			i, i-8-n, len(g), len(want), g[8:8+n], want[8:8+n])
	}
}

func TestFixtureContents(t *testing.T) {
	f, err := Open(fixture)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	wantNames := []string{"as_bf16", "as_f16", "empty", "f32_src", "f64", "i16", "i32", "i64", "i8", "mask", "model.layers.0.weight", "scalar", "u8"}
	if got := f.Names(); !reflect.DeepEqual(got, wantNames) {
		t.Errorf("Names() = %v, want %v", got, wantNames)
	}
	if md := f.Metadata(); md["format"] != "pt" || md["note"] != "gotune fixture \"quoted\"\tü" {
		t.Errorf("Metadata() = %q", md)
	}
	// Integer values as gen_fixture.py defines them.
	ints := map[string][]int64{
		"i64":  {-(1 << 62), -1, 0, 1<<62 + 5},
		"i32":  {math.MinInt32, -7, 0, math.MaxInt32},
		"i16":  {-32768, 32767, 5},
		"i8":   {-128, 127, -1},
		"u8":   {0, 255, 17},
		"mask": {1, 0, 1},
	}
	for name, want := range ints {
		got, _, err := f.Int64s(name)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Errorf("%s = %v, want %v", name, got, want)
		}
	}
	if v, shape, err := f.Float32("scalar"); err != nil || len(shape) != 0 || len(v) != 1 || v[0] != 2.5 {
		t.Errorf("scalar = %v %v %v, want [2.5] []", v, shape, err)
	}
	if v, shape, err := f.Float32("empty"); err != nil || !reflect.DeepEqual(shape, []int{0, 4}) || len(v) != 0 {
		t.Errorf("empty = %v %v %v", v, shape, err)
	}
	if info, ok := f.Info("model.layers.0.weight"); !ok || info.DType != F32 || !reflect.DeepEqual(info.Shape, []int{3, 5}) || info.End-info.Begin != 60 {
		t.Errorf("Info = %+v %v", info, ok)
	}
	// torch's conversions of f32_src must equal ours, bit for bit (NaN
	// payloads apart: torch's vectorized bfloat16 path makes 0xffff).
	src, _, err := f.Float32("f32_src")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name   string
		conv   func(float32) uint16
		decode func(uint16) float32
	}{{"as_f16", F32ToF16, F16ToF32}, {"as_bf16", F32ToBF16, BF16ToF32}} {
		raw, err := f.Raw(c.name)
		if err != nil {
			t.Fatal(err)
		}
		for i, x := range src {
			want := binary.LittleEndian.Uint16(raw[2*i:])
			got := c.conv(x)
			if math.IsNaN(float64(x)) {
				if !math.IsNaN(float64(c.decode(got))) {
					t.Errorf("%s: NaN converted to %#04x", c.name, got)
				}
				continue
			}
			if got != want {
				t.Errorf("%s[%d]: ours(%g) = %#04x, torch %#04x", c.name, i, x, got, want)
			}
		}
	}
}

// randTensor makes a tensor of dtype with random data of the right kind.
func randTensor(rng *rand.Rand, name, dtype string, shape []int) Tensor {
	n := 1
	for _, d := range shape {
		n *= d
	}
	t := Tensor{Name: name, DType: dtype, Shape: shape}
	if IsFloat(dtype) {
		t.F32 = make([]float32, n)
		for i := range t.F32 {
			t.F32[i] = float32(rng.NormFloat64() * math.Pow(10, float64(rng.Intn(8)-4)))
		}
		return t
	}
	lo, hi := intRange(dtype)
	t.I64 = make([]int64, n)
	for i := range t.I64 {
		switch i {
		case 0:
			t.I64[i] = lo
		case 1:
			t.I64[i] = hi
		default:
			u := rng.Uint64()
			if span := uint64(hi - lo); span != math.MaxUint64 {
				u %= span + 1
			}
			t.I64[i] = lo + int64(u)
		}
	}
	return t
}

func TestRoundTripEveryDType(t *testing.T) {
	rng := rand.New(rand.NewSource(1))
	var tensors []Tensor
	for _, dt := range []string{F32, F16, BF16, F64, I64, I32, I16, I8, U8, U16, U32, U64, BOOL} {
		tensors = append(tensors,
			randTensor(rng, "t."+dt, dt, []int{3, 7}),
			randTensor(rng, "big."+dt, dt, []int{300_001}), // spans several read chunks
			randTensor(rng, "scalar."+dt, dt, nil),
			Tensor{Name: "empty." + dt, DType: dt, Shape: []int{0, 5}},
		)
	}
	tensors = append(tensors, Tensor{Name: "raw", DType: F8E4M3, Shape: []int{4}, Raw: []byte{1, 2, 3, 4}})
	path := filepath.Join(t.TempDir(), "rt.safetensors")
	md := map[string]string{"format": "pt", "step": "3"}
	if err := Write(path, tensors, md); err != nil {
		t.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if got := f.Metadata(); !reflect.DeepEqual(got, md) {
		t.Errorf("metadata = %v, want %v", got, md)
	}
	if len(f.Names()) != len(tensors) {
		t.Errorf("%d names, want %d", len(f.Names()), len(tensors))
	}
	for _, want := range tensors {
		info, ok := f.Info(want.Name)
		if !ok || info.DType != want.DType || info.Numel() != max(len(want.F32), len(want.I64), len(want.Raw)) {
			t.Errorf("%s: info %+v", want.Name, info)
			continue
		}
		// Data offsets must be aligned to the element size (the point of
		// ordering by alignment and padding the header).
		if size, _ := DTypeSize(info.DType); info.Begin%int64(size) != 0 {
			t.Errorf("%s: begin %d not aligned to %d", want.Name, info.Begin, size)
		}
		switch {
		case want.Raw != nil:
			got, err := f.Raw(want.Name)
			if err != nil || !bytes.Equal(got, want.Raw) {
				t.Errorf("%s: raw %v %v", want.Name, got, err)
			}
		case IsFloat(want.DType):
			got, shape, err := f.Float32(want.Name)
			if err != nil {
				t.Fatal(err)
			}
			if len(shape) != len(want.Shape) {
				t.Errorf("%s: shape %v, want %v", want.Name, shape, want.Shape)
			}
			for i, x := range want.F32 {
				exp := x
				switch want.DType {
				case F16:
					exp = F16ToF32(F32ToF16(x))
				case BF16:
					exp = BF16ToF32(F32ToBF16(x))
				}
				if got[i] != exp {
					t.Fatalf("%s[%d] = %v, want %v", want.Name, i, got[i], exp)
				}
			}
		default:
			got, _, err := f.Int64s(want.Name)
			if err != nil {
				t.Fatal(err)
			}
			if len(want.I64) > 0 && !reflect.DeepEqual(got, want.I64) {
				t.Errorf("%s: ints differ", want.Name)
			}
		}
	}
	// Reading with the wrong accessor is an error naming the tensor.
	if _, _, err := f.Float32("t.I32"); err == nil || !strings.Contains(err.Error(), `"t.I32"`) {
		t.Errorf("Float32 of I32: %v", err)
	}
	if _, _, err := f.Int64s("t.F32"); err == nil || !strings.Contains(err.Error(), `"t.F32"`) {
		t.Errorf("Int64s of F32: %v", err)
	}
	if _, _, err := f.Float32("nope"); err == nil || !strings.Contains(err.Error(), path) {
		t.Errorf("missing tensor: %v", err)
	}
}

func TestWriteRejects(t *testing.T) {
	tests := []struct {
		name    string
		tensors []Tensor
		md      map[string]string
		want    string
	}{
		{"duplicate", []Tensor{{Name: "a", DType: F32, Shape: []int{1}, F32: []float32{1}}, {Name: "a", DType: F32, Shape: []int{1}, F32: []float32{1}}}, nil, `"a" given twice`},
		{"length", []Tensor{{Name: "a", DType: F32, Shape: []int{2, 2}, F32: []float32{1}}}, nil, `tensor "a": F32 has 1 values but shape [2 2] has 4`},
		{"raw length", []Tensor{{Name: "a", DType: BF16, Shape: []int{2}, Raw: []byte{1}}}, nil, `tensor "a": Raw has 1 bytes`},
		{"unknown dtype", []Tensor{{Name: "a", DType: "F128", Shape: []int{1}, F32: []float32{1}}}, nil, `tensor "a": unknown dtype "F128"`},
		{"float to int", []Tensor{{Name: "a", DType: I32, Shape: []int{1}, F32: []float32{1}}}, nil, `cannot be stored as I32`},
		{"out of range", []Tensor{{Name: "a", DType: I8, Shape: []int{2}, I64: []int64{1, 200}}}, nil, `element 1 = 200 does not fit I8`},
		{"bool", []Tensor{{Name: "m", DType: BOOL, Shape: []int{1}, I64: []int64{2}}}, nil, `does not fit BOOL`},
		{"no data", []Tensor{{Name: "a", DType: F32, Shape: []int{1}}}, nil, `exactly one of`},
		{"two sources", []Tensor{{Name: "a", DType: F32, Shape: []int{1}, F32: []float32{1}, Raw: []byte{0, 0, 0, 0}}}, nil, `exactly one of`},
		{"reserved name", []Tensor{{Name: "__metadata__", DType: F32, Shape: []int{1}, F32: []float32{1}}}, nil, `invalid tensor name`},
		{"negative shape", []Tensor{{Name: "a", DType: F32, Shape: []int{-1}, F32: []float32{}}}, nil, `negative dimension`},
		{"bad metadata", nil, map[string]string{"k": "\xff"}, `not valid UTF-8`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "w.safetensors")
			err := Write(path, tc.tensors, tc.md)
			if err == nil || !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), path) {
				t.Fatalf("error = %v, want one containing %q and the path", err, tc.want)
			}
			if _, statErr := os.Stat(path); !os.IsNotExist(statErr) {
				t.Errorf("file written despite error")
			}
		})
	}
}

// build assembles a safetensors file from a header string and data length.
func build(header string, n uint64, data int) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, n)
	b.WriteString(header)
	b.Write(make([]byte, data))
	return b.Bytes()
}

func hdr(h string) (string, uint64) { return h, uint64(len(h)) }

func TestOpenRejectsCorruption(t *testing.T) {
	good := `{"a":{"dtype":"F32","shape":[2,2],"data_offsets":[0,16]},"b":{"dtype":"F32","shape":[3],"data_offsets":[16,28]}}`
	valid := func() []byte { h, n := hdr(good); return build(h, n, 28) }
	tests := []struct {
		name   string
		file   []byte
		tensor string // tensor the error must name ("" for file-level errors)
		want   string
	}{
		{"truncated data", valid()[:len(valid())-5], "b", "end beyond the data section, which has 23 bytes"},
		{"header length beyond file", build(good, 10_000, 0), "", "header length 10000 goes beyond the end of the file"},
		{"header length absurd", build("", 1<<40, 0), "", "exceeds the 100000000-byte limit"},
		{"shorter than length field", []byte{1, 2, 3}, "", "too short"},
		{"bad JSON", func() []byte { h, n := hdr(`{"a":{"dtype":"F32",}`); return build(h, n, 0) }(), "", "malformed JSON header at byte"},
		{"not an object", func() []byte { h, n := hdr(`[1,2]`); return build(h, n, 0) }(), "", "not a JSON object"},
		{"trailing garbage", func() []byte { h, n := hdr(good + ` x`); return build(h, n, 28) }(), "", "unexpected data after the header"},
		{"invalid UTF-8", func() []byte { h, n := hdr("{\"\xff\":1}"); return build(h, n, 0) }(), "", "not valid UTF-8"},
		{"offsets shape mismatch", func() []byte {
			h, n := hdr(`{"x":{"dtype":"F32","shape":[10,100],"data_offsets":[0,4096]}}`)
			return build(h, n, 4096)
		}(), "x", "data_offsets [0 4096] need 4096 bytes but shape [10 100] of F32 needs 4000"},
		{"overlapping", func() []byte {
			h, n := hdr(`{"a":{"dtype":"F32","shape":[4],"data_offsets":[0,16]},"b":{"dtype":"F16","shape":[4],"data_offsets":[8,16]}}`)
			return build(h, n, 16)
		}(), "b", `overlap tensor "a"`},
		{"unknown dtype", func() []byte {
			h, n := hdr(`{"w":{"dtype":"F128","shape":[1],"data_offsets":[0,16]}}`)
			return build(h, n, 16)
		}(), "w", `unknown dtype "F128"`},
		{"negative shape", func() []byte {
			h, n := hdr(`{"w":{"dtype":"F32","shape":[-1],"data_offsets":[0,0]}}`)
			return build(h, n, 0)
		}(), "w", "dimension 0 is out of range"},
		{"fractional shape", func() []byte {
			h, n := hdr(`{"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,4]}}`)
			return build(h, n, 4)
		}(), "w", "wrong type"},
		{"huge shape", func() []byte {
			h, n := hdr(`{"w":{"dtype":"F32","shape":[4294967296,4294967296],"data_offsets":[0,4]}}`)
			return build(h, n, 4)
		}(), "w", "too large"},
		{"begin after end", func() []byte {
			h, n := hdr(`{"w":{"dtype":"F32","shape":[0],"data_offsets":[8,4]}}`)
			return build(h, n, 8)
		}(), "w", "not a byte range"},
		{"missing offsets", func() []byte {
			h, n := hdr(`{"w":{"dtype":"F32","shape":[1]}}`)
			return build(h, n, 4)
		}(), "w", `missing "data_offsets"`},
		{"three offsets", func() []byte {
			h, n := hdr(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4,8]}}`)
			return build(h, n, 8)
		}(), "w", "must be [begin, end]"},
		{"duplicate key", func() []byte {
			h, n := hdr(`{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"w":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}`)
			return build(h, n, 8)
		}(), "w", "twice"},
		{"metadata not strings", func() []byte {
			h, n := hdr(`{"__metadata__":{"k":1}}`)
			return build(h, n, 0)
		}(), "", "must map strings to strings"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "model.safetensors")
			if err := os.WriteFile(path, tc.file, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err := Open(path)
			if err == nil {
				f.Close()
				t.Fatal("Open succeeded")
			}
			msg := err.Error()
			if !strings.Contains(msg, path) || !strings.Contains(msg, tc.want) {
				t.Errorf("error %q\nwant it to name %s and contain %q", msg, path, tc.want)
			}
			if tc.tensor != "" && !strings.Contains(msg, `tensor "`+tc.tensor+`"`) {
				t.Errorf("error %q does not name tensor %q", msg, tc.tensor)
			}
		})
	}
	// The unmodified file opens, and gaps between tensors are tolerated.
	for name, file := range map[string][]byte{
		"valid": valid(),
		"gap": func() []byte {
			h, n := hdr(`{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}}`)
			return build(h, n, 12)
		}(),
	} {
		path := filepath.Join(t.TempDir(), name+".safetensors")
		os.WriteFile(path, file, 0o644)
		f, err := Open(path)
		if err != nil {
			t.Errorf("%s: %v", name, err)
			continue
		}
		f.Close()
	}
}

func TestOpenMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "absent.safetensors")
	if _, err := Open(path); err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error = %v", err)
	}
}

func writeIndex(t *testing.T, dir string, weightMap map[string]string) {
	t.Helper()
	data, _ := json.Marshal(map[string]any{"metadata": map[string]any{"total_size": 1}, "weight_map": weightMap})
	if err := os.WriteFile(filepath.Join(dir, IndexFile), data, 0o644); err != nil {
		t.Fatal(err)
	}
}

func TestOpenDirSharded(t *testing.T) {
	one := func(name string, v float32) Tensor {
		return Tensor{Name: name, DType: F32, Shape: []int{1}, F32: []float32{v}}
	}
	setup := func(t *testing.T) string {
		dir := t.TempDir()
		if err := Write(filepath.Join(dir, "model-00001-of-00002.safetensors"), []Tensor{one("a", 1), one("b", 2)}, nil); err != nil {
			t.Fatal(err)
		}
		if err := Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), []Tensor{{Name: "c", DType: BF16, Shape: []int{2}, F32: []float32{3, 4}}}, nil); err != nil {
			t.Fatal(err)
		}
		return dir
	}
	good := map[string]string{"a": "model-00001-of-00002.safetensors", "b": "model-00001-of-00002.safetensors", "c": "model-00002-of-00002.safetensors"}

	t.Run("ok", func(t *testing.T) {
		dir := setup(t)
		writeIndex(t, dir, good)
		s, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if got := s.Names(); !reflect.DeepEqual(got, []string{"a", "b", "c"}) {
			t.Errorf("Names = %v", got)
		}
		if v, shape, err := s.Float32("c"); err != nil || !reflect.DeepEqual(v, []float32{3, 4}) || !reflect.DeepEqual(shape, []int{2}) {
			t.Errorf("c = %v %v %v", v, shape, err)
		}
		if info, ok := s.Info("c"); !ok || info.DType != BF16 {
			t.Errorf("Info(c) = %+v", info)
		}
		if len(s.Files()) != 2 || filepath.Base(s.FileOf("a").Path()) != "model-00001-of-00002.safetensors" {
			t.Errorf("files %v", s.Files())
		}
		if _, _, err := s.Float32("zzz"); err == nil || !strings.Contains(err.Error(), `"zzz"`) {
			t.Errorf("missing tensor: %v", err)
		}
	})

	bad := []struct {
		name string
		wm   map[string]string
		want string
	}{
		{"missing shard", map[string]string{"a": "model-00001-of-00002.safetensors", "d": "model-00003-of-00003.safetensors"}, `weight "d" maps to shard "model-00003-of-00003.safetensors", which is missing`},
		{"weight not in shard", map[string]string{"a": "model-00001-of-00002.safetensors", "z": "model-00002-of-00002.safetensors"}, `weight "z" maps to shard "model-00002-of-00002.safetensors", which has no such tensor`},
		{"weight in other shard", map[string]string{"a": "model-00002-of-00002.safetensors", "c": "model-00002-of-00002.safetensors", "b": "model-00001-of-00002.safetensors"}, `weight "a" maps to shard "model-00002-of-00002.safetensors" but is stored in`},
		{"escaping path", map[string]string{"a": "../model-00001-of-00002.safetensors"}, `not a file name inside the model directory`},
		{"empty map", map[string]string{}, `missing or empty "weight_map"`},
	}
	for _, tc := range bad {
		t.Run(tc.name, func(t *testing.T) {
			dir := setup(t)
			writeIndex(t, dir, tc.wm)
			s, err := OpenDir(dir)
			if err == nil {
				s.Close()
				t.Fatal("OpenDir succeeded")
			}
			if !strings.Contains(err.Error(), tc.want) || !strings.Contains(err.Error(), IndexFile) {
				t.Errorf("error %q, want it to contain %q and name the index", err, tc.want)
			}
		})
	}

	t.Run("duplicate across shards", func(t *testing.T) {
		dir := setup(t)
		Write(filepath.Join(dir, "model-00002-of-00002.safetensors"), []Tensor{one("a", 9)}, nil)
		writeIndex(t, dir, map[string]string{"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"})
		if s, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), `tensor "a" is in both`) {
			if s != nil {
				s.Close()
			}
			t.Errorf("error = %v", err)
		}
	})
	t.Run("malformed index", func(t *testing.T) {
		dir := t.TempDir()
		os.WriteFile(filepath.Join(dir, IndexFile), []byte(`{"weight_map": [`), 0o644)
		if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), IndexFile) {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("nothing there", func(t *testing.T) {
		dir := t.TempDir()
		if _, err := OpenDir(dir); err == nil || !strings.Contains(err.Error(), "no model.safetensors") {
			t.Errorf("error = %v", err)
		}
	})
	t.Run("single file wins", func(t *testing.T) {
		dir := setup(t)
		writeIndex(t, dir, map[string]string{"x": "gone.safetensors"}) // would fail if used
		if err := Write(filepath.Join(dir, SingleFile), []Tensor{one("w", 5)}, nil); err != nil {
			t.Fatal(err)
		}
		s, err := OpenDir(dir)
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if v, _, err := s.Float32("w"); err != nil || v[0] != 5 {
			t.Errorf("w = %v %v", v, err)
		}
	})
}

func BenchmarkFloat32BF16(b *testing.B) {
	rng := rand.New(rand.NewSource(1))
	tt := randTensor(rng, "w", BF16, []int{1024, 1024})
	path := filepath.Join(b.TempDir(), "b.safetensors")
	if err := Write(path, []Tensor{tt}, nil); err != nil {
		b.Fatal(err)
	}
	f, err := Open(path)
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	b.SetBytes(2 << 20)
	for b.Loop() {
		if _, _, err := f.Float32("w"); err != nil {
			b.Fatal(err)
		}
	}
}
