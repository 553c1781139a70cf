// Package ggufcheck builds the models the GGUF export is checked on,
// beyond the LLaMA checkpoints in the repository, and computes gotune's
// next-token distributions that llama.cpp's are compared with
// (NextProbs). Every check model has the demo's byte-level tokenizer and
// is written by Write (the mkcheck command) under its family's
// model_type:
//
//   - qwen2, phi3, glm4: variants of the trained demo model. Their
//     weights are the demo's (so greedy decoding has clear winners,
//     unlike a random model's near-ties, and a comparison with llama.cpp
//     means something) in the family's layout, plus what the family has
//     and LLaMA lacks.
//   - llama, qwen3, olmo2, granite, gpt2: seeded random check models
//     sized so each feature the export maps shows in the output
//     (families.go).
//
// The variants:
//
//   - Qwen2: seeded random q/k/v biases. Qwen2 applies RoPE in Hugging
//     Face's rotate_half layout, as the demo was trained, so without the
//     biases it would compute the demo's function.
//   - Phi-3: q, k, v fused into qkv_proj and gate, up into gate_up_proj,
//     and longrope scaling: short factors 1 (the demo's frequencies; the
//     checks run within the original context of 4096), seeded long
//     factors, and the attention factor of a 32-fold extended context,
//     which sharpens every attention pattern.
//   - GLM-4: q and k rows permuted to GLM's interleaved RoPE pairs (the
//     demo's function so far), RoPE on the first half of each head only
//     (GLM's partial_rotary_factor), seeded random q/k/v biases, gate and
//     up fused, and the sandwich norms' output RMSNorms (weights 1). The
//     last three change the demo's function (its output is no longer the
//     task's answer, but greedy decoding still has clear winners).
//
// (A Phi-3 variant with partial rotary stops after two tokens, too short
// a check; the GLM-4 variant covers partial rotary.)
package ggufcheck

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
)

// The Phi-3 variant's original and extended contexts (Phi-3-mini-128k's).
const (
	longRopeOriginal = 4096
	longRopeContext  = 32 * longRopeOriginal
)

// BiasStd is the standard deviation of the added q/k/v biases: large
// enough to change the attention pattern, small enough to keep the
// demo's skills.
const BiasStd = 0.05

// variants builds each variant of the demo from the LLaMA demo model.
var variants = map[string]func(m model.Model, be engine.Backend, seed uint64) (model.Model, error){
	"qwen2": Qwen2FromLlama,
	"phi3":  Phi3FromLlama,
	"glm4":  Glm4FromLlama,
}

// Qwen2FromLlama builds a Qwen2ForCausalLM with m's sizes and weights and
// seeded random q/k/v biases. m must be a LLaMA without biases.
func Qwen2FromLlama(m model.Model, be engine.Backend, seed uint64) (model.Model, error) {
	src, err := plainLlama(m)
	if err != nil {
		return nil, err
	}
	cfg, err := hfconfig.NewQwen2(hfconfig.Sizes{VocabSize: src.VocabSize, Hidden: src.Hidden, Layers: src.Layers,
		Heads: src.Heads, KVHeads: src.KVHeads, Intermediate: src.Intermediate, MaxPos: src.MaxPos})
	if err != nil {
		return nil, err
	}
	cfg.TieEmbeddings, cfg.NormEps, cfg.RopeTheta = src.TieEmbeddings, src.NormEps, src.RopeTheta
	cfg.BosTokenID, cfg.EosTokenIDs, cfg.PadTokenID = src.BosTokenID, src.EosTokenIDs, src.PadTokenID
	cfg.TorchDtype = "float32"
	w, order, err := hostWeights(m)
	if err != nil {
		return nil, err
	}
	addQKVBiases(w, order, seed)
	return model.FromWeights(cfg, be, w, model.Options{})
}

