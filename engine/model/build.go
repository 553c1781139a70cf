package model

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// newTransformer builds a model with zero weights for cfg: every module,
// every base parameter (trainable, gradient not yet allocated) and the RoPE
// tables. Callers fill the weights.
func newTransformer(cfg *Config, be engine.Backend, opt Options) (Model, *Transformer, error) {
	if be == nil {
		return nil, nil, fmt.Errorf("model: nil backend")
	}
	d, err := dimsOf(cfg, opt)
	if err != nil {
		return nil, nil, err
	}
	m := &Transformer{d: d, cfg: cfg, be: be, params: map[string]*engine.Param{}}
	if d.arch == ArchGPT2 {
		m.buildGPT2()
	} else {
		m.buildLlama()
		inv, err := ropeInvFreq(d.headDim, d.ropeTheta, d.ropeScaling)
		if err != nil {
			return nil, nil, fmt.Errorf("model: config: %w", err)
		}
		m.rope = newRopeTables(be, inv, d.ropeLayout, min(d.maxPos, 2048))
	}
	m.reindex()
	if d.arch == ArchGPT2 {
		return &GPT2{m}, m, nil
	}
	return &Llama{m}, m, nil
}

// param creates a base parameter, trainable with weight decay for
// matrices and embeddings (decay) but not biases and norm weights.
func (m *Transformer) param(name string, decay bool, shape ...int) *engine.Param {
	p := &engine.Param{Name: name, W: m.be.Alloc(m.d.storage, shape...), Trainable: true, Decay: decay}
	m.base = append(m.base, p)
	m.params[name] = p
	return p
}

// dense creates an nn.Linear (W [out, in]) or, with conv1D, a GPT-2 Conv1D
// (W [in, out]) named prefix+".weight" / ".bias".
func (m *Transformer) dense(prefix string, in, out int, bias, conv1D bool) *Dense {
	shape := []int{out, in}
	if conv1D {
		shape = []int{in, out}
	}
	l := &Dense{Weight: m.param(prefix+".weight", true, shape...), Conv1D: conv1D}
	if bias {
		l.Bias = m.param(prefix+".bias", false, out)
	}
	return l
}

// linearSlot registers the Linear stored at *at under name.
func (m *Transformer) linearSlot(name string, layer int, at *Linear) {
	m.register(name, layer, func() Module { return *at }, func(l Linear) { *at = l })
}

// moduleSlot registers a fixed (non-replaceable) module.
func (m *Transformer) moduleSlot(name string, layer int, mod Module) {
	m.register(name, layer, func() Module { return mod }, nil)
}

// buildHead creates lm_head: its own [vocab, hidden] matrix, or a Dense
// reading the token embedding when tied (whose gradient then accumulates
// into the embedding's).
func (m *Transformer) buildHead() {
	if m.d.tied {
		m.lmHead = &Dense{Weight: m.embed.Weight}
	} else {
		m.lmHead = m.dense("lm_head", m.d.hidden, m.d.vocab, false, false)
	}
	m.linearSlot("lm_head", -1, &m.lmHead)
}
