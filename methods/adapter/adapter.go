// Package adapter implements bottleneck adapters (Houlsby et al., 2019;
// Pfeiffer et al., 2020; the parallel form of He et al., 2021): small
// trainable two-layer networks added to a frozen transformer.
//
// An adapter maps a sub-layer's output h (or, in the parallel variant, the
// MLP's normalised input xn) to
//
//	f(v) = s · (up(act(down(v))))
//
// with down = Linear(hidden, bottleneck) and up = Linear(bottleneck,
// hidden), both with bias, and adds it before the residual add:
//
//	houlsby   attention: h + f(h) after o_proj (GPT-2: attn.c_proj), and
//	          MLP: h + f(h) after down_proj (GPT-2: mlp.c_proj)
//	pfeiffer  MLP only: h + f(h)
//	parallel  MLP only: mlp(xn) + f(xn)
//
// They plug into the model as model.SublayerHook values. Apply freezes the
// base model and initialises every adapter near the identity: the
// down-projection as nn.Linear (kaiming-uniform, U(±1/sqrt(hidden))) with
// zero bias, the up-projection and its bias at zero, so the adapted model
// starts out computing exactly the base model.
//
// # File format
//
// PEFT has no bottleneck adapters; gotune saves them in PEFT's folder
// layout with a peft_type of its own, "BOTTLENECK":
//
// adapter_config.json (keys sorted, two-space indentation, as PEFT writes
// its configurations):
//
//	adapter_variant          "houlsby", "pfeiffer" or "parallel"
//	base_model_name_or_path  the model trained on (or null)
//	bottleneck_size          the bottleneck width b
//	inference_mode           true
//	non_linearity            "relu", "gelu" (exact erf GELU), "silu", "tanh"
//	peft_type                "BOTTLENECK"
//	reduction_factor         hidden / b as configured
//	scaling                  s
//	target_layers            list of layer indices, or null for every layer
//	task_type                "CAUSAL_LM"
//
// adapter_model.safetensors (float32): for each adapted layer i and site
// (attn_adapter for Houlsby's attention adapter, mlp_adapter otherwise)
//
//	base_model.model.<layer>.<site>.down_proj.weight  [b, hidden]
//	base_model.model.<layer>.<site>.down_proj.bias    [b]
//	base_model.model.<layer>.<site>.up_proj.weight    [hidden, b]
//	base_model.model.<layer>.<site>.up_proj.bias      [hidden]
//
// where <layer> is model.layers.i (LLaMA family) or transformer.h.i
// (GPT-2). Weights are nn.Linear's [out, in].
package adapter

import (
	"fmt"
	"math"
	"math/rand/v2"
	"slices"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fused"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/methods/internal/params"
	"github.com/gotune/gotune/methods/peft"
)

// site is where in a layer an adapter sits.
type site int

const (
	siteAttn site = iota
	siteMLP
)

// name is the site's module name within a layer.
func (s site) name() string {
	if s == siteAttn {
		return "attn_adapter"
	}
	return "mlp_adapter"
}

func (s site) hookSite() model.Site {
	if s == siteAttn {
		return model.SiteAttn
	}
	return model.SiteMLP
}

// Bottleneck is one adapter module, installed as a model.SublayerHook.
type Bottleneck struct {
	// Path is the module path, e.g. "model.layers.0.mlp_adapter".
	Path string
	// Layer is the transformer layer the adapter belongs to.
	Layer int
	site  site
	// DownW [b, hidden], DownB [b], UpW [hidden, b] and UpB [hidden] are
	// the projections.
	DownW, DownB, UpW, UpB *engine.Param

	be       engine.Backend
	act      engine.Act
	scale    float32
	parallel bool // input xn instead of h
	hidden   int
	b        int

	// Activations of the last Forward (N rows), kept for Backward.
	n        int
	z, a     *engine.Tensor // down output before and after act [N, b]
	released bool
}

// newBottleneck allocates a zero adapter.
func newBottleneck(be engine.Backend, path string, layer int, st site, hidden, b int, act engine.Act, scale float32, parallel bool) *Bottleneck {
	p := func(leaf string, decay bool, shape ...int) *engine.Param {
		return &engine.Param{Name: peft.Key(path, leaf), W: be.Alloc(engine.Float32, shape...), Decay: decay}
	}
	return &Bottleneck{
		Path: path, Layer: layer, site: st,
		DownW: p("down_proj.weight", true, b, hidden), DownB: p("down_proj.bias", false, b),
		UpW: p("up_proj.weight", true, hidden, b), UpB: p("up_proj.bias", false, hidden),
		be: be, act: act, scale: scale, parallel: parallel, hidden: hidden, b: b,
	}
}

