package quant

import (
	"math"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/safetensors"
)

// goldenFile holds testdata/golden/qlora.py's reimplementation of
// bitsandbytes' quantization on two matrices: codes, absmax and
// dequantized values of every format.
var goldenFile = filepath.Join("..", "..", "testdata", "golden", "qlora", "quant.safetensors")

func readGolden(t *testing.T) func(name string) ([]float32, []int) {
	t.Helper()
	f, err := safetensors.Open(goldenFile)
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	return func(name string) ([]float32, []int) {
		v, shape, err := f.Float32(name)
		require.NoError(t, err, name)
		return v, shape
	}
}

// requireBits fails unless got and want are bit-identical float32s.
func requireBits(t *testing.T, what string, got, want []float32) {
	t.Helper()
	require.Len(t, got, len(want), what)
	bad := 0
	for i := range want {
		if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] == 0 && want[i] == 0) {
			if bad < 5 {
				t.Errorf("%s[%d] = %v, golden %v", what, i, got[i], want[i])
			}
			bad++
		}
	}
	require.Zero(t, bad, "%s: %d of %d values differ", what, bad, len(want))
}

func bytesAsF32(b []byte) []float32 {
	out := make([]float32, len(b))
	for i, v := range b {
		out[i] = float32(v)
	}
	return out
}

// TestGolden quantizes the golden matrices in every format and requires
// the codes, absmax (plain or double-quantized) and dequantized values to
// equal the PyTorch reimplementation's bit for bit.
func TestGolden(t *testing.T) {
	get := readGolden(t)
	m := DynamicMap()
	want, _ := get("dynamic_map")
	requireBits(t, "dynamic map", m[:], want)
	for _, name := range []string{"a", "b"} {
		w, shape := get(name + ".w")
		rows, cols := shape[0], shape[1]
		for _, c := range []struct {
			key    string
			format Format
			double bool
		}{{"nf4", NF4, false}, {"nf4-dq", NF4, true}, {"fp4", FP4, false}, {"fp4-dq", FP4, true}} {
			key := name + "." + c.key
			t.Run(key, func(t *testing.T) {
				q, err := Quantize(w, rows, cols, Options{Format: c.format, DoubleQuant: c.double})
				require.NoError(t, err)
				packed, _ := get(key + ".packed")
				requireBits(t, "codes", bytesAsF32(q.Codes), packed)
				absmax, _ := get(key + ".absmax")
				requireBits(t, "absmax", q.Absmaxes(), absmax)
				if c.double {
					qa, _ := get(key + ".qabsmax")
					requireBits(t, "qabsmax", bytesAsF32(q.QAbsmax), qa)
					na, _ := get(key + ".nested_absmax")
					requireBits(t, "nested absmax", q.NestedAbsmax, na)
					off, _ := get(key + ".offset")
					requireBits(t, "offset", []float32{q.Offset}, off)
				}
				deq, _ := get(key + ".dequant")
				requireBits(t, "dequantized", q.Dequantize(), deq)
			})
		}
		t.Run(name+".int8", func(t *testing.T) {
			q, err := Quantize(w, rows, cols, Options{Format: Int8})
			require.NoError(t, err)
			codes, _ := get(name + ".int8.codes")
			got := make([]float32, len(q.Codes))
			for i, b := range q.Codes {
				got[i] = float32(int8(b))
			}
			requireBits(t, "codes", got, codes)
			absmax, _ := get(name + ".int8.absmax")
			requireBits(t, "absmax", q.Absmax, absmax)
			deq, _ := get(name + ".int8.dequant")
			requireBits(t, "dequantized", q.Dequantize(), deq)
		})
	}
}

// TestPacking checks bitsandbytes' nibble order on a hand-worked block
// (the first value of a pair in the high nibble) and an odd count.
func TestPacking(t *testing.T) {
	q, err := Quantize([]float32{0.5, -1, 1, 0, -0.5}, 1, 5, Options{Format: NF4})
	require.NoError(t, err)
	// NF4 codes 12 (0.5 is below the 0.4407/0.5626 midpoint), 0, 15, 7, 2.
	assert.Equal(t, []byte{0xC0, 0xF7, 0x20}, q.Codes)
	assert.Equal(t, []float32{1}, q.Absmax)
	for i, want := range []byte{12, 0, 15, 7, 2} {
		assert.Equal(t, want, q.CodeAt(i), "element %d", i)
	}
}

// TestZeroBlock: an all-zero block has absmax 0, normalises to NaN and
// codes as bitsandbytes' decision trees leave NaN (NF4 0, FP4 0); it
// dequantizes to zero.
func TestZeroBlock(t *testing.T) {
	for _, f := range []Format{NF4, FP4, Int8} {
		q, err := Quantize(make([]float32, 128), 2, 64, Options{Format: f})
		require.NoError(t, err)
		for _, v := range q.Dequantize() {
			require.Zero(t, v, "%v", f)
		}
	}
}

// TestBytesPerParameter: a 4-bit weight takes half a byte per value plus
// a float32 absmax per 64 values, or, double quantized, a byte per 64
// values and a float32 per 64·256; int8 a byte per value and a float32
// per row; each also keeps its code books (16 or 256 float32s).
func TestBytesPerParameter(t *testing.T) {
	const rows, cols = 512, 1024
	const n = rows * cols
	w := make([]float32, n)
	for i := range w {
		w[i] = float32(math.Sin(float64(i)))
	}
	for _, c := range []struct {
		o    Options
		want int
	}{
		{Options{Format: NF4}, n/2 + 4*n/64 + 4*16},
		{Options{Format: NF4, DoubleQuant: true}, n/2 + n/64 + 4*n/64/256 + 4*16 + 4*256 + 4},
		{Options{Format: FP4, DoubleQuant: true}, n/2 + n/64 + 4*n/64/256 + 4*16 + 4*256 + 4},
		{Options{Format: Int8}, n + 4*rows + 4*256},
	} {
		q, err := Quantize(w, rows, cols, c.o)
		require.NoError(t, err)
		t.Logf("%v double %v: %.4f bytes per parameter", c.o.Format, c.o.DoubleQuant, float64(q.Bytes())/n)
		assert.Equal(t, c.want, q.Bytes(), "%v double %v", c.o.Format, c.o.DoubleQuant)
	}
}

func TestParseFormat(t *testing.T) {
	for s, want := range map[string]Format{"": None, "none": None, "nf4": NF4, "FP4": FP4, "int8": Int8} {
		f, err := ParseFormat(s)
		require.NoError(t, err)
		assert.Equal(t, want, f)
	}
	_, err := ParseFormat("int4")
	assert.ErrorContains(t, err, `unknown quantization "int4"`)
}
