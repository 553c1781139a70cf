package model

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/arch"
	"github.com/gotune/gotune/engine/hfconfig"
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
		if stored := storedLayers(m.storedShapes, d.fam.LayerPrefix); d.layers > stored {
			return nil, nil, fmt.Errorf("model: %s: the config has %d layers (num_hidden_layers) but the weights hold %d", where, d.layers, stored)
		}
	}
	m.quantAtLoad = quantizedAtLoad(w, opt)
	m.build()
	m.quantAtLoad = nil
	if d.fam.Positions == arch.Rotary {
		if m.rope, err = newRopeTables(be, &m.d, min(d.maxPos, 2048)); err != nil {
			m.freeAll()
			return nil, nil, fmt.Errorf("model: config: %w", err)
		}
		if d.localTheta > 0 {
			local := m.d
			local.ropeTheta, local.ropeScaling = d.localTheta, nil
			if m.ropeLocal, err = newRopeTables(be, &local, min(d.maxPos, 2048)); err != nil {
				m.freeAll()
				return nil, nil, fmt.Errorf("model: config: %w", err)
			}
		}
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
	if d.fam.Positions == arch.Learned {
		return &GPT2{m}, m, nil
	}
	return &Llama{m}, m, nil
}

// param creates a base parameter, trainable with weight decay for
// matrices and embeddings (decay) but not biases and norm weights.
// While building from stored weights (m.storedShapes), a parameter the weights
// lack or hold with another shape gets no storage (validate reports it).
func (m *Transformer) param(name string, decay bool, shape ...int) *engine.Param {
	return m.newParam(name, decay, true, shape...)
}

