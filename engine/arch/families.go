package arch

// Architecture classes gotune supports (config.json's "architectures").
const (
	Llama   = "LlamaForCausalLM"
	Mistral = "MistralForCausalLM"
	Qwen2   = "Qwen2ForCausalLM"
	Qwen3   = "Qwen3ForCausalLM"
	Olmo2   = "Olmo2ForCausalLM"
	Granite = "GraniteForCausalLM"
	Gemma2  = "Gemma2ForCausalLM"
	Gemma3  = "Gemma3ForCausalLM"
	Phi3    = "Phi3ForCausalLM"
	Glm     = "GlmForCausalLM"
	Glm4    = "Glm4ForCausalLM"
	GPT2    = "GPT2LMHeadModel"
)

// llamaKeys are the LLaMA family's spellings (shared by most families).
var llamaKeys = Keys{
	Hidden: "hidden_size", Layers: "num_hidden_layers", Heads: "num_attention_heads",
	KVHeads: "num_key_value_heads", HeadDim: "head_dim", Intermediate: "intermediate_size",
	MaxPos: "max_position_embeddings", NormEps: "rms_norm_eps", Act: "hidden_act",
}

// llamaLayer is a LLaMA decoder layer in state-dict order.
var llamaLayer = []Module{
	{Q, "self_attn.q_proj"}, {K, "self_attn.k_proj"}, {V, "self_attn.v_proj"}, {O, "self_attn.o_proj"},
	{Gate, "mlp.gate_proj"}, {Up, "mlp.up_proj"}, {Down, "mlp.down_proj"},
	{Norm1, "input_layernorm"}, {Norm2, "post_attention_layernorm"},
}

// llamaGGUF maps LLaMA-layout layer tensors to llama.cpp's names.
var llamaGGUF = map[string]string{
	"input_layernorm.weight":          "attn_norm.weight",
	"self_attn.q_proj.weight":         "attn_q.weight",
	"self_attn.q_proj.bias":           "attn_q.bias",
	"self_attn.k_proj.weight":         "attn_k.weight",
	"self_attn.k_proj.bias":           "attn_k.bias",
	"self_attn.v_proj.weight":         "attn_v.weight",
	"self_attn.v_proj.bias":           "attn_v.bias",
	"self_attn.o_proj.weight":         "attn_output.weight",
	"self_attn.o_proj.bias":           "attn_output.bias",
	"post_attention_layernorm.weight": "ffn_norm.weight",
	"mlp.gate_proj.weight":            "ffn_gate.weight",
	"mlp.gate_proj.bias":              "ffn_gate.bias",
	"mlp.up_proj.weight":              "ffn_up.weight",
	"mlp.up_proj.bias":                "ffn_up.bias",
	"mlp.down_proj.weight":            "ffn_down.weight",
	"mlp.down_proj.bias":              "ffn_down.bias",
}

var llamaGGUFGlobal = map[string]string{
	"model.embed_tokens.weight": "token_embd.weight",
	"model.norm.weight":         "output_norm.weight",
	"lm_head.weight":            "output.weight",
}