// Phi3FromLlama builds a Phi3ForCausalLM from m (a LLaMA without biases):
// its weights fused, longrope scaling over a context 32 times the
// original (see the package comment).
func Phi3FromLlama(m model.Model, be engine.Backend, seed uint64) (model.Model, error) {
	src, err := plainLlama(m)
	if err != nil {
		return nil, err
	}
	pairs := src.HeadDim / 2
	short, long := make([]float64, pairs), make([]float64, pairs)
	rng := newRand(seed)
	for i := range short {
		short[i], long[i] = 1, 1+3*rng.Float64()
	}
	// Phi-3-mini-128k's contexts: llama.cpp picks the long factors by the
	// context size it allocates (rounded up to 256), gotune and
	// transformers by each pass's last position; below 4096 both use the
	// short ones.
	cfg, err := variantConfig(src, hfconfig.ArchPhi3, map[string]any{
		"max_position_embeddings":          longRopeContext,
		"original_max_position_embeddings": longRopeOriginal,
		"rope_scaling":                     map[string]any{"type": "longrope", "short_factor": short, "long_factor": long},
	})
	if err != nil {
		return nil, err
	}
	w, _, err := hostWeights(m)
	if err != nil {
		return nil, err
	}
	for l := 0; l < src.Layers; l++ {
		pre := fmt.Sprintf("model.layers.%d.", l)
		fuse(w, pre+"self_attn.qkv_proj.weight", pre+"self_attn.q_proj.weight", pre+"self_attn.k_proj.weight", pre+"self_attn.v_proj.weight")
		fuse(w, pre+"mlp.gate_up_proj.weight", pre+"mlp.gate_proj.weight", pre+"mlp.up_proj.weight")
	}
	return model.FromWeights(cfg, be, w, model.Options{})
}

// Glm4FromLlama builds a Glm4ForCausalLM from m (a LLaMA without biases):
// RoPE over interleaved pairs of the first half of each head, seeded
// q/k/v biases, gate and up fused, output norms of weight 1 (see the
// package comment).
func Glm4FromLlama(m model.Model, be engine.Backend, seed uint64) (model.Model, error) {
	src, err := plainLlama(m)
	if err != nil {
		return nil, err
	}
	cfg, err := variantConfig(src, hfconfig.ArchGlm4, map[string]any{
		"head_dim": src.HeadDim, "partial_rotary_factor": 0.5, "attention_bias": true,
	})
	if err != nil {
		return nil, err
	}
	w, order, err := hostWeights(m)
	if err != nil {
		return nil, err
	}
	for l := 0; l < src.Layers; l++ {
		pre := fmt.Sprintf("model.layers.%d.", l)
		for _, p := range []string{"q", "k"} {
			name := pre + "self_attn." + p + "_proj.weight"
			t := w[name]
			t.Data = model.HalfToInterleaved(t.Data, src.HeadDim, t.Shape[1])
			w[name] = t
		}
		fuse(w, pre+"mlp.gate_up_proj.weight", pre+"mlp.gate_proj.weight", pre+"mlp.up_proj.weight")
		for _, n := range []string{"post_self_attn_layernorm", "post_mlp_layernorm"} {
			w[pre+n+".weight"] = model.HostTensor{Shape: []int{src.Hidden}, Data: slices.Repeat([]float32{1}, src.Hidden)}
		}
	}
	addQKVBiases(w, order, seed)
	return model.FromWeights(cfg, be, w, model.Options{})
}

// plainLlama returns m's config, which must be a LLaMA without biases.
func plainLlama(m model.Model) (*hfconfig.Config, error) {
	src := m.Config()
	if src.Arch != hfconfig.ArchLlama || src.AttentionBias || src.MLPBias {
		return nil, fmt.Errorf("ggufcheck: want a LLaMA without biases, got %s", src.Arch)
	}
	return src, nil
}