// Params returns the four tensors in save order.
func (m *Bottleneck) Params() []*engine.Param {
	return []*engine.Param{m.DownW, m.DownB, m.UpW, m.UpB}
}

// buffers (re)allocates the per-row activations for n rows in dtype dt.
func (m *Bottleneck) buffers(n int, dt engine.DType) {
	if m.n == n && m.z != nil && m.z.DType() == dt {
		return
	}
	m.freeBuffers()
	m.n = n
	m.z = m.be.Alloc(dt, n, m.b)
	m.a = m.be.Alloc(dt, n, m.b)
}

func (m *Bottleneck) freeBuffers() {
	for _, t := range []*engine.Tensor{m.z, m.a} {
		if t != nil {
			m.be.Free(t)
		}
	}
	m.z, m.a, m.n = nil, nil, 0
}

// input returns what the adapter reads: h, or xn for the parallel form.
func (m *Bottleneck) input(h, xn *engine.Tensor) *engine.Tensor {
	if m.parallel {
		return xn
	}
	return h
}

// Forward computes y = h + s·(act(v·Downᵀ + bd)·Upᵀ + bu), v = h or xn,
// with the fused adapter recipe (fused.AdapterForward).
func (m *Bottleneck) Forward(y, h, xn, x *engine.Tensor, train bool) {
	v := m.input(h, xn)
	// The bottleneck activations take the compute copies' dtype: bfloat16
	// under mixed precision, like every product's output.
	m.buffers(v.Rows(), m.DownW.Compute().DType())
	fused.AdapterForward(m.be, y, m.z, m.a, v, h, m.operands())
}

// Backward accumulates dh (identity path, and the adapter's path for the
// serial variants), dxn (parallel variant, when wanted) and the
// gradients of the trainable projections, with the fused adapter recipe
// (fused.AdapterBackward).
func (m *Bottleneck) Backward(dh, dxn, dx, dy, h, xn, x *engine.Tensor) {
	din := dh
	if m.parallel {
		din = dxn
	}
	fused.AdapterBackward(m.be, din, dh, model.Grad(m.DownW), model.Grad(m.DownB), model.Grad(m.UpW), model.Grad(m.UpB),
		dy, m.input(h, xn), m.z, m.a, m.operands())
}

// operands returns the adapter's tensors for the fused recipes: the
// projections' compute copies (bfloat16 under mixed precision), the
// biases' float32 values.
func (m *Bottleneck) operands() fused.Bottleneck {
	return fused.Bottleneck{Down: m.DownW.Compute(), DownBias: m.DownB.W, Up: m.UpW.Compute(), UpBias: m.UpB.W, Act: m.act, Scale: m.scale}
}

// release frees the adapter's activation buffers.
func (m *Bottleneck) release() {
	m.freeBuffers()
	m.released = true
}

// Adapter is the set of bottleneck adapters installed in a model.
type Adapter struct {
	cfg     Config
	m       model.Model
	modules []*Bottleneck
	removed bool
}

// LayerPath returns the Hugging Face module path of transformer layer i.
func LayerPath(m model.Model, i int) string {
	if m.Arch() == model.ArchGPT2 {
		return fmt.Sprintf("transformer.h.%d", i)
	}
	return fmt.Sprintf("model.layers.%d", i)
}

// Apply installs freshly initialised adapters (see the package
// documentation) and freezes every other parameter of m.
func Apply(m model.Model, cfg Config) (*Adapter, error) {
	a, err := install(m, cfg)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x61646170)) // "adap"
	for _, mod := range a.modules {
		// nn.Linear's kaiming_uniform_(a=sqrt(5)): U(±1/sqrt(fan_in)).
		mod.be.Upload(mod.DownW.W, params.Uniform(rng, mod.DownW.W.Len(), 1/math.Sqrt(float64(mod.hidden))))
	}
	return a, nil
}

// LoadOptions adjust how Load installs an adapter.
type LoadOptions struct {
	// BaseModel, when not empty, replaces the file\'s base_model_name_or_path
	// (the model the adapter is now trained on).
	BaseModel string
	// Frozen loads the adapter for inference: its tensors do not train.
	Frozen bool
}

