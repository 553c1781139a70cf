package hfconfig

import (
	"bytes"
	"encoding/json"
	"fmt"
)

// Sizes are the dimensions of a freshly created model.
type Sizes struct {
	// VocabSize, Hidden, Layers and Heads are required.
	VocabSize, Hidden, Layers, Heads int
	// KVHeads defaults to Heads (must equal Heads, or be 0, for GPT-2).
	KVHeads int
	// Intermediate is required for Llama, Mistral and Qwen2; for GPT-2, 0
	// means transformers' default 4*Hidden (n_inner null).
	Intermediate int
	// MaxPos defaults to transformers' default for the architecture (2048
	// Llama, 131072 Mistral, 32768 Qwen2, 1024 GPT-2).
	MaxPos int
}

// NewLlama returns the config of a new LlamaForCausalLM, with the keys and
// defaults transformers' LlamaConfig writes (untied embeddings, no biases,
// silu, rms_norm_eps 1e-6, rope_theta 10000, bos 1, eos 2, float32).
// Adjust fields before Save as needed.
func NewLlama(s Sizes) (*Config, error) {
	s = s.withDefaults(2048)
	m := map[string]any{
		"architectures":           []string{ArchLlama},
		"attention_bias":          false,
		"attention_dropout":       0.0,
		"bos_token_id":            1,
		"eos_token_id":            2,
		"head_dim":                headDim(s),
		"hidden_act":              "silu",
		"hidden_size":             s.Hidden,
		"initializer_range":       0.02,
		"intermediate_size":       s.Intermediate,
		"max_position_embeddings": s.MaxPos,
		"mlp_bias":                false,
		"model_type":              "llama",
		"num_attention_heads":     s.Heads,
		"num_hidden_layers":       s.Layers,
		"num_key_value_heads":     s.KVHeads,
		"pretraining_tp":          1,
		"rms_norm_eps":            1e-6,
		"rope_scaling":            nil,
		"rope_theta":              10000.0,
		"tie_word_embeddings":     false,
		"torch_dtype":             "float32",
		"use_cache":               true,
		"vocab_size":              s.VocabSize,
	}
	return build(m, ArchLlama)
}

// NewMistral returns the config of a new MistralForCausalLM with
// MistralConfig's keys and defaults (sliding_window 4096).
func NewMistral(s Sizes) (*Config, error) {
	s = s.withDefaults(4096 * 32)
	m := map[string]any{
		"architectures":           []string{ArchMistral},
		"attention_dropout":       0.0,
		"bos_token_id":            1,
		"eos_token_id":            2,
		"head_dim":                headDim(s),
		"hidden_act":              "silu",
		"hidden_size":             s.Hidden,
		"initializer_range":       0.02,
		"intermediate_size":       s.Intermediate,
		"max_position_embeddings": s.MaxPos,
		"model_type":              "mistral",
		"num_attention_heads":     s.Heads,
		"num_hidden_layers":       s.Layers,
		"num_key_value_heads":     s.KVHeads,
		"rms_norm_eps":            1e-6,
		"rope_theta":              10000.0,
		"sliding_window":          4096,
		"tie_word_embeddings":     false,
		"torch_dtype":             "float32",
		"use_cache":               true,
		"vocab_size":              s.VocabSize,
	}
	return build(m, ArchMistral)
}

// NewQwen2 returns the config of a new Qwen2ForCausalLM with Qwen2Config's
// keys and defaults (q/k/v biases, untied embeddings, no sliding window, no
// bos/eos token ids).
func NewQwen2(s Sizes) (*Config, error) {
	s = s.withDefaults(32768)
	m := map[string]any{
		"architectures":           []string{ArchQwen2},
		"attention_dropout":       0.0,
		"hidden_act":              "silu",
		"hidden_size":             s.Hidden,
		"initializer_range":       0.02,
		"intermediate_size":       s.Intermediate,
		"max_position_embeddings": s.MaxPos,
		"max_window_layers":       28,
		"model_type":              "qwen2",
		"num_attention_heads":     s.Heads,
		"num_hidden_layers":       s.Layers,
		"num_key_value_heads":     s.KVHeads,
		"rms_norm_eps":            1e-6,
		"rope_scaling":            nil,
		"rope_theta":              10000.0,
		"sliding_window":          nil,
		"tie_word_embeddings":     false,
		"torch_dtype":             "float32",
		"use_cache":               true,
		"use_sliding_window":      false,
		"vocab_size":              s.VocabSize,
	}
	return build(m, ArchQwen2)
}

