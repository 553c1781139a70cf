package ggufcheck

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/arch"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
)

// A family check model is seeded random, small, and sized so each
// feature of the family that the export maps shows in the output: an
// explicit head_dim unlike hidden/heads (Qwen3, LLaMA, Granite), grouped-query key
// norms and a tied head that llama.cpp's olmo2 needs written out
// (OLMo-2), every Granite multiplier away from 1, and biases on every
// projection (LLaMA, Granite: the q/k biases take the interleaved RoPE
// permutation too), and Gemma's sandwich (1 + w) norms, GeGLU, embedding
// scale, soft caps (Gemma 2), local RoPE base (Gemma 3) and a sliding
// window of GemmaWindow shorter than the prompts, in llama.cpp's fixed
// layer patterns (Gemma 3 gets 6 layers so one is full).
// Its vocabulary is the demo's byte-level tokenizer (259 tokens, BOS
// 256, EOS 257, pad 258), so prompts are the demo's. Weights are drawn
// at unit scale (1/sqrt(fan-in) per matrix, a sharper LM head) rather
// than transformers' 0.02, so the next-token distributions are peaked
// and a layout mistake moves them far: with 0.02 every logit is nearly
// zero and any two models look alike.
var checkConfigs = map[string]map[string]any{
	"llama": {
		"architectures": []string{arch.Llama}, "model_type": "llama",
		"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"head_dim": 24, "intermediate_size": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
		"tie_word_embeddings": false, "attention_bias": true, "mlp_bias": true,
	},
	"qwen3": {
		"architectures": []string{arch.Qwen3}, "model_type": "qwen3",
		"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"head_dim": 24, "intermediate_size": 128, "rope_theta": 1000000.0, "rms_norm_eps": 1e-6,
		"tie_word_embeddings": false,
	},
	"olmo2": {
		"architectures": []string{arch.Olmo2}, "model_type": "olmo2",
		"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"intermediate_size": 128, "rope_theta": 500000.0, "rms_norm_eps": 1e-6,
		"tie_word_embeddings": true,
	},
	"granite": {
		"architectures": []string{arch.Granite}, "model_type": "granite",
		"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"head_dim": 24, "intermediate_size": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-5,
		"tie_word_embeddings": false, "attention_bias": true, "mlp_bias": true,
		"embedding_multiplier": 4.0, "residual_multiplier": 0.5, "attention_multiplier": 0.125, "logits_scaling": 2.5,
	},
	"gemma2": {
		"architectures": []string{arch.Gemma2}, "model_type": "gemma2",
		"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
		"head_dim": 24, "intermediate_size": 128, "rope_theta": 10000.0, "rms_norm_eps": 1e-6,
		"query_pre_attn_scalar": 24, "sliding_window": GemmaWindow, "hidden_activation": "gelu_pytorch_tanh",
		"attn_logit_softcapping": 50.0, "final_logit_softcapping": 30.0,
	},
	"gemma3": {
		"architectures": []string{arch.Gemma3}, "model_type": "gemma3_text",
		"hidden_size": 64, "num_hidden_layers": 6, "num_attention_heads": 4, "num_key_value_heads": 2,
		"head_dim": 24, "intermediate_size": 128, "rope_theta": 1000000.0, "rope_local_base_freq": 10000.0,
		"rms_norm_eps": 1e-6, "query_pre_attn_scalar": 24, "sliding_window": GemmaWindow,
		"sliding_window_pattern": 6, "hidden_activation": "gelu_pytorch_tanh",
	},
	"gpt2": {
		"architectures": []string{arch.GPT2}, "model_type": "gpt2",
		"n_embd": 64, "n_layer": 2, "n_head": 4, "n_positions": 128, "activation_function": "gelu_new",
		"layer_norm_epsilon": 1e-5,
	},
}

// GemmaWindow is the sliding window of the Gemma check models: shorter
// than the check's prompts, so the windows matter.
const GemmaWindow = 8