// variantConfig returns the config.json of architecture archName with
// src's sizes, norm epsilon, RoPE base, tying and special tokens, plus
// extra keys.
func variantConfig(src *hfconfig.Config, archName string, extra map[string]any) (*hfconfig.Config, error) {
	keys := map[string]any{
		"architectures": []string{archName}, "vocab_size": src.VocabSize, "hidden_size": src.Hidden,
		"num_hidden_layers": src.Layers, "num_attention_heads": src.Heads, "num_key_value_heads": src.KVHeads,
		"intermediate_size": src.Intermediate, "max_position_embeddings": src.MaxPos, "rms_norm_eps": src.NormEps,
		"rope_theta": src.RopeTheta, "tie_word_embeddings": src.TieEmbeddings, "hidden_act": "silu",
		"bos_token_id": src.BosTokenID, "eos_token_id": src.EosTokenIDs, "pad_token_id": src.PadTokenID,
		"torch_dtype": "float32",
	}
	for k, v := range extra {
		keys[k] = v
	}
	data, err := json.Marshal(keys)
	if err != nil {
		return nil, err
	}
	return hfconfig.Parse(data, archName+" variant config")
}

// hostWeights returns m's weights by Hugging Face name, and the names in
// state-dict order.
func hostWeights(m model.Model) (map[string]model.HostTensor, []string, error) {
	weights, err := m.HFWeights()
	if err != nil {
		return nil, nil, err
	}
	w := map[string]model.HostTensor{}
	var order []string
	for _, t := range weights {
		w[t.Name] = model.HostTensor{Shape: t.Shape, Data: t.Data}
		order = append(order, t.Name)
	}
	return w, order, nil
}

// fuse replaces the matrices parts (same number of columns) by one
// matrix named fused holding their rows in order.
func fuse(w map[string]model.HostTensor, fused string, parts ...string) {
	var data []float32
	rows := 0
	for _, p := range parts {
		data = append(data, w[p].Data...)
		rows += w[p].Shape[0]
		delete(w, p)
	}
	w[fused] = model.HostTensor{Shape: []int{rows, len(data) / rows}, Data: data}
}

// addQKVBiases adds seeded N(0, BiasStd²) biases to every q, k and v
// projection of w, drawn in the state-dict order of names.
func addQKVBiases(w map[string]model.HostTensor, names []string, seed uint64) {
	rng := newRand(seed)
	for _, n := range names {
		rest, ok := strings.CutSuffix(n, "_proj.weight")
		if !ok || !strings.Contains(rest, ".self_attn.") || strings.HasSuffix(rest, ".o") {
			continue
		}
		b := make([]float32, w[n].Shape[0])
		for i := range b {
			b[i] = float32(rng.NormFloat64() * BiasStd)
		}
		w[rest+"_proj.bias"] = model.HostTensor{Shape: []int{len(b)}, Data: b}
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15)) }

// Families returns the model_types Write accepts, sorted: the demo
// variants and the seeded check models.
func Families() []string {
	out := slices.AppendSeq(slices.Collect(maps.Keys(variants)), maps.Keys(checkConfigs))
	slices.Sort(out)
	return out
}

// Write saves the check model of family (one of Families) to dir with
// the tokenizer files of the demo folder: the family's variant of the
// demo model, or its seeded check model (CheckModel).
func Write(family, demo, dir string, be engine.Backend, seed uint64) error {
	var m model.Model
	var err error
	if build, ok := variants[family]; ok {
		m, err = variantOf(build, demo, be, seed)
	} else if _, ok := checkConfigs[family]; ok {
		m, err = CheckModel(family, be, seed)
	} else {
		return fmt.Errorf("ggufcheck: no check model for family %q (have %s)", family, strings.Join(Families(), ", "))
	}
	if err != nil {
		return err
	}
	return saveWithTokenizer(m, dir, demo)
}

// variantOf loads the LLaMA folder from and builds a variant of it.
func variantOf(build func(model.Model, engine.Backend, uint64) (model.Model, error), from string, be engine.Backend, seed uint64) (model.Model, error) {
	m, err := model.Load(from, be)
	if err != nil {
		return nil, err
	}
	return build(m, be, seed)
}

func copyFile(from, to string) error {
	in, err := os.Open(from)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.Create(to)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
