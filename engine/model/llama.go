package model

// Llama is a rotary-position model (LlamaForCausalLM, MistralForCausalLM,
// Qwen2ForCausalLM and the other families of package arch with RoPE):
// RMSNorm, RoPE (either pair layout, rope_theta, linear or llama3
// scaling), a gated MLP, grouped-query attention, the biases the config
// enables, tied or untied lm_head. Its modules are built from the
// family's descriptor (package arch).
type Llama struct{ *Transformer }
