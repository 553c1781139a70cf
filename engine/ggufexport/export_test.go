package ggufexport

import (
	"encoding/binary"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	parser "github.com/gpustack/gguf-parser-go"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/gguf"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/internal/ggufcheck"
)

const demoDir = "../../testdata/demo"

// export writes m with tok as GGUF and parses it back with gguf-parser-go,
// an independent reader.
func export(t *testing.T, m model.Model, tok tokenizer.Tokenizer, typ gguf.TensorType) (*parser.GGUFFile, string) {
	t.Helper()
	f, err := Build(m, tok, Options{Type: typ, Name: "test"})
	require.NoError(t, err)
	path := filepath.Join(t.TempDir(), "m.gguf")
	require.NoError(t, gguf.WriteFile(path, f))
	gf, err := parser.ParseGGUFFile(path)
	require.NoError(t, err)
	return gf, path
}

func loadDemo(t *testing.T) (model.Model, tokenizer.Tokenizer) {
	t.Helper()
	m, err := model.Load(demoDir, cpu.New())
	require.NoError(t, err)
	tok, err := tokenizer.Load(demoDir)
	require.NoError(t, err)
	return m, tok
}

func kv(t *testing.T, gf *parser.GGUFFile, key string) parser.GGUFMetadataKV {
	t.Helper()
	v, ok := gf.Header.MetadataKV.Get(key)
	require.True(t, ok, "metadata %s missing", key)
	return v
}

// tensorMap indexes the parsed tensor infos: name -> (dims innermost
// first, ggml type).
func tensorMap(gf *parser.GGUFFile) map[string]parser.GGUFTensorInfo {
	out := map[string]parser.GGUFTensorInfo{}
	for _, ti := range gf.TensorInfos {
		out[ti.Name] = ti
	}
	return out
}

func TestDemoLlama(t *testing.T) {
	m, tok := loadDemo(t)
	cfg := m.Config()
	for _, typ := range []gguf.TensorType{gguf.F32, gguf.BF16, gguf.Q8_0} {
		t.Run(typ.String(), func(t *testing.T) {
			gf, _ := export(t, m, tok, typ)
			assert.Equal(t, "llama", kv(t, gf, "general.architecture").ValueString())
			assert.Equal(t, uint32(cfg.Layers), kv(t, gf, "llama.block_count").ValueUint32())
			assert.Equal(t, uint32(cfg.Hidden), kv(t, gf, "llama.embedding_length").ValueUint32())
			assert.Equal(t, uint32(cfg.Intermediate), kv(t, gf, "llama.feed_forward_length").ValueUint32())
			assert.Equal(t, uint32(cfg.Heads), kv(t, gf, "llama.attention.head_count").ValueUint32())
			assert.Equal(t, uint32(cfg.KVHeads), kv(t, gf, "llama.attention.head_count_kv").ValueUint32())
			assert.Equal(t, uint32(cfg.MaxPos), kv(t, gf, "llama.context_length").ValueUint32())
			assert.Equal(t, float32(cfg.NormEps), kv(t, gf, "llama.attention.layer_norm_rms_epsilon").ValueFloat32())
			assert.Equal(t, float32(cfg.RopeTheta), kv(t, gf, "llama.rope.freq_base").ValueFloat32())

			tk := gf.Tokenizer()
			assert.Equal(t, "gpt2", tk.Model)
			assert.Equal(t, uint64(cfg.VocabSize), tk.TokensLength)
			assert.Equal(t, int64(tok.BOS()), tk.BOSTokenID)
			assert.Equal(t, int64(tok.EOS()), tk.EOSTokenID)
			assert.False(t, kv(t, gf, "tokenizer.ggml.add_bos_token").ValueBool())
			tokens := kv(t, gf, "tokenizer.ggml.tokens").ValueArray().ValuesString()
			assert.Equal(t, "<s>", tokens[256])
			assert.Equal(t, "a", tokens['a'])

			ts := tensorMap(gf)
			assert.Len(t, ts, 2+9*cfg.Layers, "embedding, final norm and 9 per layer; the tied head is left out")
			assert.NotContains(t, ts, "output.weight")
			emb := ts["token_embd.weight"]
			assert.Equal(t, []uint64{uint64(cfg.Hidden), uint64(cfg.VocabSize)}, emb.Dimensions)
			assert.Equal(t, []uint64{uint64(cfg.Hidden), uint64(cfg.KVHeads * cfg.HeadDim)}, ts["blk.0.attn_k.weight"].Dimensions)
			assert.Equal(t, []uint64{uint64(cfg.Intermediate), uint64(cfg.Hidden)}, ts["blk.3.ffn_down.weight"].Dimensions)
			assert.Equal(t, parser.GGMLType(typ), ts["blk.1.ffn_gate.weight"].Type)
			assert.Equal(t, parser.GGMLTypeF32, ts["blk.1.attn_norm.weight"].Type, "norms stay F32")
			assert.Equal(t, parser.GGMLTypeF32, ts["output_norm.weight"].Type)
		})
	}
}

