package model

import "fmt"

// GPT2 is a GPT2LMHeadModel: LayerNorm, learned positions, gelu_new, a
// fused c_attn Conv1D (weights stored [in, out] and used as y = x·W + b),
// lm_head tied to the token embeddings.
type GPT2 struct{ *Transformer }

// buildGPT2 creates GPT2LMHeadModel's modules (Conv1D weights [in, out]).
func (m *Transformer) buildGPT2() {
	d := &m.d
	D := d.hidden
	m.embed = &Embedding{Weight: m.param("transformer.wte.weight", true, d.vocab, D)}
	m.posEmb = &Embedding{Weight: m.param("transformer.wpe.weight", true, d.maxPos, D)}
	m.moduleSlot("transformer.wte", -1, m.embed)
	m.moduleSlot("transformer.wpe", -1, m.posEmb)
	ln := func(prefix string) *LayerNorm {
		return &LayerNorm{
			Weight: m.param(prefix+".weight", false, D),
			Bias:   m.param(prefix+".bias", false, D),
			Eps:    d.eps,
		}
	}
	for i := 0; i < d.layers; i++ {
		pre := fmt.Sprintf("transformer.h.%d.", i)
		b := &block{act: d.act}
		b.norm1 = ln(pre + "ln_1")
		b.qkv = m.dense(pre+"attn.c_attn", D, 3*D, true, true)
		b.o = m.dense(pre+"attn.c_proj", D, D, true, true)
		b.norm2 = ln(pre + "ln_2")
		b.up = m.dense(pre+"mlp.c_fc", D, d.inter, true, true)
		b.down = m.dense(pre+"mlp.c_proj", d.inter, D, true, true)
		m.blocks = append(m.blocks, b)

		m.moduleSlot(pre+"ln_1", i, b.norm1)
		m.linearSlot(pre+"attn.c_attn", i, &b.qkv)
		m.linearSlot(pre+"attn.c_proj", i, &b.o)
		m.moduleSlot(pre+"ln_2", i, b.norm2)
		m.linearSlot(pre+"mlp.c_fc", i, &b.up)
		m.linearSlot(pre+"mlp.c_proj", i, &b.down)
	}
	m.normF = ln("transformer.ln_f")
	m.moduleSlot("transformer.ln_f", -1, m.normF)
	m.buildHead()
}