// withGGUF returns base's llama.cpp names with extra added (a new map).
func withGGUF(base, extra map[string]string) map[string]string {
	out := make(map[string]string, len(base)+len(extra))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

// llamaFamily returns a LLaMA-layout family (LLaMA, Mistral, Qwen2 and
// the families derived from them), to be adjusted by the caller.
func llamaFamily(archName, modelType, gguf string) *Family {
	return &Family{
		Arch: archName, ModelType: modelType, GGUF: gguf, Keys: llamaKeys,
		Norm: RMSNorm, MLP: GatedMLP, Positions: Rotary,
		Embed: "model.embed_tokens", FinalNorm: "model.norm", LMHead: "lm_head",
		LayerPrefix: "model.layers.", Layer: llamaLayer,
		Ignored:     []string{".rotary_emb.inv_freq"},
		LoRATargets: []string{"q_proj", "v_proj"},
		GGUFNames:   llamaGGUF, GGUFGlobal: llamaGGUFGlobal,
	}
}

func init() {
	l := llamaFamily(Llama, "llama", "llama")
	l.GGUFInterleavedQK = true
	register(l)
	m := llamaFamily(Mistral, "mistral", "llama")
	m.GGUFInterleavedQK = true
	register(m)
	register(llamaFamily(Qwen2, "qwen2", "qwen2"))
	// Qwen3: LLaMA's layout plus an RMSNorm over every head of q and k
	// before RoPE (llama.cpp's attn_q_norm/attn_k_norm of width head_dim);
	// NeoX RoPE in llama.cpp, so no q/k permutation.
	q3 := llamaFamily(Qwen3, "qwen3", "qwen3")
	q3.QKNorm = PerHeadQKNorm
	q3.Layer = []Module{
		{Q, "self_attn.q_proj"}, {K, "self_attn.k_proj"}, {V, "self_attn.v_proj"}, {O, "self_attn.o_proj"},
		{QNorm, "self_attn.q_norm"}, {KNorm, "self_attn.k_norm"},
		{Gate, "mlp.gate_proj"}, {Up, "mlp.up_proj"}, {Down, "mlp.down_proj"},
		{Norm1, "input_layernorm"}, {Norm2, "post_attention_layernorm"},
	}
	q3.GGUFNames = withGGUF(llamaGGUF, map[string]string{
		"self_attn.q_norm.weight": "attn_q_norm.weight",
		"self_attn.k_norm.weight": "attn_k_norm.weight",
	})
	register(q3)
	// OLMo-2: LLaMA's modules with the norms moved to the sub-layers'
	// outputs (post-norm: llama.cpp's post_attention_norm and
	// post_ffw_norm)
	// and an RMSNorm over the whole q and k projections before RoPE; NeoX
	// RoPE in llama.cpp, so no q/k permutation.
	o2 := llamaFamily(Olmo2, "olmo2", "olmo2")
	o2.Placement = PostNorm
	o2.QKNorm = FullQKNorm
	o2.Layer = []Module{
		{Q, "self_attn.q_proj"}, {K, "self_attn.k_proj"}, {V, "self_attn.v_proj"}, {O, "self_attn.o_proj"},
		{QNorm, "self_attn.q_norm"}, {KNorm, "self_attn.k_norm"},
		{Gate, "mlp.gate_proj"}, {Up, "mlp.up_proj"}, {Down, "mlp.down_proj"},
		{Norm1, "post_attention_layernorm"}, {Norm2, "post_feedforward_layernorm"},
	}
	o2.GGUFNames = withGGUF(llamaGGUF, map[string]string{
		"self_attn.q_norm.weight":           "attn_q_norm.weight",
		"self_attn.k_norm.weight":           "attn_k_norm.weight",
		"post_attention_layernorm.weight":   "post_attention_norm.weight",
		"post_feedforward_layernorm.weight": "post_ffw_norm.weight",
	})
	delete(o2.GGUFNames, "input_layernorm.weight")
	register(o2)
	// Granite: LLaMA's modules; its embedding, residual and attention
	// multipliers and logits scaling are hyper-parameters (hfconfig).
	// llama.cpp's granite uses LLaMA's interleaved RoPE.
	g := llamaFamily(Granite, "granite", "granite")
	g.GGUFInterleavedQK = true
	register(g)
	register(gemmaFamily(Gemma2, "gemma2", "gemma2", ScaleInputs, NoQKNorm))
	register(gemmaFamily(Gemma3, "gemma3_text", "gemma3", ScaleTokens, PerHeadQKNorm))
	register(phi3Family())
	register(glmFamily(Glm, "glm", false))
	register(glmFamily(Glm4, "glm4", true))
	register(&Family{
		Arch: GPT2, ModelType: "gpt2", GGUF: "gpt2",
		Keys: Keys{
			Hidden: "n_embd", Layers: "n_layer", Heads: "n_head", KVHeads: "n_head",
			HeadDim: "n_embd/n_head", Intermediate: "n_inner", MaxPos: "n_positions",
			NormEps: "layer_norm_epsilon", Act: "activation_function",
		},
		Norm: LayerNorm, MLP: PlainMLP, Positions: Learned, Conv1D: true,
		Embed: "transformer.wte", PosEmbed: "transformer.wpe", FinalNorm: "transformer.ln_f", LMHead: "lm_head",
		LayerPrefix: "transformer.h.",
		Layer: []Module{
			{Norm1, "ln_1"}, {QKV, "attn.c_attn"}, {O, "attn.c_proj"},
			{Norm2, "ln_2"}, {Up, "mlp.c_fc"}, {Down, "mlp.c_proj"},
		},
		StrippedPrefix:   "transformer.",
		Ignored:          []string{".attn.bias", ".attn.masked_bias"},
		ScaledInitSuffix: ".c_proj.weight",
		LoRATargets:      []string{"c_attn"},
		GGUFNames: map[string]string{
			"ln_1.weight":        "attn_norm.weight",
			"ln_1.bias":          "attn_norm.bias",
			"attn.c_attn.weight": "attn_qkv.weight",
			"attn.c_attn.bias":   "attn_qkv.bias",
			"attn.c_proj.weight": "attn_output.weight",
			"attn.c_proj.bias":   "attn_output.bias",
			"ln_2.weight":        "ffn_norm.weight",
			"ln_2.bias":          "ffn_norm.bias",
			"mlp.c_fc.weight":    "ffn_up.weight",
			"mlp.c_fc.bias":      "ffn_up.bias",
			"mlp.c_proj.weight":  "ffn_down.weight",
			"mlp.c_proj.bias":    "ffn_down.bias",
		},
		GGUFGlobal: map[string]string{
			"transformer.wte.weight":  "token_embd.weight",
			"transformer.wpe.weight":  "position_embd.weight",
			"transformer.ln_f.weight": "output_norm.weight",
			"transformer.ln_f.bias":   "output_norm.bias",
			"lm_head.weight":          "output.weight",
		},
	})
}

// gemmaFamily returns Gemma 2 or 3 (text): LLaMA's projections with
// (1 + w) RMSNorms before and after each sub-layer (SandwichNorm), a
// GeGLU MLP (the activation is hidden_activation), input embeddings
// scaled by sqrt(hidden_size) and, for Gemma 3, per-head (1 + w) q/k
// norms. Their attention scale, soft caps, sliding windows and local
// RoPE base are hyper-parameters (hfconfig). llama.cpp's gemma2 and
// gemma3 rotate halves (NeoX), call the input norm attn_norm and the
// pre-MLP norm ffn_norm, and read the LM head from token_embd only (an
// untied Gemma is not exported).
func gemmaFamily(archName, modelType, gguf string, scale EmbedScale, qk QKNorm) *Family {
	f := llamaFamily(archName, modelType, gguf)
	f.Keys.Act = "hidden_activation"
	f.Norm, f.Placement, f.EmbedScale, f.QKNorm = OffsetRMSNorm, SandwichNorm, scale, qk
	layer := []Module{{Q, "self_attn.q_proj"}, {K, "self_attn.k_proj"}, {V, "self_attn.v_proj"}, {O, "self_attn.o_proj"}}
	if qk != NoQKNorm {
		layer = append(layer, Module{QNorm, "self_attn.q_norm"}, Module{KNorm, "self_attn.k_norm"})
	}
	f.Layer = append(layer,
		Module{Gate, "mlp.gate_proj"}, Module{Up, "mlp.up_proj"}, Module{Down, "mlp.down_proj"},
		Module{Norm1, "input_layernorm"}, Module{PostAttnNorm, "post_attention_layernorm"},
		Module{Norm2, "pre_feedforward_layernorm"}, Module{PostMLPNorm, "post_feedforward_layernorm"})
	f.GGUFNames = withGGUF(llamaGGUF, map[string]string{
		"self_attn.q_norm.weight":           "attn_q_norm.weight",
		"self_attn.k_norm.weight":           "attn_k_norm.weight",
		"post_attention_layernorm.weight":   "post_attention_norm.weight",
		"pre_feedforward_layernorm.weight":  "ffn_norm.weight",
		"post_feedforward_layernorm.weight": "post_ffw_norm.weight",
	})
	return f
}

// phi3Family is Phi-3: LLaMA's layer with q, k, v fused into qkv_proj
// (outputs q|k|v) and gate, up into gate_up_proj (outputs gate|up), in
// Phi3Attention's and Phi3MLP's state-dict order (o_proj is defined
// before qkv_proj). PEFT has no default LoRA targets for phi3 (it asks
// for target_modules); gotune's default is qkv_proj, the fused
// projection that holds q and v, as GPT-2's is c_attn. llama.cpp's phi3
// keeps both fused tensors (attn_qkv, ffn_up holding gate|up) and uses
// NeoX RoPE, rotate_half's pairing.
func phi3Family() *Family {
	f := llamaFamily(Phi3, "phi3", "phi3")
	f.Layer = []Module{
		{O, "self_attn.o_proj"}, {QKV, "self_attn.qkv_proj"},
		{GateUp, "mlp.gate_up_proj"}, {Down, "mlp.down_proj"},
		{Norm1, "input_layernorm"}, {Norm2, "post_attention_layernorm"},
	}
	f.LoRATargets = []string{"qkv_proj"}
	f.GGUFNames = map[string]string{
		"input_layernorm.weight":          "attn_norm.weight",
		"self_attn.qkv_proj.weight":       "attn_qkv.weight",
		"self_attn.o_proj.weight":         "attn_output.weight",
		"post_attention_layernorm.weight": "ffn_norm.weight",
		"mlp.gate_up_proj.weight":         "ffn_up.weight",
		"mlp.down_proj.weight":            "ffn_down.weight",
	}
	return f
}

// glmFamily is GLM (GlmForCausalLM) or, with sandwich, GLM-4
// (Glm4ForCausalLM, whose layers also normalise each sub-layer's output:
// post_self_attn_layernorm, post_mlp_layernorm): LLaMA's attention with
// RoPE over interleaved pairs of the first half of each head
// (partial_rotary_factor) and the MLP's gate and up fused into
// gate_up_proj. PEFT has no default LoRA targets for glm or glm4; gotune
// uses LLaMA's q_proj, v_proj. llama.cpp's glm4 (GLM-4 only: GLM's
// chatglm mapping is not checked here) keeps gate_up_proj fused as ffn_up
// and rotates interleaved pairs, as the checkpoint does, so q and k are
// exported unpermuted.
func glmFamily(archName, modelType string, sandwich bool) *Family {
	f := llamaFamily(archName, modelType, "")
	f.InterleavedRotary = true
	f.Layer = []Module{
		{Q, "self_attn.q_proj"}, {K, "self_attn.k_proj"}, {V, "self_attn.v_proj"}, {O, "self_attn.o_proj"},
		{GateUp, "mlp.gate_up_proj"}, {Down, "mlp.down_proj"},
		{Norm1, "input_layernorm"}, {Norm2, "post_attention_layernorm"},
	}
	f.GGUFNames, f.GGUFGlobal = nil, nil
	if sandwich {
		f.Placement = SandwichNorm
		f.Layer = append(f.Layer, Module{PostAttnNorm, "post_self_attn_layernorm"}, Module{PostMLPNorm, "post_mlp_layernorm"})
		f.GGUF, f.GGUFGlobal = "glm4", llamaGGUFGlobal
		// LLaMA's names (q/k/v with biases) plus the fused MLP input and
		// the output norms.
		f.GGUFNames = withGGUF(llamaGGUF, map[string]string{
			"mlp.gate_up_proj.weight":         "ffn_up.weight",
			"post_self_attn_layernorm.weight": "post_attention_norm.weight",
			"post_mlp_layernorm.weight":       "post_ffw_norm.weight",
		})
	}
	return f
}