func TestQwen2Variant(t *testing.T) {
	m, tok := loadDemo(t)
	q, err := ggufcheck.Qwen2FromLlama(m, cpu.New(), 1)
	require.NoError(t, err)
	gf, _ := export(t, q, tok, gguf.F16)
	assert.Equal(t, "qwen2", kv(t, gf, "general.architecture").ValueString())
	assert.Equal(t, "qwen2", kv(t, gf, "tokenizer.ggml.pre").ValueString())
	assert.Equal(t, uint32(1), kv(t, gf, "general.file_type").ValueUint32())
	ts := tensorMap(gf)
	for _, n := range []string{"blk.0.attn_q.bias", "blk.0.attn_k.bias", "blk.0.attn_v.bias"} {
		require.Contains(t, ts, n)
		assert.Equal(t, parser.GGMLTypeF32, ts[n].Type)
	}
	assert.NotContains(t, ts, "blk.0.attn_output.bias")
}

// readF32 reads an F32 tensor's values from a file written by gguf.
func readF32(t *testing.T, path, name string) []float32 {
	t.Helper()
	h, err := gguf.ReadHeader(path)
	require.NoError(t, err)
	raw, err := os.ReadFile(path)
	require.NoError(t, err)
	for _, ti := range h.Tensors {
		if ti.Name == name {
			require.Equal(t, gguf.F32, ti.Type)
			b := raw[h.DataOffset+int64(ti.Offset):]
			out := make([]float32, ti.Elements())
			for i := range out {
				out[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[4*i:]))
			}
			return out
		}
	}
	t.Fatalf("tensor %s not found", name)
	return nil
}

// A model in llama2.c's interleaved RoPE layout is exactly what ggml's
// RoPE expects, so its q/k rows must reach the file unchanged: gotune's
// HF layout conversion and the exporter's permutation are inverses.
func TestInterleavedRoundTrip(t *testing.T) {
	cfg, err := hfconfig.NewLlama(hfconfig.Sizes{VocabSize: 259, Hidden: 32, Layers: 1, Heads: 4, KVHeads: 2, Intermediate: 64, MaxPos: 16})
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(7, 7))
	w := map[string]model.HostTensor{}
	shapes := map[string][]int{
		"model.embed_tokens.weight": {259, 32}, "lm_head.weight": {259, 32}, "model.norm.weight": {32},
		"model.layers.0.input_layernorm.weight": {32}, "model.layers.0.post_attention_layernorm.weight": {32},
		"model.layers.0.self_attn.q_proj.weight": {32, 32}, "model.layers.0.self_attn.k_proj.weight": {16, 32},
		"model.layers.0.self_attn.v_proj.weight": {16, 32}, "model.layers.0.self_attn.o_proj.weight": {32, 32},
		"model.layers.0.mlp.gate_proj.weight": {64, 32}, "model.layers.0.mlp.up_proj.weight": {64, 32},
		"model.layers.0.mlp.down_proj.weight": {32, 64},
	}
	for n, s := range shapes {
		d := make([]float32, engine.Numel(s))
		for i := range d {
			d[i] = float32(r.NormFloat64())
		}
		w[n] = model.HostTensor{Shape: s, Data: d}
	}
	m, err := model.FromWeights(cfg, cpu.New(), w, model.Options{RopeLayout: engine.RopeInterleaved})
	require.NoError(t, err)
	_, tok := loadDemo(t)
	_, path := export(t, m, tok, gguf.F32)
	assert.Equal(t, w["model.layers.0.self_attn.q_proj.weight"].Data, readF32(t, path, "blk.0.attn_q.weight"))
	assert.Equal(t, w["model.layers.0.self_attn.k_proj.weight"].Data, readF32(t, path, "blk.0.attn_k.weight"))
	assert.Equal(t, w["lm_head.weight"].Data, readF32(t, path, "output.weight"))
}

