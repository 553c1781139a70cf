// Package ggufcheck builds the model variants the GGUF export is checked
// on, beyond the LLaMA checkpoints in the repository: a Qwen2 model made
// from the trained demo model. Its weights are the demo's (so greedy
// decoding has clear winners, unlike a random model's near-ties, and a
// comparison with llama.cpp means something) plus seeded random q/k/v
// biases, which Qwen2 has and LLaMA lacks. Qwen2 applies RoPE in Hugging
// Face's rotate_half layout, as the demo was trained, so without the
// biases it would compute the demo's function.
//
// The Gemma 2 and Gemma 3 variants take the demo's projections and
// embedding too, but their sandwich norms, GeGLU, embedding scale, soft
// caps and sliding windows make them compute another function than the
// demo's: what is compared is gotune's and llama.cpp's greedy decoding
// of the same weights.
package ggufcheck

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
)

// BiasStd is the standard deviation of the added q/k/v biases: large
// enough to change the attention pattern, small enough to keep the
// demo's skills.
const BiasStd = 0.05

// Qwen2FromLlama builds a Qwen2ForCausalLM with m's sizes and weights and
// seeded random q/k/v biases. m must be a LLaMA without biases.
func Qwen2FromLlama(m model.Model, be engine.Backend, seed uint64) (model.Model, error) {
	src := m.Config()
	if src.Arch != hfconfig.ArchLlama || src.AttentionBias || src.MLPBias {
		return nil, fmt.Errorf("ggufcheck: want a LLaMA without biases, got %s", src.Arch)
	}
	cfg, err := hfconfig.NewQwen2(hfconfig.Sizes{VocabSize: src.VocabSize, Hidden: src.Hidden, Layers: src.Layers,
		Heads: src.Heads, KVHeads: src.KVHeads, Intermediate: src.Intermediate, MaxPos: src.MaxPos})
	if err != nil {
		return nil, err
	}
	cfg.TieEmbeddings, cfg.NormEps, cfg.RopeTheta = src.TieEmbeddings, src.NormEps, src.RopeTheta
	cfg.BosTokenID, cfg.EosTokenIDs, cfg.PadTokenID = src.BosTokenID, src.EosTokenIDs, src.PadTokenID
	cfg.TorchDtype = "float32"
	rng := rand.New(rand.NewPCG(seed, 0x9e3779b97f4a7c15))
	w := map[string]model.HostTensor{}
	weights, err := m.HFWeights()
	if err != nil {
		return nil, err
	}
	for _, t := range weights {
		w[t.Name] = model.HostTensor{Shape: t.Shape, Data: t.Data}
		if rest, ok := strings.CutSuffix(t.Name, "_proj.weight"); ok && strings.Contains(rest, ".self_attn.") && !strings.HasSuffix(rest, ".o") {
			b := make([]float32, t.Shape[0])
			for i := range b {
				b[i] = float32(rng.NormFloat64() * BiasStd)
			}
			w[rest+"_proj.bias"] = model.HostTensor{Shape: []int{t.Shape[0]}, Data: b}
		}
	}
	return model.FromWeights(cfg, be, w, model.Options{})
}