// demoVocab is the demo tokenizer's size and special tokens.
const (
	demoVocab = 259
	demoBOS   = 256
	demoEOS   = 257
	demoPAD   = 258
)

// CheckModel builds the seeded check model of a family (a model_type of
// checkConfigs; Write also writes the demo's variants).
func CheckModel(family string, be engine.Backend, seed uint64) (model.Model, error) {
	base, ok := checkConfigs[family]
	if !ok {
		return nil, fmt.Errorf("ggufcheck: no seeded check model for family %q (have %s)", family, strings.Join(slices.Sorted(maps.Keys(checkConfigs)), ", "))
	}
	c := map[string]any{"vocab_size": demoVocab, "bos_token_id": demoBOS, "eos_token_id": demoEOS, "pad_token_id": demoPAD, "torch_dtype": "float32"}
	if family != "gpt2" {
		c["max_position_embeddings"] = 128
	}
	for k, v := range base {
		c[k] = v
	}
	data, err := json.Marshal(c)
	if err != nil {
		return nil, err
	}
	cfg, err := hfconfig.Parse(data, "ggufcheck "+family+" config")
	if err != nil {
		return nil, err
	}
	shape, err := model.New(cfg, be, seed)
	if err != nil {
		return nil, err
	}
	weights, err := shape.HFWeights()
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(seed, 0x243f6a8885a308d3))
	w := make(map[string]model.HostTensor, len(weights))
	for _, t := range weights {
		w[t.Name] = model.HostTensor{Shape: t.Shape, Data: unitScale(cfg.Family(), t, rng)}
	}
	return model.FromWeights(cfg, be, w, model.Options{})
}

// unitScale draws a tensor's values: norm scales near 1 (a (1 + w)
// norm's w near 0), biases near 0, embeddings of unit variance (Gemma's:
// see below), matrices with variance 1/fan-in (three times that spread
// for the LM head).
func unitScale(fam *arch.Family, t model.NamedWeight, rng *rand.Rand) []float32 {
	mean, std := 0.0, 0.1
	switch {
	case len(t.Shape) == 1 && strings.HasSuffix(t.Name, ".weight"):
		if fam.Norm != arch.OffsetRMSNorm {
			mean = 1 // a norm's scale
		}
	case len(t.Shape) == 1: // a bias
	case t.Name == fam.Embed+".weight" && fam.EmbedScale != arch.NoEmbedScale:
		// Gemma multiplies by sqrt(hidden), and its tied head reads the
		// same table: at unit variance each position's own token would
		// win with p ≈ 1 (the residual stream is mostly its embedding).
		// 2/sqrt(hidden) gives inputs of variance 4 and peaked but
		// unsaturated distributions (top probability 0.1-0.99).
		std = 2 / math.Sqrt(float64(t.Shape[1]))
	case t.Name == fam.Embed+".weight":
		std = 1
	case fam.PosEmbed != "" && t.Name == fam.PosEmbed+".weight":
		std = 0.5
	default:
		fanIn := t.Shape[1]
		if fam.Conv1D {
			fanIn = t.Shape[0]
		}
		std = 1 / math.Sqrt(float64(fanIn))
		if t.Name == fam.LMHead+".weight" {
			std *= 3
		}
	}
	out := make([]float32, len(t.Data))
	for i := range out {
		out[i] = float32(mean + std*rng.NormFloat64())
	}
	return out
}

// saveWithTokenizer saves m to dir with the tokenizer files of the model
// folder from.
func saveWithTokenizer(m model.Model, dir, from string) error {
	if err := m.Save(dir); err != nil {
		return err
	}
	for _, name := range []string{"tokenizer.json", "tokenizer_config.json"} {
		if err := copyFile(filepath.Join(from, name), filepath.Join(dir, name)); err != nil {
			return err
		}
	}
	return nil
}