func TestHalfToInterleaved(t *testing.T) {
	// One head of 4 rows of width 1: HF pairs (0,2), (1,3); ggml (0,1), (2,3).
	assert.Equal(t, []float32{10, 12, 11, 13, 20, 22, 21, 23},
		model.HalfToInterleaved([]float32{10, 11, 12, 13, 20, 21, 22, 23}, 4, 1))
}

func TestGPT2(t *testing.T) {
	cfg, err := hfconfig.NewGPT2(hfconfig.Sizes{VocabSize: 259, Hidden: 32, Layers: 1, Heads: 4, MaxPos: 16})
	require.NoError(t, err)
	m, err := model.New(cfg, cpu.New(), 3)
	require.NoError(t, err)
	_, tok := loadDemo(t)
	gf, path := export(t, m, tok, gguf.F32)
	assert.Equal(t, "gpt2", kv(t, gf, "general.architecture").ValueString())
	assert.Equal(t, float32(cfg.NormEps), kv(t, gf, "gpt2.attention.layer_norm_epsilon").ValueFloat32())
	ts := tensorMap(gf)
	assert.Equal(t, []uint64{32, 96}, ts["blk.0.attn_qkv.weight"].Dimensions, "Conv1D [in, out] stored as ggml's [out rows of in]")
	assert.Contains(t, ts, "position_embd.weight")
	assert.Contains(t, ts, "output_norm.bias")
	p, ok := m.Param("transformer.h.0.attn.c_attn.weight")
	require.True(t, ok)
	conv := m.Backend().Download(p.W) // [32 in, 96 out]
	got := readF32(t, path, "blk.0.attn_qkv.weight")
	assert.Equal(t, conv[1*96+5], got[5*32+1], "element (out 5, in 1)")
}

func TestBuildRejects(t *testing.T) {
	m, tok := loadDemo(t)
	_, err := Build(m, tok, Options{Type: gguf.TensorType(2)})
	assert.ErrorContains(t, err, "unsupported tensor type")

	cfg, err := hfconfig.NewGPT2(hfconfig.Sizes{VocabSize: 100, Hidden: 32, Layers: 1, Heads: 4, MaxPos: 16})
	require.NoError(t, err)
	small, err := model.New(cfg, cpu.New(), 3)
	require.NoError(t, err)
	_, err = Build(small, tok, Options{Type: gguf.F32})
	assert.ErrorContains(t, err, "the tokenizer has 259 tokens but the model's vocabulary has 100")
}

// TestPhi3Variant: Phi-3 keeps its fused projections (attn_qkv, ffn_up
// holding gate|up), writes the rotary dimension, the sliding window (0:
// none) and longrope's original context, attention factor and both
// factor tables, as llama.cpp's converter does.
func TestPhi3Variant(t *testing.T) {
	m, tok := loadDemo(t)
	p, err := ggufcheck.Phi3FromLlama(m, cpu.New(), 1)
	require.NoError(t, err)
	cfg := p.Config()
	gf, path := export(t, p, tok, gguf.F32)
	assert.Equal(t, "phi3", kv(t, gf, "general.architecture").ValueString())
	assert.Equal(t, uint32(cfg.RotaryDim()), kv(t, gf, "phi3.rope.dimension_count").ValueUint32())
	assert.Equal(t, uint32(0), kv(t, gf, "phi3.attention.sliding_window").ValueUint32())
	orig := cfg.RopeScaling.OriginalMaxPos
	assert.Equal(t, uint32(orig), kv(t, gf, "phi3.rope.scaling.original_context_length").ValueUint32())
	assert.Equal(t, uint32(cfg.MaxPos), kv(t, gf, "phi3.context_length").ValueUint32())
	assert.InDelta(t, math.Sqrt(1+math.Log(float64(cfg.MaxPos)/float64(orig))/math.Log(float64(orig))), kv(t, gf, "phi3.rope.scaling.attn_factor").ValueFloat32(), 1e-6)
	ts := tensorMap(gf)
	q, kvd := cfg.Heads*cfg.HeadDim, cfg.KVHeads*cfg.HeadDim
	assert.Equal(t, []uint64{uint64(cfg.Hidden), uint64(q + 2*kvd)}, ts["blk.0.attn_qkv.weight"].Dimensions)
	assert.Equal(t, []uint64{uint64(cfg.Hidden), uint64(2 * cfg.Intermediate)}, ts["blk.0.ffn_up.weight"].Dimensions)
	assert.NotContains(t, ts, "blk.0.ffn_gate.weight")
	assert.Equal(t, float32sOf(cfg.RopeScaling.LongFactor), readF32(t, path, "rope_factors_long.weight"))
	assert.Equal(t, float32sOf(cfg.RopeScaling.ShortFactor), readF32(t, path, "rope_factors_short.weight"))
	w, _ := p.Param("model.layers.1.self_attn.qkv_proj.weight")
	assert.Equal(t, cpu.Float32s(w.W), readF32(t, path, "blk.1.attn_qkv.weight"), "NeoX RoPE: rows as stored")
}