// WriteVariant loads the LLaMA folder from, builds a variant of it with
// build and saves that to dir with from's tokenizer files.
func WriteVariant(from, dir string, be engine.Backend, build func(m model.Model) (model.Model, error)) error {
	m, err := model.Load(from, be)
	if err != nil {
		return err
	}
	q, err := build(m)
	if err != nil {
		return err
	}
	if err := q.Save(dir); err != nil {
		return err
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if err := copyFile(filepath.Join(from, name), filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
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

// GemmaWindow is the sliding window of the Gemma variants: shorter than
// the check's prompts, so the windows matter.
const GemmaWindow = 8

// GemmaFromLlama builds a Gemma 2 or Gemma 3 (arch hfconfig.ArchGemma2 or
// ArchGemma3) with m's projections and tied embedding: m's norm weights
// become (1 + w) offsets (w − 1; the pre-MLP norm is m's
// post_attention_layernorm), the output norms and Gemma 3's q/k norms
// start at offset 0, query_pre_attn_scalar is head_dim, and the layers
// follow llama.cpp's fixed patterns (Gemma 3 repeats m's layers up to 6,
// so one is full). m must be a LLaMA without biases with tied embeddings.
func GemmaFromLlama(m model.Model, be engine.Backend, archName string) (model.Model, error) {
	src := m.Config()
	if src.Arch != hfconfig.ArchLlama || src.AttentionBias || src.MLPBias || !src.TieEmbeddings {
		return nil, fmt.Errorf("ggufcheck: want a tied LLaMA without biases, got %s", src.Arch)
	}
	layers, extra := src.Layers, map[string]any{"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0, "hidden_activation": "gelu_pytorch_tanh"}
	if archName == hfconfig.ArchGemma3 {
		layers = max(layers, 6)
		extra = map[string]any{"model_type": "gemma3_text", "rope_local_base_freq": 10000.0, "sliding_window_pattern": 6}
	}
	c := map[string]any{
		"architectures": []string{archName}, "model_type": "gemma2", "vocab_size": src.VocabSize,
		"hidden_size": src.Hidden, "num_hidden_layers": layers, "num_attention_heads": src.Heads,
		"num_key_value_heads": src.KVHeads, "head_dim": src.HeadDim, "intermediate_size": src.Intermediate,
		"max_position_embeddings": src.MaxPos, "rms_norm_eps": src.NormEps, "rope_theta": src.RopeTheta,
		"query_pre_attn_scalar": src.HeadDim, "sliding_window": GemmaWindow, "bos_token_id": src.BosTokenID,
		"eos_token_id": src.EosTokenIDs, "pad_token_id": src.PadTokenID, "torch_dtype": "float32",
	}
	for k, v := range extra {
		c[k] = v
	}
	data, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	cfg, err := hfconfig.Parse(data, archName+" variant")
	if err != nil {
		return nil, err
	}
	weights, err := m.HFWeights()
	if err != nil {
		return nil, err
	}
	in := map[string]model.HostTensor{}
	for _, t := range weights {
		in[t.Name] = model.HostTensor{Shape: t.Shape, Data: t.Data}
	}
	offset := func(name string) model.HostTensor {
		t := in[name]
		d := make([]float32, len(t.Data))
		for i, v := range t.Data {
			d[i] = v - 1
		}
		return model.HostTensor{Shape: t.Shape, Data: d}
	}
	zeros := func(n int) model.HostTensor { return model.HostTensor{Shape: []int{n}, Data: make([]float32, n)} }
	w := map[string]model.HostTensor{
		"model.embed_tokens.weight": in["model.embed_tokens.weight"],
		"model.norm.weight":         offset("model.norm.weight"),
	}
	for i := 0; i < layers; i++ {
		pre, from := fmt.Sprintf("model.layers.%d.", i), fmt.Sprintf("model.layers.%d.", i%src.Layers)
		for _, p := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
			w[pre+p+".weight"] = in[from+p+".weight"]
		}
		w[pre+"input_layernorm.weight"] = offset(from + "input_layernorm.weight")
		w[pre+"pre_feedforward_layernorm.weight"] = offset(from + "post_attention_layernorm.weight")
		w[pre+"post_attention_layernorm.weight"] = zeros(src.Hidden)
		w[pre+"post_feedforward_layernorm.weight"] = zeros(src.Hidden)
		if archName == hfconfig.ArchGemma3 {
			w[pre+"self_attn.q_norm.weight"] = zeros(src.HeadDim)
			w[pre+"self_attn.k_norm.weight"] = zeros(src.HeadDim)
		}
	}
	return model.FromWeights(cfg, be, w, model.Options{})
}
