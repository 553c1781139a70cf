// Package arch holds one descriptor per model family gotune trains: the
// tensor names and their layout, the norm kind and placement, the MLP
// kind, the attention options, how positions are encoded, the
// config.json spellings of the shared hyper-parameters, PEFT's default
// LoRA targets, where layer adapters hook and llama.cpp's names.
//
// It is the one place that knows how families differ. hfconfig (parsing,
// validation, saving), model (build, load, save), the methods (LoRA's
// default targets, adapter paths) and ggufexport read it; adding a family
// is a descriptor here plus the operations it really lacks (see
// docs/ARCHITECTURE.md, "Adding a model family").
package arch

import (
	"fmt"
	"sort"
)

// Norm is the kind of the normalisations of a family.
type Norm int

const (
	// RMSNorm is x / sqrt(mean(x²) + eps) ⊙ weight (no bias).
	RMSNorm Norm = iota
	// LayerNorm is (x − mean) / sqrt(var + eps) ⊙ weight + bias.
	LayerNorm
	// OffsetRMSNorm is x / sqrt(mean(x²) + eps) ⊙ (1 + weight): Gemma's
	// RMSNorm, whose stored weight is an offset from 1 (zero-initialised).
	OffsetRMSNorm
)

// Placement is where a family's two layer norms sit.
type Placement int

const (
	// PreNorm: x + f(norm(x)) (LLaMA, GPT-2).
	PreNorm Placement = iota
	// PostNorm: x + norm(f(x)), the norm on the sub-layer's output
	// before the residual add (OLMo-2's post_attention_layernorm and
	// post_feedforward_layernorm).
	PostNorm
	// SandwichNorm: x + post(f(pre(x))), a norm on the sub-layer's input
	// (Norm1, Norm2) and another on its output before the residual add
	// (PostAttnNorm, PostMLPNorm): GLM-4's input_layernorm /
	// post_self_attn_layernorm and post_attention_layernorm /
	// post_mlp_layernorm; Gemma 2's and 3's input_layernorm /
	// post_attention_layernorm and pre_feedforward_layernorm /
	// post_feedforward_layernorm.
	SandwichNorm
)

// MLP is the kind of a family's feed-forward sub-layer.
type MLP int

const (
	// GatedMLP is down(act(gate(x)) ⊙ up(x)) (SwiGLU with silu), with
	// gate and up as two projections or as one fused GateUp whose first
	// half of outputs is the gate (Phi-3's and GLM's gate_up_proj).
	GatedMLP MLP = iota
	// PlainMLP is down(act(up(x))) (GPT-2's c_fc/c_proj).
	PlainMLP
)

// Positions is how a family encodes token positions.
type Positions int

const (
	// Rotary: RoPE applied to queries and keys (rotate_half layout).
	Rotary Positions = iota
	// Learned: a position embedding table added to the token embeddings.
	Learned
)

// EmbedScale is how a family scales its input embeddings by
// sqrt(hidden_size) (Gemma's normalizer), computed in the model's dtype.
type EmbedScale int

const (
	// NoEmbedScale: embeddings are used as looked up.
	NoEmbedScale EmbedScale = iota
	// ScaleInputs multiplies the whole input sequence, virtual tokens
	// included (Gemma 2: Gemma2Model scales inputs_embeds).
	ScaleInputs
	// ScaleTokens multiplies the token embeddings in the embedding module
	// (Gemma 3's Gemma3TextScaledWordEmbedding), so virtual tokens a
	// method prepends to them are not scaled.
	ScaleTokens
)

// QKNorm is where a family normalises queries and keys before RoPE.
type QKNorm int

const (
	// NoQKNorm: queries and keys are used as projected.
	NoQKNorm QKNorm = iota
	// PerHeadQKNorm: an RMSNorm of width head_dim over every head of q
	// and k, weights [head_dim] (Qwen3's q_norm/k_norm).
	PerHeadQKNorm
	// FullQKNorm: an RMSNorm over the whole q (and k) projection, weights
	// [heads·head_dim] and [kv_heads·head_dim] (OLMo-2).
	FullQKNorm
)

// Role is the part a layer tensor plays.
type Role int

// The roles of a layer's modules. Forward order is the order of these
// constants.
const (
	Norm1        Role = iota // the attention sub-layer's norm (of its output when post-norm)
	Q                        // query projection
	K                        // key projection
	V                        // value projection
	QKV                      // fused query/key/value projection, outputs q|k|v (GPT-2 c_attn, Phi-3 qkv_proj)
	QNorm                    // query norm (QKNorm)
	KNorm                    // key norm (QKNorm)
	O                        // attention output projection
	PostAttnNorm             // the attention output's norm of a sandwich-norm family
	Norm2                    // the MLP sub-layer's norm (of its output when post-norm)
	Gate                     // gated MLP's gate projection
	Up                       // MLP input (up) projection
	GateUp                   // fused gate|up projection of a gated MLP (Phi-3, GLM gate_up_proj)
	Down                     // MLP output projection
	PostMLPNorm              // the MLP output's norm of a sandwich-norm family
	// NumRoles counts the roles.
	NumRoles
)

// Module is one module of a layer: its role and its path inside the
// layer (e.g. "self_attn.q_proj").
type Module struct {
	Role Role
	Path string
}