// TestGlm4Variant: GLM-4's q and k go out unpermuted (llama.cpp's glm4
// rotates interleaved pairs, as the checkpoint does), gate_up_proj as
// ffn_up, the output norms as post_attention_norm and post_ffw_norm.
func TestGlm4Variant(t *testing.T) {
	m, tok := loadDemo(t)
	g, err := ggufcheck.Glm4FromLlama(m, cpu.New(), 1)
	require.NoError(t, err)
	cfg := g.Config()
	gf, path := export(t, g, tok, gguf.F32)
	assert.Equal(t, "glm4", kv(t, gf, "general.architecture").ValueString())
	assert.Equal(t, "glm4", kv(t, gf, "tokenizer.ggml.pre").ValueString())
	assert.Equal(t, uint32(cfg.RotaryDim()), kv(t, gf, "glm4.rope.dimension_count").ValueUint32())
	ts := tensorMap(gf)
	for _, n := range []string{"blk.0.attn_q.bias", "blk.0.post_attention_norm.weight", "blk.0.post_ffw_norm.weight", "blk.0.ffn_norm.weight"} {
		assert.Contains(t, ts, n)
	}
	assert.Equal(t, []uint64{uint64(cfg.Hidden), uint64(2 * cfg.Intermediate)}, ts["blk.0.ffn_up.weight"].Dimensions)
	w, _ := g.Param("model.layers.0.self_attn.q_proj.weight")
	assert.Equal(t, cpu.Float32s(w.W), readF32(t, path, "blk.0.attn_q.weight"))
}

// float32sOf converts to float32.
func float32sOf(v []float64) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		out[i] = float32(x)
	}
	return out
}

// familyCase is what the export of a family's check model must hold.
type familyCase struct {
	family, arch, pre string
	// dims are tensors that must be there with their ggml dimensions
	// (innermost first); absent ones must not be.
	dims   map[string][]uint64
	absent []string
	// keys are float32 hyper-parameters beyond the shared ones.
	keys map[string]float32
}

