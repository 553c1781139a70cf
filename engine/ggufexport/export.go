// Package ggufexport converts a gotune model and its tokenizer into a GGUF
// file that llama.cpp loads: its architecture names (llama for LLaMA and
// Mistral, qwen2, qwen3, olmo2, granite, phi3, glm4, gemma2, gemma3,
// gpt2), the hyper-parameters it reads, its tensor names and layouts, and
// the vocabulary in its tokenizer.ggml.* keys.
//
// The conversions follow llama.cpp's convert_hf_to_gguf.py: the q/k
// projection rows of LLaMA and Granite are permuted from Hugging Face's
// rotate_half pairing to the interleaved pairing of ggml's RoPE (Qwen2,
// Qwen3, OLMo-2, Phi-3 and Gemma use ggml's NeoX RoPE, which is
// rotate_half, and GLM-4's checkpoints already pair interleaved, so they
// keep them), Phi-3's fused qkv_proj and gate_up_proj and GLM-4's
// gate_up_proj stay fused (llama.cpp splits them itself), Gemma's norm
// weights are stored with their 1 added (llama.cpp's RMSNorm scales by
// the weight), GPT-2's Conv1D weights are transposed to [out, in], and a
// vocabulary shorter than the embedding is padded with unused tokens. A
// model that llama.cpp's graph for its architecture would compute
// differently (a bias it ignores, say) is refused, not exported.
package ggufexport

import (
	"fmt"
	"math"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/arch"
	"github.com/gotune/gotune/engine/gguf"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/tokenizer"
)

// Options choose how the weights are stored.
type Options struct {
	// Type is the storage type of the matrices: gguf.F32, F16, BF16 or
	// Q8_0. Norm weights, biases and other 1-D tensors are always F32, as
	// llama.cpp's converter stores them; a Q8_0 matrix whose rows are not
	// a multiple of 32 wide falls back to F16.
	Type gguf.TensorType
	// Name is general.name ("" leaves it out).
	Name string
}

// Architecture returns llama.cpp's name of the model's architecture (its
// descriptor's GGUF).
func Architecture(cfg *hfconfig.Config) (string, error) {
	if f := cfg.Family(); f != nil && f.GGUF != "" {
		return f.GGUF, nil
	}
	return "", fmt.Errorf("ggufexport: architecture %q has no GGUF mapping", cfg.Arch)
}

// fileTypes are llama.cpp's general.file_type values (enum llama_ftype).
var fileTypes = map[gguf.TensorType]uint32{gguf.F32: 0, gguf.F16: 1, gguf.Q8_0: 7, gguf.BF16: 32}

// Build converts m and tok into a GGUF file.
func Build(m model.Model, tok tokenizer.Tokenizer, opts Options) (*gguf.File, error) {
	cfg := m.Config()
	arch, err := Architecture(cfg)
	if err != nil {
		return nil, err
	}
	ftype, ok := fileTypes[opts.Type]
	if !ok {
		return nil, fmt.Errorf("ggufexport: unsupported tensor type %s (want F32, F16, BF16 or Q8_0)", opts.Type)
	}
	if tok.VocabSize() > cfg.VocabSize {
		return nil, fmt.Errorf("ggufexport: the tokenizer has %d tokens but the model's vocabulary has %d", tok.VocabSize(), cfg.VocabSize)
	}
	if err := supported(arch, cfg); err != nil {
		return nil, err
	}
	f := &gguf.File{}
	add := func(k string, v any) { f.KV = append(f.KV, gguf.KV{Key: k, Value: v}) }
	add("general.architecture", arch)
	if opts.Name != "" {
		add("general.name", opts.Name)
	}
	add("general.file_type", ftype)
	if opts.Type == gguf.Q8_0 {
		add("general.quantization_version", uint32(2))
	}
	for _, kv := range hparams(arch, cfg) {
		add(kv.Key, kv.Value)
	}
	vocab, err := vocabulary(arch, tok, cfg.VocabSize)
	if err != nil {
		return nil, err
	}
	f.KV = append(f.KV, vocab...)
	weights, err := m.HFWeights()
	if err != nil {
		return nil, err
	}
	if f.Tensors, err = tensors(cfg, weights, opts.Type, rules[arch].output); err != nil {
		return nil, err
	}
	return f, nil
}