// Load installs the bottleneck adapters of an adapter folder
// (adapter_config.json with peft_type BOTTLENECK and
// adapter_model.safetensors), freezing the base model. Every adapter must
// have its four tensors with the right shapes and the file may hold
// nothing else; errors name the tensor. On error the model is left as it
// was.
func Load(m model.Model, dir string, opt LoadOptions) (*Adapter, error) {
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, err
	}
	if opt.BaseModel != "" {
		cfg.BaseModel = opt.BaseModel
	}
	w, err := peft.ReadWeights(dir)
	if err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	before := params.Snapshot(m)
	a, err := install(m, cfg)
	if err != nil {
		return nil, err
	}
	if err := w.LoadAll(a.Params(), fmt.Sprintf("the tensors of %d %s adapters", len(a.modules), cfg.Variant)); err != nil {
		a.Remove()
		before.Restore()
		return nil, fmt.Errorf("adapter: %w", err)
	}
	if opt.Frozen {
		a.SetTrainable(false)
	}
	return a, nil
}

// install validates cfg against m, freezes the model and hooks zero
// adapters into it (trainable).
func install(m model.Model, cfg Config) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("adapter: %w", err)
	}
	L := m.NumLayers()
	layers := cfg.Layers
	if layers == nil {
		for i := 0; i < L; i++ {
			layers = append(layers, i)
		}
	}
	for _, l := range layers {
		if l < 0 || l >= L {
			return nil, fmt.Errorf("adapter: layer %d does not exist: the model has %d layers (0..%d)", l, L, L-1)
		}
	}
	for _, l := range layers {
		for _, s := range cfg.sites() {
			if m.Hook(l, s.hookSite()) != nil {
				return nil, fmt.Errorf("adapter: layer %d already has a hook on its %s output", l, s.hookSite())
			}
		}
	}
	hidden := m.Config().Hidden
	b := cfg.Bottleneck(hidden)
	act := activations[cfg.Activation]
	a := &Adapter{cfg: cfg, m: m}
	before := params.Snapshot(m)
	params.SetTrainable(m.Params(), false)
	sorted := append([]int(nil), layers...)
	slices.Sort(sorted)
	for _, l := range sorted {
		for _, s := range cfg.sites() {
			mod := newBottleneck(m.Backend(), LayerPath(m, l)+"."+s.name(), l, s, hidden, b, act, float32(cfg.Scaling), cfg.Variant == Parallel)
			if err := m.SetHook(l, s.hookSite(), mod); err != nil {
				a.Remove()
				before.Restore()
				return nil, fmt.Errorf("adapter: %w", err)
			}
			a.modules = append(a.modules, mod)
		}
	}
	a.SetTrainable(true)
	return a, nil
}

// Config returns the adapter's hyper-parameters.
func (a *Adapter) Config() Config { return a.cfg }

// Modules returns the installed adapters in forward order.
func (a *Adapter) Modules() []*Bottleneck { return append([]*Bottleneck(nil), a.modules...) }

// Params returns every adapter tensor in forward order: what
// adapter_model.safetensors holds.
func (a *Adapter) Params() []*engine.Param {
	var out []*engine.Param
	for _, mod := range a.modules {
		out = append(out, mod.Params()...)
	}
	return out
}

// SetTrainable marks the adapter tensors trainable or frozen.
func (a *Adapter) SetTrainable(on bool) { params.SetTrainable(a.Params(), on) }

// PeftConfig returns the adapter_config.json content Save writes.
func (a *Adapter) PeftConfig() *PeftConfig { return a.cfg.peftConfig(a.m.Config().Hidden) }

// Save writes the adapter folder: adapter_config.json and
// adapter_model.safetensors (see the package documentation).
func (a *Adapter) Save(dir string) error {
	if a.removed {
		return fmt.Errorf("adapter: cannot save an adapter removed from its model")
	}
	if err := peft.Save(dir, a.PeftConfig(), a.Params()); err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	return nil
}

// Remove takes the adapters out of the model and frees their buffers; the
// base parameters stay as they are (frozen).
func (a *Adapter) Remove() {
	if a.removed {
		return
	}
	a.removed = true
	for _, mod := range a.modules {
		s := mod.site.hookSite()
		if a.m.Hook(mod.Layer, s) == model.SublayerHook(mod) {
			_ = a.m.SetHook(mod.Layer, s, nil) // cannot fail: the layer exists
		}
		params.SetTrainable(mod.Params(), false)
		mod.release()
	}
}
