// Package hfconfig reads, validates, builds and writes Hugging Face
// config.json files for the architectures gotune trains (package arch
// describes each: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM,
// Qwen3ForCausalLM, Olmo2ForCausalLM, GraniteForCausalLM,
// Gemma2ForCausalLM, Gemma3ForCausalLM, Phi3ForCausalLM, GlmForCausalLM,
// Glm4ForCausalLM, GPT2LMHeadModel).
//
// Each architecture spells its hyper-parameters differently (GPT-2's n_embd
// is Llama's hidden_size) and leaves different ones to defaults; Config is
// the one normalized view model code reads, with transformers' defaults
// applied. The original JSON is kept so Save writes back every key the file
// had, changing only the fields that were modified: a checkpoint saved by
// gotune keeps the metadata (initializer_range, rope settings, custom keys)
// that transformers and other tools expect.
package hfconfig

import (
	"encoding/json"
	"fmt"
	"math"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/arch"
)

// FileName is the config file inside a model directory.
const FileName = "config.json"

// Supported architectures (the "architectures" entry of config.json);
// package arch describes each.
const (
	ArchLlama   = arch.Llama
	ArchMistral = arch.Mistral
	ArchQwen2   = arch.Qwen2
	ArchGPT2    = arch.GPT2
	ArchQwen3   = arch.Qwen3
	ArchOlmo2   = arch.Olmo2
	ArchGranite = arch.Granite
	ArchGemma2  = arch.Gemma2
	ArchGemma3  = arch.Gemma3
	ArchPhi3    = arch.Phi3
	ArchGlm     = arch.Glm
	ArchGlm4    = arch.Glm4
)

// SupportedArchitectures returns the architectures this package accepts,
// sorted.
func SupportedArchitectures() []string { return arch.Supported() }

// Family returns the descriptor of c's architecture (nil for an
// unsupported one, which Validate rejects).
func (c *Config) Family() *arch.Family {
	f, _ := arch.Lookup(c.Arch)
	return f
}

// RopeScaling is a supported "rope_scaling" entry: "linear" (positions
// divided by Factor), "llama3" (Llama 3.1's frequency-dependent scaling)
// or "longrope" (Phi-3's per-frequency short and long factors).
type RopeScaling struct {
	// Type is "linear", "llama3" or "longrope" (config.json's rope_type,
	// or the older key type).
	Type string
	// Factor is the scaling factor (linear, llama3); for longrope
	// max_position_embeddings / original_max_position_embeddings, as
	// transformers derives it for Phi-3.
	Factor float64
	// LowFreqFactor and HighFreqFactor bound the llama3 interpolation band.
	LowFreqFactor, HighFreqFactor float64
	// OriginalMaxPos is original_max_position_embeddings: llama3's, or
	// the pretraining context of longrope (Phi3Config's top-level key),
	// past which a pass uses the long factors.
	OriginalMaxPos int
	// ShortFactor and LongFactor divide longrope's rotary frequencies,
	// one per rotated pair: the short ones for passes that end within
	// OriginalMaxPos positions, the long ones past it.
	ShortFactor, LongFactor []float64
	// AttentionFactor multiplies longrope's cos and sin tables when the
	// file sets attention_factor; 0 means transformers' default,
	// sqrt(1 + ln(Factor)/ln(OriginalMaxPos)) for Factor > 1, else 1.
	AttentionFactor float64
}