// loaderRules are what llama.cpp's loader and graph for an architecture
// (src/models/<arch>.cpp) take beyond the shared keys and tensor names.
type loaderRules struct {
	// biases: the graph adds projection biases (qwen3's, olmo2's and
	// phi3's load none; glm4's loads q/k/v biases, the only ones GLM-4
	// has).
	biases bool
	// headDim: q/k/v are sized by head_dim (key_length); olmo2, qwen2
	// and phi3 size them by hidden/heads, so their head_dim must be that.
	headDim bool
	// ropeFreqs: the loader takes llama3 RoPE scaling's rope_freqs
	// tensor (the NeoX-RoPE graphs and glm4's pass no frequency factors;
	// phi3's passes longrope's long/short factor tables only).
	ropeFreqs bool
	// output: output.weight is required, with no fallback to the token
	// embedding, so a tied head is written as a copy of it.
	output bool
	// windows: the graph has sliding-window layers in a fixed pattern
	// (gemma2, gemma3: checkGemma); the others attend over every key.
	windows bool
}

// rules are the loaderRules per llama.cpp architecture, read from its
// source; scripts/check-gguf-llamacpp.sh checks the features its check
// models have (qwen2's head_dim rule was seen failing to load there by
// hand; the rope_freqs rules are from the source only).
var rules = map[string]loaderRules{
	"llama":   {biases: true, headDim: true, ropeFreqs: true},
	"qwen2":   {biases: true},
	"qwen3":   {headDim: true},
	"olmo2":   {output: true},
	"granite": {biases: true, headDim: true, ropeFreqs: true},
	"phi3":    {},
	"glm4":    {biases: true, headDim: true},
	"gemma2":  {headDim: true, windows: true},
	"gemma3":  {headDim: true, windows: true},
	"gpt2":    {biases: true},
}

// supported checks that llama.cpp's arch computes what cfg describes.
func supported(arch string, cfg *hfconfig.Config) error {
	r, ok := rules[arch]
	switch {
	case !ok:
		return fmt.Errorf("ggufexport: llama.cpp architecture %q has no export rules", arch)
	case !r.biases && (cfg.AttentionBias || cfg.AttnOutBias || cfg.MLPBias):
		return fmt.Errorf("ggufexport: %s: llama.cpp's %s has no projection biases (attention_bias/mlp_bias must be false)", cfg.Arch, arch)
	case !r.headDim && cfg.HeadDim*cfg.Heads != cfg.Hidden:
		return fmt.Errorf("ggufexport: %s: llama.cpp's %s needs head_dim = hidden_size/num_attention_heads = %d, got %d", cfg.Arch, arch, cfg.Hidden/cfg.Heads, cfg.HeadDim)
	case !r.ropeFreqs && cfg.RopeScaling != nil && cfg.RopeScaling.Type == "llama3":
		return fmt.Errorf("ggufexport: %s: llama.cpp's %s does not take llama3 rope_scaling (no rope_freqs tensor)", cfg.Arch, arch)
	case r.windows:
		return checkGemma(arch, cfg)
	}
	return checkWindows(arch, cfg)
}

// checkWindows refuses sliding-window layers: none of the graphs above
// but Gemma's masks by a window (llama.cpp's phi3 reads sliding_window
// but has Phi's sliding-window attention disabled), so llama.cpp would
// attend over every cached key. A
// window at least max_position_embeddings long never hides a key within
// the model's context, and is exported as plain attention.
func checkWindows(arch string, cfg *hfconfig.Config) error {
	for l := 0; l < cfg.Layers; l++ {
		if w := cfg.LayerWindow(l); w > 0 && w < cfg.MaxPos {
			return fmt.Errorf("ggufexport: %s: llama.cpp's %s has no sliding-window attention, and layer %d's window of %d positions is shorter than max_position_embeddings %d (longer contexts would be computed differently)",
				cfg.Arch, arch, l, w, cfg.MaxPos)
		}
	}
	return nil
}