func TestFamilies(t *testing.T) {
	cases := []familyCase{
		{family: "qwen3", arch: "qwen3", pre: "qwen2",
			dims: map[string][]uint64{
				"blk.0.attn_q.weight": {64, 96}, "blk.0.attn_k.weight": {64, 48}, "blk.0.attn_output.weight": {96, 64},
				"blk.1.attn_q_norm.weight": {24}, "blk.1.attn_k_norm.weight": {24},
				"blk.0.attn_norm.weight": {64}, "blk.0.ffn_norm.weight": {64}, "output.weight": {64, 259},
			},
			absent: []string{"blk.0.attn_q.bias"}},
		{family: "olmo2", arch: "olmo2", pre: "llama-bpe",
			dims: map[string][]uint64{
				"blk.0.attn_q_norm.weight": {64}, "blk.0.attn_k_norm.weight": {32},
				"blk.1.post_attention_norm.weight": {64}, "blk.1.post_ffw_norm.weight": {64},
				"output.weight": {64, 259},
			},
			absent: []string{"blk.0.attn_norm.weight", "blk.0.ffn_norm.weight"}},
		{family: "granite", arch: "granite", pre: "llama-bpe",
			dims: map[string][]uint64{
				"blk.0.attn_q.bias": {96}, "blk.0.attn_k.bias": {48}, "blk.0.attn_output.bias": {64},
				"blk.0.ffn_gate.bias": {128}, "blk.0.ffn_down.bias": {64},
			},
			keys: map[string]float32{
				"granite.embedding_scale": 4, "granite.residual_scale": 0.5,
				"granite.attention.scale": 0.125, "granite.logit_scale": 2.5,
			}},
		{family: "llama", arch: "llama", pre: "llama-bpe",
			dims: map[string][]uint64{"blk.0.attn_q.weight": {64, 96}, "blk.0.attn_q.bias": {96}, "blk.0.ffn_up.bias": {128}}},
	}
	_, tok := loadDemo(t)
	for _, c := range cases {
		t.Run(c.family, func(t *testing.T) {
			m, err := ggufcheck.CheckModel(c.family, cpu.New(), 1)
			require.NoError(t, err)
			cfg := m.Config()
			gf, path := export(t, m, tok, gguf.F32)
			assert.Equal(t, c.arch, kv(t, gf, "general.architecture").ValueString())
			assert.Equal(t, c.pre, kv(t, gf, "tokenizer.ggml.pre").ValueString())
			for _, key := range []string{".attention.key_length", ".attention.value_length", ".rope.dimension_count"} {
				assert.Equal(t, uint32(cfg.HeadDim), kv(t, gf, c.arch+key).ValueUint32(), key)
			}
			for key, want := range c.keys {
				assert.Equal(t, want, kv(t, gf, key).ValueFloat32(), key)
			}
			ts := tensorMap(gf)
			for name, dims := range c.dims {
				require.Contains(t, ts, name)
				assert.Equal(t, dims, ts[name].Dimensions, name)
			}
			for _, name := range c.absent {
				assert.NotContains(t, ts, name)
			}
			checkQK(t, m, path)
		})
	}
}

// checkQK checks layer 0's q/k weights and biases in the file: permuted
// to ggml's interleaved pairing for a family whose llama.cpp RoPE wants
// it, as stored otherwise.
func checkQK(t *testing.T, m model.Model, path string) {
	t.Helper()
	fam, cfg := m.Family(), m.Config()
	for hf, name := range map[string]string{"q_proj": "attn_q", "k_proj": "attn_k"} {
		for _, kind := range []string{"weight", "bias"} {
			p, ok := m.Param("model.layers.0.self_attn." + hf + "." + kind)
			if !ok {
				continue
			}
			want := m.Backend().Download(p.W)
			if fam.GGUFInterleavedQK {
				want = model.HalfToInterleaved(want, cfg.HeadDim, p.W.Len()/p.W.Dim(0))
			}
			assert.Equal(t, want, readF32(t, path, "blk.0."+name+"."+kind), "%s.%s", name, kind)
		}
	}
}

// OLMo-2's tied head is written out: llama.cpp's olmo2 requires output.weight.
func TestOlmo2TiedHead(t *testing.T) {
	m, err := ggufcheck.CheckModel("olmo2", cpu.New(), 1)
	require.NoError(t, err)
	require.True(t, m.Config().TieEmbeddings)
	_, tok := loadDemo(t)
	_, path := export(t, m, tok, gguf.F32)
	assert.Equal(t, readF32(t, path, "token_embd.weight"), readF32(t, path, "output.weight"))
}

// newModel builds a random model from config.json keys.
func newModel(t *testing.T, keys map[string]any) model.Model {
	t.Helper()
	data, err := json.Marshal(keys)
	require.NoError(t, err)
	cfg, err := hfconfig.Parse(data, "test config")
	require.NoError(t, err)
	m, err := model.New(cfg, cpu.New(), 1)
	require.NoError(t, err)
	return m
}