// Config is a normalized model configuration. Fields hold the effective
// values, i.e. with transformers' per-architecture defaults applied.
type Config struct {
	// Arch is the architecture class, one of the Arch* constants.
	Arch string
	// ModelType is transformers' model_type ("llama", "mistral", "qwen2",
	// "gpt2").
	ModelType string
	// VocabSize is the number of token embeddings (vocab_size).
	VocabSize int
	// Hidden is the model width (hidden_size; GPT-2 n_embd).
	Hidden int
	// Layers is the number of decoder blocks (num_hidden_layers; n_layer).
	Layers int
	// Heads is the number of query heads (num_attention_heads; n_head).
	Heads int
	// KVHeads is the number of key/value heads for grouped-query attention
	// (num_key_value_heads, default Heads; always Heads for GPT-2).
	KVHeads int
	// HeadDim is the per-head width (head_dim, default Hidden/Heads).
	HeadDim int
	// Intermediate is the MLP width (intermediate_size; GPT-2 n_inner,
	// default 4*n_embd).
	Intermediate int
	// MaxPos is the longest supported sequence (max_position_embeddings;
	// n_positions). For GPT-2 it is the size of the position table.
	MaxPos int
	// NormEps is the normalization epsilon (rms_norm_eps;
	// layer_norm_epsilon).
	NormEps float64
	// RopeTheta is the RoPE base (rope_theta, default 10000); 0 for GPT-2,
	// which has learned positions instead.
	RopeTheta float64
	// RopeScaling is the rope_scaling entry, nil for none.
	RopeScaling *RopeScaling
	// PartialRotaryFactor is the share of each head that RoPE rotates
	// (partial_rotary_factor: Phi-3's default 1, GLM's 0.5; 0, meaning
	// whole heads, for the other families, which refuse the key unless
	// it is 1): the first RotaryDim elements.
	PartialRotaryFactor float64
	// TieEmbeddings says the LM head reuses the token embedding matrix
	// (tie_word_embeddings; transformers defaults it to false for Llama,
	// Mistral and Qwen2; GPT-2 is always tied).
	TieEmbeddings bool
	// AttentionBias says q_proj, k_proj and v_proj have biases (Qwen2:
	// always; Llama: attention_bias; GPT-2: c_attn always).
	AttentionBias bool
	// AttnOutBias says the attention output projection has a bias (Llama:
	// attention_bias; GPT-2: c_proj always; never for Qwen2 and Mistral).
	AttnOutBias bool
	// MLPBias says the MLP projections have biases (Llama mlp_bias; GPT-2
	// always).
	MLPBias bool
	// HiddenAct is the MLP activation (hidden_act; GPT-2
	// activation_function, default "gelu_new").
	HiddenAct string
	// BosTokenID is bos_token_id, nil when unset.
	BosTokenID *int
	// EosTokenIDs is eos_token_id (an int or a list in the file; empty when
	// unset).
	EosTokenIDs []int
	// PadTokenID is pad_token_id, nil when unset.
	PadTokenID *int
	// TorchDtype is torch_dtype (or the newer key dtype), e.g. "float32" or
	// "bfloat16"; empty when unset.
	TorchDtype string
	// SlidingWindow is Mistral's or Phi-3's sliding_window, Qwen2's and
	// Qwen3's when use_sliding_window is true, or the window of Gemma's
	// sliding layers; nil otherwise. LayerType and LayerWindow say which
	// layers it applies to (window.go).
	SlidingWindow *int
	// MaxWindowLayers is Qwen2's and Qwen3's max_window_layers: without
	// LayerTypes, the layers from this index on slide (0 for the other
	// families).
	MaxWindowLayers int
	// LayerTypes is the explicit layer_types of Qwen2, Qwen3 and Gemma,
	// each FullAttention or SlidingAttention; nil when config.json has
	// none. Read layer kinds with LayerType.
	LayerTypes []string
	// SlidingPattern is Gemma's default layer pattern, used without
	// layer_types: layer i slides unless i+1 is a multiple of it (2 for
	// Gemma 2, sliding_window_pattern for Gemma 3); 0 for the other
	// families. Kept as a number so a hostile num_hidden_layers is not a
	// list to allocate.
	SlidingPattern int
	// Gemma's attention and logit settings (Gemma2Config,
	// Gemma3TextConfig; zero for the other families):
	// QueryPreAttnScalar is query_pre_attn_scalar (scores are scaled by
	// its inverse square root), AttnSoftCap attn_logit_softcapping
	// (Gemma 2; 0 for none), FinalSoftCap final_logit_softcapping (0 for
	// none) and RopeLocalTheta Gemma 3's rope_local_base_freq, the RoPE
	// base of sliding layers (which take no rope_scaling; 0: the
	// sliding layers use RopeTheta).
	QueryPreAttnScalar, AttnSoftCap, FinalSoftCap, RopeLocalTheta float64
	// Granite's scalars (GraniteConfig; zero, unused, for the other
	// families):
	// EmbeddingMultiplier scales the input embeddings,
	// ResidualMultiplier every sub-layer output before its residual add,
	// AttentionMultiplier is the attention scale (in place of
	// 1/sqrt(head_dim)) and LogitsScaling divides the logits.
	EmbeddingMultiplier, ResidualMultiplier, AttentionMultiplier, LogitsScaling float64
	// Base-model dropout probabilities, applied in training only
	// (dropout.go): AttentionDropout on the attention probabilities
	// (attention_dropout; GPT-2's attn_pdrop), ResidDropout on each
	// sub-layer's output before its residual add (GPT-2's resid_pdrop) and
	// EmbdDropout on the first layer's input (GPT-2's embd_pdrop). GPT2Config
	// defaults each to 0.1; the others have attention_dropout only,
	// default 0.
	AttentionDropout, ResidDropout, EmbdDropout float64
	// Quantization is the checkpoint's bitsandbytes 4-bit
	// quantization_config, nil for an unquantized checkpoint.
	Quantization *Quantization

	// raw holds the file's top-level keys as parsed (or as a constructor
	// built them); orig is the Config they describe. Save writes raw back,
	// replacing the keys of fields that differ from orig.
	raw  map[string]json.RawMessage
	orig *Config
	// unknown and warnings are what Parse found about the file's keys
	// (honesty.go).
	unknown, warnings []string
}

