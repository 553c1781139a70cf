// Package adapter implements bottleneck adapters (Houlsby et al., 2019;
// Pfeiffer et al., 2020; the parallel form of He et al., 2021) as
// AdapterHub defines them: small trainable two-layer networks added to a
// frozen transformer.
//
// An adapter maps its input v to
//
//	f(v) = s · (up(act(down(v))))
//
// with down = Linear(hidden, bottleneck) and up = Linear(bottleneck,
// hidden), both with bias. With x the residual stream entering a
// sub-layer, xn = norm(x) its normalised input and h the sub-layer's
// output (attention after o_proj, GPT-2 attn.c_proj; MLP after down_proj,
// GPT-2 mlp.c_proj), a layer computes x + h without adapters and
//
//	houlsby          (double_seq_bn) attention and MLP: x + h + f(h)
//	pfeiffer         (seq_bn)        MLP:               x + h + f(x + h)
//	parallel         (par_bn)        MLP:               x + h + f(x)
//	series           (gotune)        MLP:               x + h + f(h)
//	parallel-normed  (gotune)        MLP:               x + h + f(xn)
//
// They plug into the model as model.SublayerHook values (the hook returns
// everything but x). Apply freezes the base model and initialises the
// adapters as the configuration's Init says (AdapterHub's init_weights):
// "bert" (both weights N(0, 0.02²)), "mam_adapter" (down as nn.Linear,
// up zero: the adapted model starts as the base model) or "houlsby"
// (both weights N(0, 0.01²) truncated to ±0.02); biases start at zero.
//
// # File format
//
// PEFT has no bottleneck adapters; gotune saves them in PEFT's folder
// layout with a peft_type of its own, "BOTTLENECK":
//
// adapter_config.json (keys sorted, two-space indentation, as PEFT writes
// its configurations):
//
//	adapter_input            what the adapters read: "output" (h),
//	                         "output+residual" (x + h), "residual" (x),
//	                         "normed" (xn); absent in folders written
//	                         before it was recorded, whose "pfeiffer" is
//	                         read as series and "parallel" as
//	                         parallel-normed
//	adapter_variant          houlsby, pfeiffer, parallel, series,
//	                         parallel-normed
//	adapterhub_config        "double_seq_bn", "seq_bn", "par_bn"; absent for
//	                         gotune's own forms
//	base_model_name_or_path  the model trained on (or null)
//	bottleneck_size          the bottleneck width b
//	inference_mode           true
//	init_weights             "bert", "mam_adapter" or "houlsby"
//	is_parallel, mh_adapter, original_ln_after, original_ln_before,
//	output_adapter, residual_before_ln
//	                         AdapterHub's switches for the variant (the
//	                         four AdapterHub-only ones absent for
//	                         parallel-normed, which it cannot express)
//	non_linearity            "relu", "gelu" (exact erf GELU), "silu",
//	                         "swish" (= silu), "tanh"
//	peft_type                "BOTTLENECK"
//	reduction_factor         hidden / b as configured
//	scaling                  s
//	target_layers            list of layer indices, or null for every layer
//	task_type                "CAUSAL_LM"
//
// The structural keys must agree with adapter_variant when read.
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
	"github.com/gotune/gotune/engine/fielderr"
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

	be     engine.Backend
	act    engine.Act
	scale  float32
	in     Input
	hidden int
	b      int

	// Activations of the last Forward (N rows), kept for Backward.
	n        int
	z, a     *engine.Tensor // down output before and after act [N, b]
	sum      *engine.Tensor // x + h [N, hidden] (InputOutputResidual only)
	released bool
}