func TestBuildRejectsWhatLlamaCppComputesOtherwise(t *testing.T) {
	sizes := func(arch, mt string, extra map[string]any) map[string]any {
		keys := map[string]any{"architectures": []string{arch}, "model_type": mt, "vocab_size": 259,
			"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "intermediate_size": 64}
		for k, v := range extra {
			keys[k] = v
		}
		return keys
	}
	llama3 := map[string]any{"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0, "high_freq_factor": 4.0, "original_max_position_embeddings": 64}
	cases := []struct {
		name string
		keys map[string]any
		want string
	}{
		{"qwen3 biases", sizes("Qwen3ForCausalLM", "qwen3", map[string]any{"head_dim": 8, "attention_bias": true}), "llama.cpp's qwen3 has no projection biases"},
		{"olmo2 biases", sizes("Olmo2ForCausalLM", "olmo2", map[string]any{"attention_bias": true}), "llama.cpp's olmo2 has no projection biases"},
		{"olmo2 head_dim", sizes("Olmo2ForCausalLM", "olmo2", map[string]any{"head_dim": 16}), "llama.cpp's olmo2 needs head_dim = hidden_size/num_attention_heads = 8, got 16"},
		{"qwen2 head_dim", sizes("Qwen2ForCausalLM", "qwen2", map[string]any{"head_dim": 16}), "llama.cpp's qwen2 needs head_dim = hidden_size/num_attention_heads = 8, got 16"},
		{"qwen2 llama3 rope", sizes("Qwen2ForCausalLM", "qwen2", map[string]any{"rope_scaling": llama3}), "llama.cpp's qwen2 does not take llama3 rope_scaling"},
		{"phi3 head_dim", sizes("Phi3ForCausalLM", "phi3", map[string]any{"head_dim": 16}), "llama.cpp's phi3 needs head_dim = hidden_size/num_attention_heads = 8, got 16"},
		{"phi3 llama3 rope", sizes("Phi3ForCausalLM", "phi3", map[string]any{"rope_scaling": llama3}), "llama.cpp's phi3 does not take llama3 rope_scaling"},
		{"glm4 llama3 rope", sizes("Glm4ForCausalLM", "glm4", map[string]any{"head_dim": 8, "rope_scaling": llama3}), "llama.cpp's glm4 does not take llama3 rope_scaling"},
		{"mistral sliding window", sizes("MistralForCausalLM", "mistral", map[string]any{"sliding_window": 16, "max_position_embeddings": 64}),
			"llama.cpp's llama has no sliding-window attention, and layer 0's window of 16 positions is shorter than max_position_embeddings 64"},
		{"qwen2 sliding layers", sizes("Qwen2ForCausalLM", "qwen2", map[string]any{"use_sliding_window": true, "sliding_window": 16, "max_window_layers": 0, "max_position_embeddings": 64}),
			"llama.cpp's qwen2 has no sliding-window attention"},
		{"phi3 sliding window", sizes("Phi3ForCausalLM", "phi3", map[string]any{"sliding_window": 16, "max_position_embeddings": 64}),
			"llama.cpp's phi3 has no sliding-window attention, and layer 0's window of 16 positions"},
	}
	_, tok := loadDemo(t)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Build(newModel(t, c.keys), tok, Options{Type: gguf.F32})
			assert.ErrorContains(t, err, c.want)
		})
	}
}

// TestWindowsThatHideNothingExport checks that sliding windows no context
// within max_position_embeddings reaches are exported as plain attention.
func TestWindowsThatHideNothingExport(t *testing.T) {
	base := map[string]any{"vocab_size": 259, "hidden_size": 32, "num_hidden_layers": 2, "num_attention_heads": 4,
		"num_key_value_heads": 2, "intermediate_size": 64, "max_position_embeddings": 64}
	with := func(extra map[string]any) map[string]any {
		keys := map[string]any{}
		for k, v := range base {
			keys[k] = v
		}
		for k, v := range extra {
			keys[k] = v
		}
		return keys
	}
	_, tok := loadDemo(t)
	for name, keys := range map[string]map[string]any{
		"mistral window = max_position_embeddings": with(map[string]any{"architectures": []string{"MistralForCausalLM"}, "model_type": "mistral", "sliding_window": 64}),
		"mistral no window":                        with(map[string]any{"architectures": []string{"MistralForCausalLM"}, "model_type": "mistral", "sliding_window": nil}),
		"phi3 window > max_position_embeddings":    with(map[string]any{"architectures": []string{"Phi3ForCausalLM"}, "model_type": "phi3", "sliding_window": 128}),
		"qwen2 no sliding layer":                   with(map[string]any{"architectures": []string{"Qwen2ForCausalLM"}, "model_type": "qwen2", "use_sliding_window": true, "sliding_window": 8, "max_window_layers": 2}),
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Build(newModel(t, keys), tok, Options{Type: gguf.F32})
			assert.NoError(t, err)
		})
	}
}