// Load reads and validates DIR/config.json.
func Load(dir string) (*Config, error) {
	path := filepath.Join(dir, FileName)
	data, err := readFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(data, path)
}

// Act returns the engine activation for HiddenAct.
func (c *Config) Act() (engine.Act, error) {
	act, ok := activations[c.HiddenAct]
	if !ok {
		return 0, fmt.Errorf("unsupported activation %q (supported: %s)", c.HiddenAct, strings.Join(sortedKeys(activations), ", "))
	}
	return act, nil
}

// activations maps transformers ACT2FN names to engine activations.
// gelu_new, gelu_pytorch_tanh and gelu_fast are the same tanh formula.
var activations = map[string]engine.Act{
	"silu":              engine.ActSiLU,
	"swish":             engine.ActSiLU,
	"gelu_new":          engine.ActGELUTanh,
	"gelu_pytorch_tanh": engine.ActGELUTanh,
	"gelu_fast":         engine.ActGELUTanh,
	"gelu":              engine.ActGELU,
	"relu":              engine.ActReLU,
	"tanh":              engine.ActTanh,
	"sigmoid":           engine.ActSigmoid,
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// IsGPT2 reports whether the config describes a GPT-2 model.
func (c *Config) IsGPT2() bool { return c.Arch == ArchGPT2 }

// LearnedPositions reports whether the model has a learned position table
// (so no context longer than MaxPos), rather than rotary embeddings.
func (c *Config) LearnedPositions() bool {
	f := c.Family()
	return f != nil && f.Positions == arch.Learned
}

// Validate checks the fields for consistency; Parse and Save call it.
func (c *Config) Validate() error {
	fam := c.Family()
	if fam == nil {
		return fmt.Errorf("unsupported architecture %q; supported: %s", c.Arch, strings.Join(SupportedArchitectures(), ", "))
	}
	g := c.IsGPT2()
	k := fam.Keys
	positive := []struct {
		key string
		v   int
	}{
		{"vocab_size", c.VocabSize},
		{k.Hidden, c.Hidden},
		{k.Layers, c.Layers},
		{k.Heads, c.Heads},
		{k.KVHeads, c.KVHeads},
		{k.HeadDim, c.HeadDim},
		{k.Intermediate, c.Intermediate},
		{k.MaxPos, c.MaxPos},
	}
	for _, p := range positive {
		if p.v <= 0 {
			return fmt.Errorf("field %q must be a positive integer, got %d", p.key, p.v)
		}
	}
	if c.headDimDefault() && c.Hidden%c.Heads != 0 {
		return fmt.Errorf("field %q = %d is not divisible by %q = %d", k.Hidden, c.Hidden, k.Heads, c.Heads)
	}
	if c.Heads%c.KVHeads != 0 {
		return fmt.Errorf("field \"num_attention_heads\" = %d is not divisible by \"num_key_value_heads\" = %d", c.Heads, c.KVHeads)
	}
	if !(c.NormEps > 0) {
		return fmt.Errorf("field %q must be positive, got %v", k.NormEps, c.NormEps)
	}
	if _, err := c.Act(); err != nil {
		return fmt.Errorf("field %q: %w", k.Act, err)
	}
	if err := c.validateDropouts(); err != nil {
		return err
	}
	if g {
		switch {
		case c.KVHeads != c.Heads:
			return fmt.Errorf("GPT-2 has no grouped-query attention: KVHeads %d must equal n_head %d", c.KVHeads, c.Heads)
		case c.HeadDim*c.Heads != c.Hidden:
			return fmt.Errorf("GPT-2 head size must be n_embd/n_head = %d, got %d", c.Hidden/c.Heads, c.HeadDim)
		case !c.TieEmbeddings:
			return fmt.Errorf("GPT2LMHeadModel always ties its LM head to the token embeddings (tie_word_embeddings cannot be false)")
		case !c.AttentionBias || !c.AttnOutBias || !c.MLPBias:
			return fmt.Errorf("GPT-2 layers always have biases")
		case c.RopeTheta != 0 || c.RopeScaling != nil:
			return fmt.Errorf("GPT-2 uses learned positions, not RoPE")
		}
		return nil
	}
	if c.HeadDim%2 != 0 {
		return fmt.Errorf("field \"head_dim\" = %d must be even for rotary embeddings", c.HeadDim)
	}
	if !(c.RopeTheta > 0) {
		return fmt.Errorf("field \"rope_theta\" must be positive, got %v", c.RopeTheta)
	}
	if err := c.RopeScaling.validate(); err != nil {
		return fmt.Errorf("field \"rope_scaling\": %w", err)
	}
	if err := c.validateRotary(); err != nil {
		return err
	}
	if err := c.validateWindow(); err != nil {
		return err
	}
	switch c.Arch {
	case ArchQwen2:
		if !c.AttentionBias || c.AttnOutBias || c.MLPBias {
			return fmt.Errorf("Qwen2 has q/k/v biases only (AttentionBias true, AttnOutBias and MLPBias false)")
		}
	case ArchMistral:
		if c.AttentionBias || c.AttnOutBias || c.MLPBias {
			return fmt.Errorf("Mistral has no biases")
		}
	case ArchPhi3:
		if c.AttentionBias || c.AttnOutBias || c.MLPBias {
			return fmt.Errorf("Phi-3 has no biases")
		}
	case ArchGlm, ArchGlm4:
		if c.AttnOutBias || c.MLPBias {
			return fmt.Errorf("%s's attention_bias applies to q, k and v only (AttnOutBias and MLPBias must be false)", c.Arch)
		}
	case ArchGemma2, ArchGemma3:
		if err := c.validateGemma(); err != nil {
			return err
		}
		fallthrough
	case ArchLlama, ArchQwen3, ArchOlmo2, ArchGranite:
		if c.AttentionBias != c.AttnOutBias {
			return fmt.Errorf("%s's attention_bias applies to q, k, v and o projections alike (AttentionBias and AttnOutBias must agree)", c.Arch)
		}
		if c.Arch != ArchLlama && c.Arch != ArchGranite && c.MLPBias {
			return fmt.Errorf("%s has no MLP biases", c.Arch)
		}
	}
	return nil
}

// validateGemma checks Gemma's attention settings (validateWindow checks
// layer_types).
func (c *Config) validateGemma() error {
	if c.LayerTypes == nil && c.SlidingPattern <= 0 {
		return fmt.Errorf("field \"sliding_window_pattern\" must be positive, got %d", c.SlidingPattern)
	}
	switch {
	case !(c.QueryPreAttnScalar > 0):
		return fmt.Errorf("field \"query_pre_attn_scalar\" must be positive, got %v", c.QueryPreAttnScalar)
	case c.AttnSoftCap < 0 || c.FinalSoftCap < 0:
		return fmt.Errorf("soft caps must be positive or null, got attn_logit_softcapping %v, final_logit_softcapping %v", c.AttnSoftCap, c.FinalSoftCap)
	case c.RopeLocalTheta < 0:
		return fmt.Errorf("field \"rope_local_base_freq\" must be positive, got %v", c.RopeLocalTheta)
	}
	if c.SlidingWindow == nil {
		if l := c.firstSlidingLayer(); l >= 0 {
			return fmt.Errorf("layer %d is %s but field \"sliding_window\" is not a positive integer", l, SlidingAttention)
		}
	}
	return nil
}

// RotaryDim returns how many leading elements of each head RoPE rotates:
// int(HeadDim·PartialRotaryFactor) as transformers truncates it (all of
// them when PartialRotaryFactor is unset).
func (c *Config) RotaryDim() int {
	if c.PartialRotaryFactor == 0 {
		return c.HeadDim
	}
	return int(float64(c.HeadDim) * c.PartialRotaryFactor)
}

// validateRotary checks partial_rotary_factor and the rotary dimension it
// gives, and longrope's per-pair factors against it.
func (c *Config) validateRotary() error {
	f := c.PartialRotaryFactor
	if f != 0 && !(f > 0 && f <= 1) {
		return fmt.Errorf("field \"partial_rotary_factor\" must be in (0, 1], got %v", f)
	}
	rd := c.RotaryDim()
	if rd < 2 || rd%2 != 0 {
		return fmt.Errorf("field \"partial_rotary_factor\" = %v rotates %d of head_dim %d elements; RoPE needs a positive even number", f, rd, c.HeadDim)
	}
	if r := c.RopeScaling; r != nil && r.Type == "longrope" {
		if c.Arch != ArchPhi3 {
			return fmt.Errorf("field \"rope_scaling\": longrope is supported for %s only", ArchPhi3)
		}
		for _, fs := range []struct {
			key string
			v   []float64
		}{{"short_factor", r.ShortFactor}, {"long_factor", r.LongFactor}} {
			if len(fs.v) != rd/2 {
				return fmt.Errorf("field \"rope_scaling\": %s has %d values; the %d rotated elements of a head need %d", fs.key, len(fs.v), rd, rd/2)
			}
		}
	}
	return nil
}

// headDimDefault reports whether HeadDim is the derived Hidden/Heads (so
// heads must divide hidden) rather than an explicit head_dim.
func (c *Config) headDimDefault() bool {
	if c.IsGPT2() {
		return true
	}
	if _, ok := c.raw["head_dim"]; ok && !isNull(c.raw["head_dim"]) {
		return false
	}
	return c.Heads > 0 && c.HeadDim*c.Heads == c.Hidden
}

func (r *RopeScaling) validate() error {
	if r == nil {
		return nil
	}
	switch r.Type {
	case "linear":
		if !(r.Factor > 0) {
			return fmt.Errorf("linear: factor must be positive, got %v", r.Factor)
		}
	case "llama3":
		switch {
		case !(r.Factor > 0):
			return fmt.Errorf("llama3: factor must be positive, got %v", r.Factor)
		case !(r.LowFreqFactor > 0) || !(r.HighFreqFactor > r.LowFreqFactor):
			return fmt.Errorf("llama3: need 0 < low_freq_factor < high_freq_factor, got %v and %v", r.LowFreqFactor, r.HighFreqFactor)
		case r.OriginalMaxPos <= 0:
			return fmt.Errorf("llama3: original_max_position_embeddings must be positive, got %d", r.OriginalMaxPos)
		}
	case "longrope":
		return r.validateLongRope()
	default:
		return fmt.Errorf("rope scaling type %q is not supported (supported: %s)", r.Type, ropeTypes)
	}
	return nil
}

// ropeTypes lists the supported rope_scaling types for messages.
const ropeTypes = "linear, llama3, longrope"

// validateLongRope checks a longrope entry's own fields (Config.Validate
// checks the factor counts against the rotary dimension).
func (r *RopeScaling) validateLongRope() error {
	switch {
	case r.OriginalMaxPos <= 0:
		return fmt.Errorf("longrope: original_max_position_embeddings must be positive, got %d", r.OriginalMaxPos)
	case !(r.Factor > 0):
		return fmt.Errorf("longrope: factor (max_position_embeddings / original_max_position_embeddings) must be positive, got %v", r.Factor)
	case r.AttentionFactor < 0 || r.AttentionFactor != r.AttentionFactor:
		return fmt.Errorf("longrope: attention_factor must be positive, got %v", r.AttentionFactor)
	}
	for _, fs := range []struct {
		key string
		v   []float64
	}{{"short_factor", r.ShortFactor}, {"long_factor", r.LongFactor}} {
		for i, x := range fs.v {
			if !(x > 0) || x > 1e300 {
				return fmt.Errorf("longrope: %s[%d] must be a positive finite number, got %v", fs.key, i, x)
			}
		}
	}
	return nil
}

// LongRopeAttentionFactor is longrope's attention factor, which
// multiplies its cos and sin tables: AttentionFactor when the file sets
// it, else sqrt(1 + ln(Factor)/ln(OriginalMaxPos)) when the context was
// extended (Factor > 1), else 1 (transformers'
// _compute_longrope_parameters).
func (r *RopeScaling) LongRopeAttentionFactor() float64 {
	switch {
	case r.AttentionFactor != 0:
		return r.AttentionFactor
	case r.Factor <= 1:
		return 1
	}
	return math.Sqrt(1 + math.Log(r.Factor)/math.Log(float64(r.OriginalMaxPos)))
}

// Clone returns a deep copy (Save on the copy does not affect c).
func (c *Config) Clone() *Config {
	d := *c
	d.RopeScaling = clonePtr(c.RopeScaling)
	if r := d.RopeScaling; r != nil {
		r.ShortFactor = append([]float64(nil), r.ShortFactor...)
		r.LongFactor = append([]float64(nil), r.LongFactor...)
	}
	d.BosTokenID = clonePtr(c.BosTokenID)
	d.PadTokenID = clonePtr(c.PadTokenID)
	d.SlidingWindow = clonePtr(c.SlidingWindow)
	d.LayerTypes = slices.Clone(c.LayerTypes)
	d.EosTokenIDs = append([]int(nil), c.EosTokenIDs...)
	d.raw = make(map[string]json.RawMessage, len(c.raw))
	for k, v := range c.raw {
		d.raw[k] = v
	}
	return &d
}

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}

// RawKeys returns the top-level keys of the underlying JSON, sorted.
func (c *Config) RawKeys() []string { return sortedKeys(c.raw) }

// RawValue returns the JSON text of a top-level key as it will be saved
// (ignoring field changes not yet saved), and whether the key exists.
func (c *Config) RawValue(key string) (json.RawMessage, bool) {
	v, ok := c.raw[key]
	return v, ok
}

// SetRaw sets a top-level key that has no Config field (e.g. a custom
// annotation); v is marshaled to JSON. Keys of Config fields are rejected:
// set the field instead.
func (c *Config) SetRaw(key string, v any) error {
	if ownedKeys[key] {
		return fmt.Errorf("key %q is a Config field; set the field instead", key)
	}
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("key %q: %w", key, err)
	}
	if c.raw == nil {
		c.raw = make(map[string]json.RawMessage)
	}
	c.raw[key] = data
	return nil
}