// NewGPT2 returns the config of a new GPT2LMHeadModel with GPT2Config's keys
// and defaults (gelu_new, layer_norm_epsilon 1e-5, tied
// embeddings) except dropouts 0 (GPT2Config has 0.1): a new model trains
// without dropout unless its config is changed to ask for it. bos and eos are
// VocabSize-1, GPT-2's convention of
// <|endoftext|> being the last token (50256 in the original vocabulary).
func NewGPT2(s Sizes) (*Config, error) {
	if s.KVHeads != 0 && s.KVHeads != s.Heads {
		return nil, fmt.Errorf("new %s config: GPT-2 has no grouped-query attention (KVHeads %d != Heads %d)", ArchGPT2, s.KVHeads, s.Heads)
	}
	s = s.withDefaults(1024)
	var inner any // null: 4*n_embd
	if s.Intermediate != 0 {
		inner = s.Intermediate
	}
	m := map[string]any{
		"activation_function":             "gelu_new",
		"architectures":                   []string{ArchGPT2},
		"attn_pdrop":                      0.0,
		"bos_token_id":                    s.VocabSize - 1,
		"embd_pdrop":                      0.0,
		"eos_token_id":                    s.VocabSize - 1,
		"initializer_range":               0.02,
		"layer_norm_epsilon":              1e-5,
		"model_type":                      "gpt2",
		"n_embd":                          s.Hidden,
		"n_head":                          s.Heads,
		"n_inner":                         inner,
		"n_layer":                         s.Layers,
		"n_positions":                     s.MaxPos,
		"reorder_and_upcast_attn":         false,
		"resid_pdrop":                     0.0,
		"scale_attn_by_inverse_layer_idx": false,
		"scale_attn_weights":              true,
		"summary_activation":              nil,
		"summary_first_dropout":           0.1,
		"summary_proj_to_labels":          true,
		"summary_type":                    "cls_index",
		"summary_use_proj":                true,
		"torch_dtype":                     "float32",
		"use_cache":                       true,
		"vocab_size":                      s.VocabSize,
	}
	return build(m, ArchGPT2)
}

func (s Sizes) withDefaults(maxPos int) Sizes {
	if s.KVHeads == 0 {
		s.KVHeads = s.Heads
	}
	if s.MaxPos == 0 {
		s.MaxPos = maxPos
	}
	return s
}

// headDim is the derived head size, or 0 (rejected by Parse) when heads do
// not divide hidden.
func headDim(s Sizes) int {
	if s.Heads <= 0 || s.Hidden%s.Heads != 0 {
		return 0
	}
	return s.Hidden / s.Heads
}

// build serializes a constructor's key map and parses it back, so a new
// Config is validated and carries the same raw keys a loaded one would.
func build(m map[string]any, arch string) (*Config, error) {
	for k, v := range m {
		switch x := v.(type) {
		case float64: // keep Python's float spelling (0.0, 10000.0, 1e-06)
			m[k] = json.Number(pyFloat(x))
		case int:
			if k == "head_dim" && x == 0 {
				delete(m, k) // let Parse explain why hidden/heads fails
			}
		}
	}
	data, err := json.Marshal(m)
	if err != nil {
		return nil, err
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	var buf bytes.Buffer
	writePyValue(&buf, v, 0)
	return Parse(buf.Bytes(), "new "+arch+" config")
}
