package model

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine"
)

// newTransformer builds a model with zero weights for cfg: every module,
// every base parameter (trainable, gradient not yet allocated) and the RoPE
// tables. Callers fill the weights.
func newTransformer(cfg *Config, be engine.Backend, opt Options) (Model, *Transformer, error) {
	return buildFrom(cfg, be, opt, nil, "")
}

// buildFrom is newTransformer for a model that will be filled from w
// (nil: a fresh model). Sizes in a config come from a file that may be
// hostile or damaged (num_hidden_layers 1e9, vocab_size 1e12), so with w
// every size is checked against what w holds before it is allocated: the
// layer count against the layers stored, and every parameter's shape
// against its stored tensor (a parameter w lacks, or holds with another
// shape, gets no storage and is reported by validate, naming where).
func buildFrom(cfg *Config, be engine.Backend, opt Options, w weights, where string) (Model, *Transformer, error) {
	if be == nil {
		return nil, nil, fmt.Errorf("model: nil backend")
	}
	d, err := dimsOf(cfg, opt)
	if err != nil {
		return nil, nil, err
	}
	m := &Transformer{d: d, cfg: cfg, be: be, params: map[string]*engine.Param{}, shapes: map[string][]int{}}
	if w != nil {
		m.storedShapes = map[string][]int{}
		for _, n := range w.names() {
			m.storedShapes[m.canonical(n)] = w.shape(n)
		}
		if stored := storedLayers(m.storedShapes); d.layers > stored {
			return nil, nil, fmt.Errorf("model: %s: the config has %d layers (num_hidden_layers) but the weights hold %d", where, d.layers, stored)
		}
	}
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
	if w != nil {
		err := m.validate(w, where)
		m.storedShapes = nil
		if err != nil {
			m.freeAll()
			return nil, nil, err
		}
	}
	if d.arch == ArchGPT2 {
		return &GPT2{m}, m, nil
	}
	return &Llama{m}, m, nil
}

// param creates a base parameter, trainable with weight decay for
// matrices and embeddings (decay) but not biases and norm weights.
// While building from stored weights (m.storedShapes), a parameter the weights
// lack or hold with another shape gets no storage (validate reports it).
func (m *Transformer) param(name string, decay bool, shape ...int) *engine.Param {
	p := &engine.Param{Name: name, Trainable: true, Decay: decay}
	m.shapes[name] = shape
	if stored, ok := m.storedShapes[name]; m.storedShapes == nil || ok && sameDims(stored, shape) {
		p.W = m.be.Alloc(m.d.storage, shape...)
	}
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

// layerPrefixes start the tensor names of a numbered layer.
var layerPrefixes = []string{"model.layers.", "transformer.h."}

// storedLayers counts the distinct layer numbers among canonical tensor
// names.
func storedLayers(src map[string][]int) int {
	seen := map[int]bool{}
	for name := range src {
		for _, pre := range layerPrefixes {
			rest, ok := strings.CutPrefix(name, pre)
			if !ok {
				continue
			}
			num, _, _ := strings.Cut(rest, ".")
			if i, err := strconv.Atoi(num); err == nil && i >= 0 {
				seen[i] = true
			}
		}
	}
	return len(seen)
}