// newParam is param; alloc false leaves the parameter without storage
// (a projection that will be loaded quantized).
func (m *Transformer) newParam(name string, decay, alloc bool, shape ...int) *engine.Param {
	p := &engine.Param{Name: name, Trainable: true, Decay: decay}
	m.shapes[name] = shape
	if stored, ok := m.storedShapes[name]; alloc && (m.storedShapes == nil || ok && sameDims(stored, shape)) {
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
	name := prefix + ".weight"
	alloc := m.quantAtLoad == nil || !m.quantAtLoad(name)
	l := &Dense{Weight: m.newParam(name, true, alloc, shape...), Conv1D: conv1D}
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
	name := m.d.fam.LMHead
	if m.d.tied {
		m.lmHead = &Dense{Weight: m.embed.Weight}
	} else {
		m.lmHead = m.dense(name, m.d.hidden, m.d.vocab, false, false)
	}
	m.linearSlot(name, -1, &m.lmHead)
}

// storedLayers counts the distinct layer numbers among canonical tensor
// names starting with the family's layer prefix.
func storedLayers(src map[string][]int, prefix string) int {
	seen := map[int]bool{}
	for name := range src {
		rest, ok := strings.CutPrefix(name, prefix)
		if !ok {
			continue
		}
		num, _, _ := strings.Cut(rest, ".")
		if i, err := strconv.Atoi(num); err == nil && i >= 0 {
			seen[i] = true
		}
	}
	return len(seen)
}

// build creates the modules of the model's family (its descriptor, package
// arch): parameters in state-dict order (the order transformers saves
// them, so Save writes the same), modules registered in forward order.
func (m *Transformer) build() {
	d, f := &m.d, m.d.fam
	m.embed = &Embedding{Weight: m.param(f.Embed+".weight", true, d.vocab, d.hidden)}
	m.moduleSlot(f.Embed, -1, m.embed)
	if f.PosEmbed != "" {
		m.posEmb = &Embedding{Weight: m.param(f.PosEmbed+".weight", true, d.maxPos, d.hidden)}
		m.moduleSlot(f.PosEmbed, -1, m.posEmb)
	}
	for i := 0; i < d.layers; i++ {
		pre := f.LayerPath(i) + "."
		b := &block{act: d.act, attn: attentionOptions(m.cfg, i)}
		b.localRope = d.localTheta > 0 && m.cfg.LayerType(i) == hfconfig.SlidingAttention
		for _, mod := range f.Layer {
			m.buildModule(b, mod.Role, pre+mod.Path)
		}
		m.blocks = append(m.blocks, b)
		for r := arch.Role(0); r < arch.NumRoles; r++ {
			if !f.Has(r) {
				continue
			}
			if at := b.linearAt(r); at != nil {
				m.linearSlot(pre+f.Path(r), i, at)
			} else {
				m.moduleSlot(pre+f.Path(r), i, *b.normAt(r))
			}
		}
	}
	m.normF = m.norm(f.FinalNorm, d.hidden)
	m.moduleSlot(f.FinalNorm, -1, m.normF)
	m.buildHead()
}

// buildModule creates the parameters of one layer module.
func (m *Transformer) buildModule(b *block, r arch.Role, path string) {
	d, conv := &m.d, m.d.fam.Conv1D
	D, qd, kvd, I := d.hidden, d.qDim(), d.kvDim(), d.inter
	switch r {
	case arch.Norm1, arch.Norm2, arch.PostAttnNorm, arch.PostMLPNorm:
		*b.normAt(r) = m.norm(path, D)
	case arch.QNorm:
		b.qNorm = m.norm(path, m.qkNormWidth(qd))
	case arch.KNorm:
		b.kNorm = m.norm(path, m.qkNormWidth(kvd))
	case arch.Q:
		b.q = m.dense(path, D, qd, d.qkvBias, conv)
	case arch.K:
		b.k = m.dense(path, D, kvd, d.qkvBias, conv)
	case arch.V:
		b.v = m.dense(path, D, kvd, d.qkvBias, conv)
	case arch.QKV:
		b.qkv = m.dense(path, D, qd+2*kvd, d.qkvBias, conv)
	case arch.O:
		b.o = m.dense(path, qd, D, d.oBias, conv)
	case arch.Gate:
		b.gate = m.dense(path, D, I, d.mlpBias, conv)
	case arch.Up:
		b.up = m.dense(path, D, I, d.mlpBias, conv)
	case arch.GateUp:
		b.gateUp = m.dense(path, D, 2*I, d.mlpBias, conv)
	case arch.Down:
		b.down = m.dense(path, I, D, d.mlpBias, conv)
	default:
		panic(fmt.Sprintf("model: family %s: role %d has no builder", d.fam.Arch, r))
	}
}

// norm creates the family's normalisation of width n named path.
func (m *Transformer) norm(path string, n int) norm {
	w := m.param(path+".weight", false, n)
	switch m.d.fam.Norm {
	case arch.LayerNorm:
		return &LayerNorm{Weight: w, Bias: m.param(path+".bias", false, n), Eps: m.d.eps}
	case arch.OffsetRMSNorm:
		return &OffsetRMSNorm{Weight: w, Eps: m.d.eps}
	}
	return &RMSNorm{Weight: w, Eps: m.d.eps}
}

// postNorm reports whether the layers normalise their sub-layers'
// outputs (arch.PostNorm, and arch.SandwichNorm, which normalises their
// inputs too).
func (m *Transformer) postNorm() bool { return m.d.fam.Placement != arch.PreNorm }

// qkNormWidth is the width a q/k norm normalises over, for a projection
// of width full: one head (per-head norms) or the whole projection.
func (m *Transformer) qkNormWidth(full int) int {
	if m.d.fam.QKNorm == arch.PerHeadQKNorm {
		return m.d.headDim
	}
	return full
}

// linearAt returns where block b keeps its Linear of role r, or nil for
// a role that is not a Linear.
func (b *block) linearAt(r arch.Role) *Linear {
	switch r {
	case arch.Q:
		return &b.q
	case arch.K:
		return &b.k
	case arch.V:
		return &b.v
	case arch.QKV:
		return &b.qkv
	case arch.O:
		return &b.o
	case arch.Gate:
		return &b.gate
	case arch.Up:
		return &b.up
	case arch.GateUp:
		return &b.gateUp
	case arch.Down:
		return &b.down
	}
	return nil
}

// normAt returns where block b keeps its norm of role r.
func (b *block) normAt(r arch.Role) *norm {
	switch r {
	case arch.Norm1:
		return &b.norm1
	case arch.Norm2:
		return &b.norm2
	case arch.QNorm:
		return &b.qNorm
	case arch.KNorm:
		return &b.kNorm
	case arch.PostAttnNorm:
		return &b.postAttn
	case arch.PostMLPNorm:
		return &b.postMLP
	}
	panic(fmt.Sprintf("model: role %d is not a norm", r))
}

// ropeAt returns the RoPE tables of layer l (nil without rotary
// embeddings): the local ones on Gemma 3's sliding layers.
func (m *Transformer) ropeAt(l int) *ropeTables {
	if m.blocks[l].localRope {
		return m.ropeLocal
	}
	return m.rope
}
