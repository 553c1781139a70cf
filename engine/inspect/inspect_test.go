package inspect

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/gguf"
	"github.com/gotune/gotune/engine/safetensors"
)

func setting(r *Report, key string) string {
	for _, s := range r.Config {
		if s.Key == key {
			return s.Value
		}
	}
	return ""
}

func TestModel(t *testing.T) {
	r, err := Inspect("../../testdata/demo")
	require.NoError(t, err)
	assert.Equal(t, KindModel, r.Kind)
	assert.Equal(t, "LlamaForCausalLM", r.Architecture)
	// 259×128 tied embedding + 4 layers × (2 norms + q,o 128² + k,v 64×128 + 3 MLP 384×128) + final norm.
	want := int64(259*128 + 4*(2*128+2*128*128+2*64*128+3*384*128) + 128)
	assert.Equal(t, want, r.Parameters)
	assert.Equal(t, map[string]int64{"BF16": want}, r.DTypes)
	assert.Equal(t, "4", setting(r, "num_hidden_layers"))
	assert.Equal(t, `"bfloat16"`, setting(r, "torch_dtype"))
	assert.Len(t, r.Tensors, 1+4*9+1)
	assert.Equal(t, 5, r.Files)
	assert.Greater(t, r.SizeBytes, 2*want)
}

// writeAdapter writes a two-tensor LoRA adapter on testdata/tiny/llama.
func writeAdapter(t *testing.T, dir string) {
	base, err := filepath.Abs("../../testdata/tiny/llama")
	require.NoError(t, err)
	require.NoError(t, os.MkdirAll(dir, 0o755))
	cfg := `{"peft_type": "LORA", "r": 4, "lora_alpha": 8, "target_modules": ["q_proj"], "base_model_name_or_path": "` + base + `"}`
	require.NoError(t, os.WriteFile(filepath.Join(dir, "adapter_config.json"), []byte(cfg), 0o644))
	require.NoError(t, safetensors.Write(filepath.Join(dir, "adapter_model.safetensors"), []safetensors.Tensor{
		{Name: "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", DType: "F32", Shape: []int{4, 64}, F32: make([]float32, 256)},
		{Name: "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", DType: "F32", Shape: []int{64, 4}, F32: make([]float32, 256)},
	}, nil))
}

func TestAdapterAndCheckpoint(t *testing.T) {
	base, err := Inspect("../../testdata/tiny/llama")
	require.NoError(t, err)
	dir := t.TempDir()
	writeAdapter(t, dir)
	r, err := Inspect(dir)
	require.NoError(t, err)
	assert.Equal(t, KindAdapter, r.Kind)
	assert.Equal(t, "LORA", r.Architecture)
	assert.Equal(t, int64(512), r.Parameters)
	assert.Equal(t, base.Parameters, r.BaseParameters)
	assert.InDelta(t, 512/float64(base.Parameters+512), r.TrainableShare, 1e-12)
	assert.Equal(t, "4", setting(r, "r"))

	ckpt := filepath.Join(t.TempDir(), "checkpoint-7")
	writeAdapter(t, ckpt)
	require.NoError(t, os.WriteFile(filepath.Join(ckpt, "trainer_state.json"), []byte(`{"format": 1, "step": 7, "total_steps": 20}`), 0o644))
	c, err := Inspect(ckpt)
	require.NoError(t, err)
	assert.Equal(t, KindCheckpoint, c.Kind)
	assert.Equal(t, "7", setting(c, "step"))
	assert.Equal(t, "adapter", setting(c, "holds"))
	assert.Equal(t, int64(512), c.Parameters)
	require.NotNil(t, c.Inner)
	assert.Equal(t, KindAdapter, c.Inner.Kind)
}

func TestGGUF(t *testing.T) {
	path := filepath.Join(t.TempDir(), "m.gguf")
	require.NoError(t, gguf.WriteFile(path, &gguf.File{
		KV: []gguf.KV{{Key: "general.architecture", Value: "llama"}, {Key: "llama.block_count", Value: uint32(1)},
			{Key: "tokenizer.ggml.tokens", Value: gguf.Strings([]string{"a", "b"})}},
		Tensors: []gguf.Tensor{
			{Name: "token_embd.weight", Shape: []int{2, 32}, Type: gguf.Q8_0, Data: make([]float32, 64)},
			{Name: "output_norm.weight", Shape: []int{32}, Type: gguf.F32, Data: make([]float32, 32)},
		},
	}))
	r, err := Inspect(path)
	require.NoError(t, err)
	assert.Equal(t, KindGGUF, r.Kind)
	assert.Equal(t, "llama", r.Architecture)
	assert.Equal(t, int64(96), r.Parameters)
	assert.Equal(t, map[string]int64{"Q8_0": 64, "F32": 32}, r.DTypes)
	assert.Equal(t, `"[2 values]"`, setting(r, "tokenizer.ggml.tokens"))
	assert.Equal(t, "1", setting(r, "llama.block_count"))
	assert.Equal(t, []int64{2, 32}, r.Tensors[0].Shape)
}

func TestLlama2C(t *testing.T) {
	// dim 8, hidden 16, 1 layer, 2 heads, 1 KV head, vocab 10 (shared), seq 4.
	hdr := []int32{8, 16, 1, 2, 1, 10, 4}
	floats := 10*8 + 8 + 8*8 + 2*4*8 + 8*8 + 8 + 3*16*8 + 8 + 2*4*2
	b := make([]byte, 28+4*floats)
	for i, v := range hdr {
		binary.LittleEndian.PutUint32(b[4*i:], uint32(v))
	}
	path := filepath.Join(t.TempDir(), "m.bin")
	require.NoError(t, os.WriteFile(path, b, 0o644))
	r, err := Inspect(path)
	require.NoError(t, err)
	assert.Equal(t, KindLlama2C, r.Kind)
	assert.Equal(t, int64(floats-2*4*2), r.Parameters, "the RoPE tables are not parameters")
	assert.Equal(t, "true", setting(r, "shared_classifier"))
}

func TestRejects(t *testing.T) {
	dir := t.TempDir()
	junk := filepath.Join(dir, "junk.bin")
	require.NoError(t, os.WriteFile(junk, []byte("hello world, not a model at all"), 0o644))
	badGGUF := filepath.Join(dir, "bad.gguf")
	require.NoError(t, os.WriteFile(badGGUF, []byte("GGUF\x03\x00\x00\x00\xff\xff\xff\xff\xff\xff\xff\xff\x00\x00\x00\x00\x00\x00\x00\x00"), 0o644))
	badCkpt := filepath.Join(dir, "checkpoint-1")
	require.NoError(t, os.MkdirAll(badCkpt, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(badCkpt, "trainer_state.json"), []byte(`{"step": 1}`), 0o644))
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing"), "no such file"},
		{dir, "not a model, adapter or checkpoint folder"},
		{junk, "not a GGUF file and not a llama2.c checkpoint"},
		{badGGUF, "implausible counts"},
		{badCkpt, "holds neither a model"},
	} {
		_, err := Inspect(tc.path)
		require.ErrorContains(t, err, tc.want, tc.path)
	}
}