// hparams returns the {arch}.* keys llama.cpp reads for the architecture.
func hparams(arch string, cfg *hfconfig.Config) []gguf.KV {
	kvs := []gguf.KV{
		{Key: arch + ".context_length", Value: uint32(cfg.MaxPos)},
		{Key: arch + ".embedding_length", Value: uint32(cfg.Hidden)},
		{Key: arch + ".block_count", Value: uint32(cfg.Layers)},
		{Key: arch + ".feed_forward_length", Value: uint32(cfg.Intermediate)},
		{Key: arch + ".attention.head_count", Value: uint32(cfg.Heads)},
	}
	if arch == "gpt2" {
		return append(kvs, gguf.KV{Key: arch + ".attention.layer_norm_epsilon", Value: float32(cfg.NormEps)})
	}
	kvs = append(kvs,
		gguf.KV{Key: arch + ".attention.head_count_kv", Value: uint32(cfg.KVHeads)},
		gguf.KV{Key: arch + ".attention.key_length", Value: uint32(cfg.HeadDim)},
		gguf.KV{Key: arch + ".attention.value_length", Value: uint32(cfg.HeadDim)},
		gguf.KV{Key: arch + ".attention.layer_norm_rms_epsilon", Value: float32(cfg.NormEps)},
		gguf.KV{Key: arch + ".rope.dimension_count", Value: uint32(cfg.RotaryDim())},
		gguf.KV{Key: arch + ".rope.freq_base", Value: float32(cfg.RopeTheta)},
		gguf.KV{Key: arch + ".vocab_size", Value: uint32(cfg.VocabSize)},
	)
	if rs := cfg.RopeScaling; rs != nil && rs.Type == "linear" {
		kvs = append(kvs,
			gguf.KV{Key: arch + ".rope.scaling.type", Value: "linear"},
			gguf.KV{Key: arch + ".rope.scaling.factor", Value: float32(rs.Factor)})
	}
	if rules[arch].windows && cfg.SlidingWindow != nil {
		kvs = append(kvs, gguf.KV{Key: arch + ".attention.sliding_window", Value: uint32(*cfg.SlidingWindow)})
	}
	switch arch {
	case "gemma2":
		kvs = append(kvs,
			gguf.KV{Key: arch + ".attn_logit_softcapping", Value: float32(cfg.AttnSoftCap)},
			gguf.KV{Key: arch + ".final_logit_softcapping", Value: float32(cfg.FinalSoftCap)})
	case "granite":
		// Granite's multipliers under llama.cpp's names; attention.scale
		// replaces 1/sqrt(head_dim), logit_scale divides the logits.
		kvs = append(kvs,
			gguf.KV{Key: arch + ".embedding_scale", Value: float32(cfg.EmbeddingMultiplier)},
			gguf.KV{Key: arch + ".residual_scale", Value: float32(cfg.ResidualMultiplier)},
			gguf.KV{Key: arch + ".attention.scale", Value: float32(cfg.AttentionMultiplier)},
			gguf.KV{Key: arch + ".logit_scale", Value: float32(cfg.LogitsScaling)})
	}
	if arch == "phi3" {
		kvs = append(kvs, phi3HParams(cfg)...)
	}
	return kvs
}

// phi3HParams are the keys llama.cpp's converter writes for Phi-3 beyond
// the shared ones: the sliding window (0 for none) and, with longrope, the
// original context (past which llama.cpp uses the long factors; it
// decides by the context size, transformers and gotune by each pass's
// last position) and the attention factor.
func phi3HParams(cfg *hfconfig.Config) []gguf.KV {
	window := uint32(0)
	if cfg.SlidingWindow != nil {
		window = uint32(*cfg.SlidingWindow)
	}
	kvs := []gguf.KV{{Key: "phi3.attention.sliding_window", Value: window}}
	if rs := cfg.RopeScaling; rs != nil && rs.Type == "longrope" {
		kvs = append(kvs,
			gguf.KV{Key: "phi3.rope.scaling.original_context_length", Value: uint32(rs.OriginalMaxPos)},
			gguf.KV{Key: "phi3.rope.scaling.attn_factor", Value: float32(rs.LongRopeAttentionFactor())})
	}
	return kvs
}

// ropeFreqs returns llama3 RoPE scaling as llama.cpp takes it: a
// rope_freqs tensor of one divisor per rotated pair (1 for high
// frequencies, the factor for low ones, interpolated in between).
func ropeFreqs(cfg *hfconfig.Config) []float32 {
	rs := cfg.RopeScaling
	lowWave := float64(rs.OriginalMaxPos) / rs.LowFreqFactor
	highWave := float64(rs.OriginalMaxPos) / rs.HighFreqFactor
	out := make([]float32, cfg.HeadDim/2)
	for i := range out {
		freq := 1 / math.Pow(cfg.RopeTheta, float64(2*i)/float64(cfg.HeadDim))
		wave := 2 * math.Pi / freq
		switch {
		case wave < highWave:
			out[i] = 1
		case wave > lowWave:
			out[i] = float32(rs.Factor)
		default:
			smooth := (float64(rs.OriginalMaxPos)/wave - rs.LowFreqFactor) / (rs.HighFreqFactor - rs.LowFreqFactor)
			out[i] = float32(1 / ((1-smooth)/rs.Factor + smooth))
		}
	}
	return out
}

