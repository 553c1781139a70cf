package model

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// Llama is a LlamaForCausalLM, MistralForCausalLM or Qwen2ForCausalLM:
// RMSNorm, RoPE (either pair layout, rope_theta, linear or llama3
// scaling), SwiGLU MLP, grouped-query attention, optional q/k/v biases
// (Qwen2, attention_bias), o_proj and MLP biases (attention_bias,
// mlp_bias), tied or untied lm_head.
type Llama struct{ *Transformer }

// buildLlama creates the LLaMA-family modules. Parameters are created in
// the order transformers' state_dict lists them, modules are registered
// in forward order.
func (m *Transformer) buildLlama() {
	d := &m.d
	D, qd, kvd := d.hidden, d.qDim(), d.kvDim()
	m.embed = &Embedding{Weight: m.param("model.embed_tokens.weight", true, d.vocab, D)}
	m.moduleSlot("model.embed_tokens", -1, m.embed)
	for i := 0; i < d.layers; i++ {
		pre := fmt.Sprintf("model.layers.%d.", i)
		b := &block{act: engine.ActSiLU}
		b.q = m.dense(pre+"self_attn.q_proj", D, qd, d.qkvBias, false)
		b.k = m.dense(pre+"self_attn.k_proj", D, kvd, d.qkvBias, false)
		b.v = m.dense(pre+"self_attn.v_proj", D, kvd, d.qkvBias, false)
		b.o = m.dense(pre+"self_attn.o_proj", qd, D, d.oBias, false)
		b.gate = m.dense(pre+"mlp.gate_proj", D, d.inter, d.mlpBias, false)
		b.up = m.dense(pre+"mlp.up_proj", D, d.inter, d.mlpBias, false)
		b.down = m.dense(pre+"mlp.down_proj", d.inter, D, d.mlpBias, false)
		b.norm1 = &RMSNorm{Weight: m.param(pre+"input_layernorm.weight", false, D), Eps: d.eps}
		b.norm2 = &RMSNorm{Weight: m.param(pre+"post_attention_layernorm.weight", false, D), Eps: d.eps}
		m.blocks = append(m.blocks, b)

		m.moduleSlot(pre+"input_layernorm", i, b.norm1)
		m.linearSlot(pre+"self_attn.q_proj", i, &b.q)
		m.linearSlot(pre+"self_attn.k_proj", i, &b.k)
		m.linearSlot(pre+"self_attn.v_proj", i, &b.v)
		m.linearSlot(pre+"self_attn.o_proj", i, &b.o)
		m.moduleSlot(pre+"post_attention_layernorm", i, b.norm2)
		m.linearSlot(pre+"mlp.gate_proj", i, &b.gate)
		m.linearSlot(pre+"mlp.up_proj", i, &b.up)
		m.linearSlot(pre+"mlp.down_proj", i, &b.down)
	}
	m.normF = &RMSNorm{Weight: m.param("model.norm.weight", false, D), Eps: d.eps}
	m.moduleSlot("model.norm", -1, m.normF)
	m.buildHead()
}