// Keys are a family's config.json spellings of the shared
// hyper-parameters (GPT-2's n_embd is LLaMA's hidden_size).
type Keys struct {
	Hidden, Layers, Heads, KVHeads, HeadDim, Intermediate, MaxPos, NormEps, Act string
}

// Family describes one architecture ("architectures"[0] of config.json).
type Family struct {
	// Arch is the architecture class, e.g. "LlamaForCausalLM".
	Arch string
	// ModelType is transformers' model_type, e.g. "llama".
	ModelType string
	// GGUF is llama.cpp's general.architecture ("" when there is no
	// mapping).
	GGUF string
	// Keys are the config.json spellings of the shared fields.
	Keys Keys

	// Norm is the normalisation kind.
	Norm Norm
	// Placement says whether Norm1 and Norm2 normalise the sub-layers'
	// inputs (pre-norm) or their outputs (post-norm).
	Placement Placement
	// MLP is the feed-forward kind.
	MLP MLP
	// Positions is how positions are encoded.
	Positions Positions
	// QKNorm is the query/key normalisation.
	QKNorm QKNorm
	// EmbedScale says whether and where the input embeddings are scaled
	// by sqrt(hidden_size).
	EmbedScale EmbedScale
	// Conv1D says projection weights are stored [in, out] (GPT-2's
	// Conv1D) instead of nn.Linear's [out, in].
	Conv1D bool
	// InterleavedRotary says RoPE rotates the pairs (2i, 2i+1) of each
	// head, as the checkpoint is laid out (GLM's rotate_half over
	// x[..., 0::2] and x[..., 1::2]), instead of rotate_half's
	// (i, i+d/2). Only the first int(head_dim·partial_rotary_factor)
	// elements of a head rotate in either layout (hfconfig).
	InterleavedRotary bool

	// Embed, PosEmbed ("" without learned positions), FinalNorm and
	// LMHead are module paths outside the layers.
	Embed, PosEmbed, FinalNorm, LMHead string
	// LayerPrefix starts the path of layer i: LayerPrefix + "i".
	LayerPrefix string
	// Layer lists a layer's modules in state-dict order (the order
	// transformers saves them, and gotune too).
	Layer []Module
	// StrippedPrefix is a prefix some checkpoints leave out of every
	// tensor name but the LM head's (GPT-2 conversions of OpenAI's
	// release omit "transformer.").
	StrippedPrefix string
	// Ignored are suffixes of stored tensors that are buffers, not
	// parameters (rotary inv_freq, GPT-2's attention masks).
	Ignored []string
	// ScaledInitSuffix names the residual projections whose initial
	// weights transformers scales by 1/sqrt(2·layers) ("" for none).
	ScaledInitSuffix string

	// LoRATargets are PEFT's default target_modules for the family
	// (TRANSFORMERS_MODELS_TO_LORA_TARGET_MODULES_MAPPING).
	LoRATargets []string
	// GGUFNames maps a tensor name inside a layer (after the layer
	// prefix and number) to llama.cpp's (after "blk.N.");
	// GGUFGlobal maps the tensors outside the layers.
	GGUFNames, GGUFGlobal map[string]string
	// GGUFInterleavedQK says llama.cpp's RoPE for this family pairs
	// elements (2i, 2i+1), so q/k rows are permuted on export.
	GGUFInterleavedQK bool
}

// LayerPath returns the module path of transformer layer i, e.g.
// "model.layers.3" (bottleneck adapters hook below it).
func (f *Family) LayerPath(i int) string { return fmt.Sprintf("%s%d", f.LayerPrefix, i) }

// Path returns the path of role r inside a layer, or "" when the family
// has no such module.
func (f *Family) Path(r Role) string {
	for _, m := range f.Layer {
		if m.Role == r {
			return m.Path
		}
	}
	return ""
}

// Has reports whether the family's layers have a module of role r.
func (f *Family) Has(r Role) bool { return f.Path(r) != "" }

// RotatedSuffixes are the layer-relative names of the tensors whose output
// rows RoPE rotates in rotate_half's layout (q and k projection weights
// and biases); nil for learned positions, a fused projection or
// interleaved rotary.
func (f *Family) RotatedSuffixes() []string {
	if f.Positions != Rotary || !f.Has(Q) || f.InterleavedRotary {
		return nil
	}
	var out []string
	for _, r := range []Role{Q, K} {
		out = append(out, "."+f.Path(r)+".")
	}
	return out
}

var registry = map[string]*Family{}

// register adds a family; called from init only.
func register(f *Family) {
	if _, dup := registry[f.Arch]; dup {
		panic("arch: family registered twice: " + f.Arch)
	}
	registry[f.Arch] = f
}

// Lookup returns the family of an architecture class.
func Lookup(arch string) (*Family, bool) {
	f, ok := registry[arch]
	return f, ok
}

// ByModelType returns the family whose model_type is mt.
func ByModelType(mt string) (*Family, bool) {
	for _, f := range registry {
		if f.ModelType == mt {
			return f, true
		}
	}
	return nil, false
}

// Supported returns every architecture class, sorted.
func Supported() []string {
	out := make([]string, 0, len(registry))
	for a := range registry {
		out = append(out, a)
	}
	sort.Strings(out)
	return out
}