// ggufName maps a Hugging Face tensor name to llama.cpp's, by the
// family descriptor's tables (arch.Family.GGUFNames, GGUFGlobal).
func ggufName(f *arch.Family, hf string) (string, bool) {
	if n, ok := f.GGUFGlobal[hf]; ok {
		return n, true
	}
	rest, ok := strings.CutPrefix(hf, f.LayerPrefix)
	if !ok {
		return "", false
	}
	layer, sub, ok := strings.Cut(rest, ".")
	if n, known := f.GGUFNames[sub]; ok && known {
		return "blk." + layer + "." + n, true
	}
	return "", false
}

// tensors converts the model's weights to GGUF tensors; with needOutput
// a tied LM head is written as output.weight, a copy of the embedding.
func tensors(cfg *hfconfig.Config, weights []model.NamedWeight, typ gguf.TensorType, needOutput bool) ([]gguf.Tensor, error) {
	out := make([]gguf.Tensor, 0, len(weights)+2)
	fam := cfg.Family()
	if needOutput && cfg.TieEmbeddings {
		weights = tiedHead(fam, weights)
	}
	for _, w := range weights {
		name, ok := ggufName(fam, w.Name)
		if !ok {
			return nil, fmt.Errorf("ggufexport: tensor %q has no llama.cpp name", w.Name)
		}
		shape, data := w.Shape, w.Data
		switch {
		case fam.Norm == arch.OffsetRMSNorm && strings.HasSuffix(w.Name, "norm.weight"):
			data = plusOne(data)
		case fam.GGUFInterleavedQK && rotated(name):
			data = model.HalfToInterleaved(data, cfg.HeadDim, engine.Numel(shape[1:]))
		case fam.Conv1D && len(shape) == 2 && strings.HasPrefix(name, "blk."):
			shape, data = transpose(shape, data)
		}
		out = append(out, gguf.Tensor{Name: name, Shape: shape, Type: storageType(shape, typ), Data: data})
	}
	if rs := cfg.RopeScaling; rs != nil && rs.Type == "llama3" {
		out = append(out, gguf.Tensor{Name: "rope_freqs.weight", Shape: []int{cfg.HeadDim / 2}, Type: gguf.F32, Data: ropeFreqs(cfg)})
	}
	if rs := cfg.RopeScaling; rs != nil && rs.Type == "longrope" {
		for _, f := range []struct {
			name    string
			factors []float64
		}{{"rope_factors_long.weight", rs.LongFactor}, {"rope_factors_short.weight", rs.ShortFactor}} {
			data := make([]float32, len(f.factors))
			for i, x := range f.factors {
				data[i] = float32(x)
			}
			out = append(out, gguf.Tensor{Name: f.name, Shape: []int{len(data)}, Type: gguf.F32, Data: data})
		}
	}
	return out, nil
}

// plusOne returns 1 + w: a (1 + w) norm's weight as llama.cpp's RMSNorm
// scales by it.
func plusOne(w []float32) []float32 {
	out := make([]float32, len(w))
	for i, v := range w {
		out[i] = 1 + v
	}
	return out
}

// rotated reports the llama.cpp tensors whose rows RoPE rotates: the q
// and k projections' weights and biases (a bias is permuted as a matrix
// of one column, as llama.cpp's converter does).
func rotated(name string) bool {
	for _, suffix := range []string{".attn_q.weight", ".attn_k.weight", ".attn_q.bias", ".attn_k.bias"} {
		if strings.HasSuffix(name, suffix) {
			return true
		}
	}
	return false
}

// tiedHead returns weights with the LM head added as the embedding's
// values, unless it is there already.
func tiedHead(fam *arch.Family, weights []model.NamedWeight) []model.NamedWeight {
	embed, head := fam.Embed+".weight", fam.LMHead+".weight"
	for _, w := range weights {
		if w.Name == head {
			return weights
		}
	}
	for _, w := range weights {
		if w.Name == embed {
			w.Name = head
			return append(weights[:len(weights):len(weights)], w)
		}
	}
	return weights
}

// storageType is typ for matrices and F32 for vectors; Q8_0 needs rows
// that fill whole blocks and falls back to F16 otherwise.
func storageType(shape []int, typ gguf.TensorType) gguf.TensorType {
	if len(shape) < 2 {
		return gguf.F32
	}
	if typ == gguf.Q8_0 && shape[len(shape)-1]%gguf.QK8_0 != 0 {
		return gguf.F16
	}
	return typ
}

// transpose swaps a matrix's two dimensions.
func transpose(shape []int, data []float32) ([]int, []float32) {
	rows, cols := shape[0], shape[1]
	out := make([]float32, len(data))
	for r := 0; r < rows; r++ {
		for c := 0; c < cols; c++ {
			out[c*rows+r] = data[r*cols+c]
		}
	}
	return []int{cols, rows}, out
}
