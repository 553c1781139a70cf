package gguf

import (
	"bytes"
	"encoding/binary"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func sample(n int, seed uint64) []float32 {
	r := rand.New(rand.NewPCG(seed, 1))
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(r.NormFloat64())
	}
	return out
}

func TestRoundTrip(t *testing.T) {
	f := &File{
		KV: []KV{
			{"general.architecture", "llama"},
			{"llama.block_count", uint32(2)},
			{"llama.rope.freq_base", float32(10000)},
			{"tokenizer.ggml.add_bos_token", true},
			{"tokenizer.ggml.tokens", Strings([]string{"a", "b", "▁c"})},
			{"tokenizer.ggml.scores", Float32s([]float32{0, -1, -2})},
			{"tokenizer.ggml.token_type", Int32s([]int32{1, 1, 6})},
			{"x.u64", uint64(1) << 40},
			{"x.f64", 0.25},
		},
		Tensors: []Tensor{
			{Name: "a", Shape: []int{3, 5}, Type: F32, Data: sample(15, 1)},
			{Name: "b", Shape: []int{2, 64}, Type: Q8_0, Data: sample(128, 2)},
			{Name: "c", Shape: []int{7}, Type: F16, Data: sample(7, 3)},
			{Name: "d", Shape: []int{2, 3}, Type: BF16, Data: sample(6, 4)},
		},
	}
	var buf bytes.Buffer
	require.NoError(t, f.Encode(&buf))
	h, err := DecodeHeader(bytes.NewReader(buf.Bytes()))
	require.NoError(t, err)
	assert.Equal(t, uint32(Version), h.Version)
	require.Len(t, h.KV, len(f.KV))
	for i, kv := range f.KV {
		assert.Equal(t, kv, h.KV[i], kv.Key)
	}
	require.Len(t, h.Tensors, len(f.Tensors))
	assert.Zero(t, h.DataOffset%DefaultAlignment)
	data := buf.Bytes()
	for i, want := range f.Tensors {
		got := h.Tensors[i]
		assert.Equal(t, want.Name, got.Name)
		assert.Equal(t, want.Type, got.Type)
		assert.Zero(t, got.Offset%DefaultAlignment, "offset of %s", got.Name)
		for j, d := range want.Shape {
			assert.Equal(t, int64(d), got.Shape[j])
		}
		size, err := DataSize(got.Type, got.Elements())
		require.NoError(t, err)
		raw := data[h.DataOffset+int64(got.Offset):][:size]
		assert.Equal(t, encodeData(want), raw, "data of %s", got.Name)
	}
	// The F32 tensor's bytes are its values.
	raw := data[h.DataOffset:]
	for i, v := range f.Tensors[0].Data {
		assert.Equal(t, v, math.Float32frombits(binary.LittleEndian.Uint32(raw[4*i:])))
	}
}

func TestQ8_0(t *testing.T) {
	x := sample(4*QK8_0, 5)
	copy(x[QK8_0:2*QK8_0], make([]float32, QK8_0)) // an all-zero block
	q := quantizeQ8_0(nil, x)
	require.Len(t, q, 4*q8Block)
	back := dequantizeQ8_0(q)
	for b := 0; b < 4; b++ {
		var amax float64
		for _, v := range x[b*QK8_0 : (b+1)*QK8_0] {
			amax = math.Max(amax, math.Abs(float64(v)))
		}
		for i := b * QK8_0; i < (b+1)*QK8_0; i++ {
			// Half a quantization step, plus the float16 scale's rounding.
			assert.InDelta(t, x[i], back[i], amax/127/2+amax*1e-3, "element %d", i)
		}
	}
	assert.Equal(t, make([]float32, QK8_0), back[QK8_0:2*QK8_0])
	// The largest magnitude of a block is stored as ±127.
	assert.Equal(t, byte(127), maxAbsQuant(q[:q8Block]))
}

func maxAbsQuant(block []byte) byte {
	var m byte
	for _, q := range block[2:] {
		v := int8(q)
		if v < 0 {
			v = -v
		}
		m = max(m, byte(v))
	}
	return m
}

func TestWriteRejects(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		t    Tensor
		want string
	}{
		{"short data", Tensor{Name: "w", Shape: []int{2, 3}, Type: F32, Data: make([]float32, 5)}, "needs 6 values"},
		{"q8 rows", Tensor{Name: "w", Shape: []int{2, 20}, Type: Q8_0, Data: make([]float32, 40)}, "multiple of 32"},
		{"type", Tensor{Name: "w", Shape: []int{2}, Type: TensorType(99), Data: make([]float32, 2)}, "unsupported tensor type"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "x.gguf")
			err := WriteFile(path, &File{Tensors: []Tensor{tc.t}})
			require.ErrorContains(t, err, tc.want)
			_, statErr := os.Stat(path)
			assert.True(t, os.IsNotExist(statErr), "nothing written")
		})
	}
}

func TestDecodeRejects(t *testing.T) {
	var good bytes.Buffer
	require.NoError(t, (&File{KV: []KV{{"k", "v"}}, Tensors: []Tensor{{Name: "a", Shape: []int{4}, Type: F32, Data: make([]float32, 4)}}}).Encode(&good))
	b := good.Bytes()
	patch := func(off int, v uint64) []byte {
		c := append([]byte(nil), b...)
		binary.LittleEndian.PutUint64(c[off:], v)
		return c
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "ends early"},
		{"magic", append([]byte("GGML"), b[4:]...), "not a GGUF file"},
		{"version", append(append([]byte("GGUF"), 9, 0, 0, 0), b[8:]...), "unsupported GGUF version 9"},
		{"tensor count", patch(8, 1<<40), "implausible counts"},
		{"string length", patch(24, 1<<40), "implausibly long"},
		{"truncated", b[:40], "ends early"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := DecodeHeader(bytes.NewReader(tc.data))
			require.ErrorContains(t, err, tc.want)
		})
	}
}

func TestParseTensorType(t *testing.T) {
	for s, want := range map[string]TensorType{"f32": F32, "F16": F16, "bf16": BF16, "q8_0": Q8_0} {
		got, err := ParseTensorType(s)
		require.NoError(t, err)
		assert.Equal(t, want, got)
	}
	_, err := ParseTensorType("q4_0")
	assert.ErrorContains(t, err, "want F32, F16, BF16 or Q8_0")
}
