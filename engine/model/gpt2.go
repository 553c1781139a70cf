package model

// GPT2 is a model with learned positions (GPT2LMHeadModel: LayerNorm,
// gelu_new, a fused c_attn Conv1D with weights stored [in, out] and used
// as y = x·W + b, lm_head tied to the token embeddings). Its modules are
// built from the family's descriptor (package arch), as every family's
// are.
type GPT2 struct{ *Transformer }