// newBottleneck allocates a zero adapter.
func newBottleneck(be engine.Backend, path string, layer int, st site, hidden, b int, act engine.Act, scale float32, in Input) *Bottleneck {
	p := func(leaf string, decay bool, shape ...int) *engine.Param {
		return &engine.Param{Name: peft.Key(path, leaf), W: be.Alloc(engine.Float32, shape...), Decay: decay}
	}
	return &Bottleneck{
		Path: path, Layer: layer, site: st,
		DownW: p("down_proj.weight", true, b, hidden), DownB: p("down_proj.bias", false, b),
		UpW: p("up_proj.weight", true, hidden, b), UpB: p("up_proj.bias", false, hidden),
		be: be, act: act, scale: scale, in: in, hidden: hidden, b: b,
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
	if m.in == InputOutputResidual {
		// x + h feeds only the down projection, so it takes the
		// products' operand dtype too (autocast casts it there anyway).
		m.sum = m.be.Alloc(dt, n, m.hidden)
	}
}

func (m *Bottleneck) freeBuffers() {
	for _, t := range []*engine.Tensor{m.z, m.a, m.sum} {
		if t != nil {
			m.be.Free(t)
		}
	}
	m.z, m.a, m.sum, m.n = nil, nil, nil, 0
}

// input returns what the adapter reads (see Input); m.sum must hold
// x + h for InputOutputResidual.
func (m *Bottleneck) input(h, xn, x *engine.Tensor) *engine.Tensor {
	switch m.in {
	case InputOutputResidual:
		return m.sum
	case InputResidual:
		return x
	case InputNormed:
		return xn
	}
	return h
}

// Forward computes y = h + s·(act(v·Downᵀ + bd)·Upᵀ + bu) with v what
// the variant reads (h, x + h, x or xn), with the fused adapter recipe
// (fused.AdapterForward); the block adds x.
func (m *Bottleneck) Forward(y, h, xn, x *engine.Tensor, train bool) {
	// The bottleneck activations take the compute copies' dtype: bfloat16
	// under mixed precision, like every product's output.
	m.buffers(h.Rows(), m.DownW.Compute().DType())
	if m.in == InputOutputResidual {
		m.be.Add(m.sum, x, h)
	}
	fused.AdapterForward(m.be, y, m.z, m.a, m.input(h, xn, x), h, m.operands())
}

// Backward accumulates dh (the identity path, and the adapter's path when
// it reads h or x + h), dxn or dx (the adapter's path when it reads xn,
// x or x + h; either may be nil when nothing below needs it) and the
// gradients of the trainable projections, with the fused adapter recipe
// (fused.AdapterBackward).
func (m *Bottleneck) Backward(dh, dxn, dx, dy, h, xn, x *engine.Tensor) {
	v := m.input(h, xn, x)
	var din *engine.Tensor
	switch m.in {
	case InputOutput:
		din = dh
	case InputNormed:
		din = dxn
	case InputResidual:
		din = dx
	case InputOutputResidual:
		// v = x + h: its gradient goes to both.
		din = m.be.Alloc(engine.Float32, v.Shape()...)
		defer m.be.Free(din)
		m.be.Fill(din, 0)
	}
	fused.AdapterBackward(m.be, din, dh, model.Grad(m.DownW), model.Grad(m.DownB), model.Grad(m.UpW), model.Grad(m.UpB),
		dy, v, m.z, m.a, m.operands())
	if m.in == InputOutputResidual {
		m.be.Axpy(dh, din, 1)
		if dx != nil {
			m.be.Axpy(dx, din, 1)
		}
	}
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

// LayerPath returns the Hugging Face module path of transformer layer i
// (the family descriptor's, see arch.Family.LayerPath).
func LayerPath(m model.Model, i int) string { return m.Family().LayerPath(i) }

// Apply installs freshly initialised adapters (see the package
// documentation) and freezes every other parameter of m.
func Apply(m model.Model, cfg Config) (*Adapter, error) {
	a, err := install(m, cfg)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x61646170)) // "adap"
	for _, mod := range a.modules {
		mod.initialise(rng, a.cfg.Init)
	}
	return a, nil
}

// initialise draws the projection weights as AdapterHub's init_weights
// does (see Init); biases stay zero.
func (m *Bottleneck) initialise(rng *rand.Rand, init Init) {
	switch init {
	case InitBert:
		m.be.Upload(m.DownW.W, params.Normal(rng, m.DownW.W.Len(), 0.02))
		m.be.Upload(m.UpW.W, params.Normal(rng, m.UpW.W.Len(), 0.02))
	case InitHoulsby:
		m.be.Upload(m.DownW.W, truncNormal(rng, m.DownW.W.Len(), 0.01, 0.02))
		m.be.Upload(m.UpW.W, truncNormal(rng, m.UpW.W.Len(), 0.01, 0.02))
	default: // InitMAM
		// nn.Linear's kaiming_uniform_(a=sqrt(5)): U(±1/sqrt(fan_in)).
		m.be.Upload(m.DownW.W, params.Uniform(rng, m.DownW.W.Len(), 1/math.Sqrt(float64(m.hidden))))
	}
}

// truncNormal returns n draws of N(0, std²) restricted to [−bound, bound]
// (torch's trunc_normal_, by rejection).
func truncNormal(rng *rand.Rand, n int, std, bound float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		v := std * rng.NormFloat64()
		for math.Abs(v) > bound {
			v = std * rng.NormFloat64()
		}
		out[i] = float32(v)
	}
	return out
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
	cfg = cfg.WithDefaults()
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
			return nil, fmt.Errorf("adapter: %w", fielderr.Errorf("Layers", "names layer %d, which does not exist: the model has %d layers (0..%d)", l, L, L-1))
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
			mod := newBottleneck(m.Backend(), LayerPath(m, l)+"."+s.name(), l, s, hidden, b, act, float32(cfg.Scaling), cfg.input())
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
