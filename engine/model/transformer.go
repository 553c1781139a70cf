package model

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/arch"
	"github.com/gotune/gotune/engine/hfconfig"
)

// dims is the model geometry in the form the code uses.
type dims struct {
	fam                                   *arch.Family
	vocab, hidden, layers, heads, kvHeads int
	headDim, inter, maxPos                int
	rotDim                                int // leading elements of a head RoPE rotates
	eps                                   float32
	tied, qkvBias, oBias, mlpBias         bool
	act                                   engine.Act
	ropeTheta                             float64
	ropeScaling                           *hfconfig.RopeScaling
	ropeLayout                            engine.RopeLayout
	storage                               engine.DType // parameter dtype as built (Options.Storage)
	// Granite's scalars, 1 for the other families: embMul scales the
	// input embeddings, resMul each sub-layer output before its residual
	// add, and logitMul the logits (1/logits_scaling). Its
	// attention_multiplier is the layers' attention Scale
	// (attentionOptions).
	embMul, resMul, logitMul float32
	// embdDrop and residDrop are the training dropout of the first layer's
	// input and of each sub-layer's output (GPT-2's embd_pdrop,
	// resid_pdrop; dropout.go).
	embdDrop, residDrop float32
	// logitCap is final_logit_softcapping (Gemma): logits become
	// logitCap·tanh(logits/logitCap); 0 for none.
	logitCap float32
	// localTheta is the RoPE base of Gemma 3's sliding layers
	// (rope_local_base_freq, without scaling; block.localRope); 0 for
	// none.
	localTheta float64
	// embScale is where sqrt(hidden) scales the input embeddings (Gemma).
	embScale arch.EmbedScale
}

func (d *dims) qDim() int  { return d.heads * d.headDim }
func (d *dims) kvDim() int { return d.kvHeads * d.headDim }

// block is one transformer layer. Attention uses q, k, v (LLaMA) or the
// fused qkv (GPT-2, Phi-3); the MLP is gate/up/down (SwiGLU), the fused
// gateUp and down (Phi-3, GLM), or up/down with an activation (GPT-2's
// c_fc/c_proj, gate nil).
type block struct {
	norm1, norm2    norm
	qNorm, kNorm    norm // q/k norms (arch.QKNorm), nil without
	q, k, v, qkv, o Linear
	gate, up, down  Linear
	gateUp          Linear // fused gate|up (arch.GateUp), nil without
	// postAttn, postMLP normalise the sub-layer outputs of a
	// sandwich-norm family (arch.SandwichNorm: GLM-4, Gemma), nil
	// otherwise.
	postAttn, postMLP norm
	act               engine.Act
	hooks             [2]SublayerHook
	// attn is the layer's attention options from the config (scale, soft
	// cap, sliding window, attention dropout); layerAttention completes
	// them for a pass.
	attn engine.AttentionOptions
	// localRope says the layer's RoPE takes the local tables
	// (Transformer.ropeLocal: Gemma 3's sliding layers).
	localRope bool
}

// NamedModule is a module with its Hugging Face path.
type NamedModule struct {
	// Name is the module path, e.g. "model.layers.0.self_attn.q_proj".
	Name string
	// Layer is the transformer layer index, or -1 outside the layers.
	Layer int
	// Module is the module itself (a Linear, *RMSNorm, *LayerNorm or
	// *Embedding).
	Module Module
}

// slot is a registered module: get reads the current value, set (only for
// Linear slots) replaces it.
type slot struct {
	name  string
	layer int
	get   func() Module
	set   func(Linear)
}

// Transformer is the shared implementation of the decoder-only models:
// both Llama and GPT2 are Transformers built with different modules. It
// implements engine.CausalLM and Model.
type Transformer struct {
	d    dims
	cfg  *Config
	be   engine.Backend
	prec engine.Precision // activation dtypes and weight storage (SetPrecision)
	src  *source          // the checkpoint, while bfloat16 copies may need its exact values

	embed  *Embedding
	posEmb *Embedding // GPT-2 learned positions; nil for RoPE models
	blocks []*block
	normF  norm
	lmHead Linear
	rope   *ropeTables
	// ropeLocal are the RoPE tables of the layers marked
	// block.localRope (nil when there are none).
	ropeLocal *ropeTables

	slots  []slot
	byName map[string]*slot
	base   []*engine.Param // the checkpoint's tensors, in save order
	params map[string]*engine.Param
	// storedShapes holds the stored shapes (canonical name -> shape) while a model
	// is built to be filled from stored weights: param allocates only what
	// the files hold (see buildFrom), so a config asking for more than the
	// files contain is an error before anything that large is allocated.
	storedShapes map[string][]int
	shapes       map[string][]int // expected shape of every base parameter
	// quantAtLoad reports, while the model is built, the projection
	// weights that get no float storage because they are loaded
	// quantized (loadQuantizedWeights).
	quantAtLoad func(name string) bool

	prompt  Prompt
	prefix  Prefix
	version int // bumped when hooks, prompt or prefix change

	gradCheckpoint bool // recompute layer activations in backward (gradckpt.go)
	drop           dropoutDraw

	observer engine.BackwardObserver // told of each backward stage (stages.go)

	trainActs *actSet // training passes (and evaluation of the same shape)
	evalActs  *actSet // forward-only ForwardBackward of another shape
	inferActs *actSet // Logits
	last      *actSet // the buffers of the last ForwardBackward
}