// TestGemmaFamilies exports the Gemma 2 and 3 check models as llama.cpp
// reads them: its names for the four norms (and Gemma 3's q/k norms),
// every norm weight stored as 1 + w, q/k rows as stored (NeoX RoPE), no
// output tensor (the LM head is token_embd), the sliding window and
// Gemma 2's soft caps.
func TestGemmaFamilies(t *testing.T) {
	_, tok := loadDemo(t)
	for _, tc := range []struct{ arch, gguf string }{{hfconfig.ArchGemma2, "gemma2"}, {hfconfig.ArchGemma3, "gemma3"}} {
		t.Run(tc.gguf, func(t *testing.T) {
			m, err := ggufcheck.CheckModel(tc.gguf, cpu.New(), 1)
			require.NoError(t, err)
			gf, path := export(t, m, tok, gguf.F32)
			checkQK(t, m, path)
			assert.Equal(t, uint32(m.Config().HeadDim), kv(t, gf, tc.gguf+".attention.key_length").ValueUint32())
			assert.Equal(t, tc.gguf, kv(t, gf, "general.architecture").ValueString())
			assert.Equal(t, uint32(ggufcheck.GemmaWindow), kv(t, gf, tc.gguf+".attention.sliding_window").ValueUint32())
			if tc.gguf == "gemma2" {
				assert.Equal(t, float32(50), kv(t, gf, "gemma2.attn_logit_softcapping").ValueFloat32())
				assert.Equal(t, float32(30), kv(t, gf, "gemma2.final_logit_softcapping").ValueFloat32())
			}
			ts := tensorMap(gf)
			assert.NotContains(t, ts, "output.weight")
			for hf, name := range map[string]string{
				"model.layers.1.input_layernorm.weight":            "blk.1.attn_norm.weight",
				"model.layers.1.post_attention_layernorm.weight":   "blk.1.post_attention_norm.weight",
				"model.layers.1.pre_feedforward_layernorm.weight":  "blk.1.ffn_norm.weight",
				"model.layers.1.post_feedforward_layernorm.weight": "blk.1.post_ffw_norm.weight",
				"model.norm.weight":                                "output_norm.weight",
			} {
				p, ok := m.Param(hf)
				require.True(t, ok, hf)
				w := m.Backend().Download(p.W)
				for i := range w {
					w[i]++
				}
				assert.Equal(t, w, readF32(t, path, name), hf)
			}
			_, q := ts["blk.0.attn_q_norm.weight"]
			_, k := ts["blk.0.attn_k_norm.weight"]
			assert.Equal(t, tc.gguf == "gemma3", q && k, "q/k norms")
		})
	}
}

// TestGemmaRejects checks that a Gemma config llama.cpp would compute
// differently is refused, naming the key.
func TestGemmaRejects(t *testing.T) {
	_, tok := loadDemo(t)
	for _, tc := range []struct {
		arch, key string
		edit      func(c *hfconfig.Config)
	}{
		{hfconfig.ArchGemma2, "query_pre_attn_scalar", func(c *hfconfig.Config) { c.QueryPreAttnScalar = 16 }},
		{hfconfig.ArchGemma2, "layer_types", func(c *hfconfig.Config) {
			c.LayerTypes = []string{hfconfig.FullAttention, hfconfig.SlidingAttention}
		}},
		{hfconfig.ArchGemma2, "softcapping", func(c *hfconfig.Config) { c.FinalSoftCap = 0 }},
		{hfconfig.ArchGemma3, "layer_types", func(c *hfconfig.Config) { c.SlidingPattern = 3 }},
		{hfconfig.ArchGemma3, "rope_local_base_freq", func(c *hfconfig.Config) { c.RopeLocalTheta = 5000 }},
		{hfconfig.ArchGemma3, "final_logit_softcapping", func(c *hfconfig.Config) { c.FinalSoftCap = 30 }},
	} {
		m, err := ggufcheck.CheckModel(map[string]string{hfconfig.ArchGemma2: "gemma2", hfconfig.ArchGemma3: "gemma3"}[tc.arch], cpu.New(), 1)
		require.NoError(t, err)
		tc.edit(m.Config())
		_, err = Build(m, tok, Options{Type: gguf.F32})
		require.Error(t, err, tc.key)
		assert.Contains(t, err.Error(), tc.key)
		assert.Contains(t, err.Error(), tc.arch)
	}
}