// Backend returns the backend the weights live on.
func (m *Transformer) Backend() engine.Backend { return m.be }

// Config returns the model's configuration.
func (m *Transformer) Config() *Config { return m.cfg }

// Family returns the descriptor of the model's architecture.
func (m *Transformer) Family() *arch.Family { return m.d.fam }

// NumLayers returns the number of transformer layers.
func (m *Transformer) NumLayers() int { return len(m.blocks) }

// Modules lists every module with its Hugging Face path, in forward order,
// reflecting any replacement made with ReplaceLinear.
func (m *Transformer) Modules() []NamedModule {
	out := make([]NamedModule, 0, len(m.slots))
	for _, s := range m.slots {
		out = append(out, NamedModule{Name: s.name, Layer: s.layer, Module: s.get()})
	}
	return out
}

// Module returns the module at a Hugging Face path.
func (m *Transformer) Module(name string) (Module, bool) {
	s, ok := m.byName[name]
	if !ok {
		return nil, false
	}
	return s.get(), true
}

// Linear returns the Linear at a Hugging Face path such as
// "model.layers.0.self_attn.q_proj".
func (m *Transformer) Linear(name string) (Linear, bool) {
	s, ok := m.byName[name]
	if !ok || s.set == nil {
		return nil, false
	}
	l, ok := s.get().(Linear)
	return l, ok
}

// ReplaceLinear puts l in place of the Linear at name (typically a wrapper
// around the current one, as LoRA is). l must map the same numbers of
// features.
func (m *Transformer) ReplaceLinear(name string, l Linear) error {
	s, ok := m.byName[name]
	if !ok || s.set == nil {
		return fmt.Errorf("model: no linear module %q (known: %s)", name, m.linearNames())
	}
	old := s.get().(Linear)
	if l == nil || l.In() != old.In() || l.Out() != old.Out() {
		if l == nil {
			return fmt.Errorf("model: ReplaceLinear %q: nil module", name)
		}
		return fmt.Errorf("model: ReplaceLinear %q: replacement maps %d→%d features, the module maps %d→%d", name, l.In(), l.Out(), old.In(), old.Out())
	}
	s.set(l)
	return nil
}

func (m *Transformer) linearNames() string {
	var names []string
	for _, s := range m.slots {
		if s.set != nil && (s.layer <= 0) {
			names = append(names, s.name)
		}
	}
	return strings.Join(names, ", ") + ", ..."
}

// Params returns every parameter (base weights, replaced modules' own
// parameters, hooks, prompt and prefix) once each, in a stable order.
func (m *Transformer) Params() []*engine.Param {
	seen := make(map[*engine.Param]bool)
	var out []*engine.Param
	add := func(mod Module) {
		if mod == nil {
			return
		}
		for _, p := range mod.Params() {
			if !seen[p] {
				seen[p] = true
				out = append(out, p)
			}
		}
	}
	if m.prompt != nil {
		add(m.prompt)
	}
	if m.prefix != nil {
		add(m.prefix)
	}
	for _, s := range m.slots {
		add(s.get())
	}
	for _, b := range m.blocks {
		for _, h := range b.hooks {
			if h != nil {
				add(h)
			}
		}
	}
	return out
}

// BaseParams returns the checkpoint's own tensors, with their Hugging Face
// names, in the order Save writes them. Tied lm_head weights appear once
// (as the embedding).
func (m *Transformer) BaseParams() []*engine.Param { return append([]*engine.Param(nil), m.base...) }

// Param returns a base parameter by its Hugging Face name.
func (m *Transformer) Param(name string) (*engine.Param, bool) {
	p, ok := m.params[name]
	return p, ok
}

// register adds a module slot (set is nil for non-Linear modules); reindex
// must run once all are registered.
func (m *Transformer) register(name string, layer int, get func() Module, set func(Linear)) {
	m.slots = append(m.slots, slot{name: name, layer: layer, get: get, set: set})
}

// reindex builds byName once slots stopped growing (append may move the
// slice, so pointers into it are taken only now).
func (m *Transformer) reindex() {
	m.byName = make(map[string]*slot, len(m.slots))
	for i := range m.slots {
		m.byName[m.slots[i].name] = &m.slots[i]
	}
}

// sortedNames returns the keys of a set, sorted (for stable error text).
func sortedNames(set map[string]bool) []string {
	out := make([]string, 0, len(set))
	for k := range set {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// core returns the shared implementation behind a Model of this package.
func (m *Transformer) core() *Transformer { return m }
