package model

import (
	"github.com/gotune/gotune/engine"
)

// Minimal implementations of the extension points, standing in for the
// fine-tuning methods in tests.

func newParam(be engine.Backend, name string, seed uint64, std float64, shape ...int) *engine.Param {
	p := &engine.Param{Name: name, W: be.Alloc(engine.Float32, shape...)}
	host := make([]float32, p.W.Len())
	rng := newRand(seed)
	for i := range host {
		host[i] = float32(std * rng.NormFloat64())
	}
	be.Upload(p.W, host)
	SetTrainable(p, true)
	return p
}

// testPrompt is prompt tuning: a trainable [P, hidden] table.
type testPrompt struct{ e *engine.Param }

func (p *testPrompt) Params() []*engine.Param           { return []*engine.Param{p.e} }
func (p *testPrompt) NumTokens() int                    { return p.e.W.Dim(0) }
func (p *testPrompt) Forward(train bool) *engine.Tensor { return p.e.W }
func (p *testPrompt) Backward(d *engine.Tensor) {
	if g := Grad(p.e); g != nil {
		p.e.W.Backend().Axpy(g, d, 1)
	}
}

// testPrefix is prefix tuning in PEFT's layout: one [P, layers·2·kvDim]
// table; layer l's keys are columns [2l·kvDim, (2l+1)·kvDim), its values
// the next kvDim columns. only, when non-nil, limits the layers (the local
// form).
type testPrefix struct {
	e      *engine.Param
	layers int
	kvDim  int
	only   map[int]bool
}

func (p *testPrefix) Params() []*engine.Param { return []*engine.Param{p.e} }
func (p *testPrefix) NumTokens() int          { return p.e.W.Dim(0) }
func (p *testPrefix) Forward(train bool)      {}
func (p *testPrefix) Backward()               {}
func (p *testPrefix) rows(t *engine.Tensor, l int) (k, v Rows, ok bool) {
	if p.only != nil && !p.only[l] {
		return Rows{}, Rows{}, false
	}
	stride := p.layers * 2 * p.kvDim
	return Rows{T: t, Off: 2 * l * p.kvDim, Stride: stride}, Rows{T: t, Off: (2*l + 1) * p.kvDim, Stride: stride}, true
}
func (p *testPrefix) KV(l int) (k, v Rows, ok bool) { return p.rows(p.e.W, l) }
func (p *testPrefix) Grads(l int) (dk, dv Rows, ok bool) {
	if g := Grad(p.e); g != nil {
		return p.rows(g, l)
	}
	return Rows{}, Rows{}, false
}

func newTestPrefix(m Model, P int, seed uint64) *testPrefix {
	cfg := m.Config()
	kvd := cfg.KVHeads * cfg.HeadDim
	return &testPrefix{e: newParam(m.Backend(), "prefix", seed, 0.5, P, cfg.Layers*2*kvd), layers: cfg.Layers, kvDim: kvd}
}

// testHook is y = h + h·W + xn·U + x·V, exercising all three inputs.
type testHook struct {
	w, u, v *engine.Param
}

func newTestHook(be engine.Backend, D int, seed uint64) *testHook {
	return &testHook{
		w: newParam(be, "hook.w", seed, 0.2, D, D),
		u: newParam(be, "hook.u", seed+1, 0.2, D, D),
		v: newParam(be, "hook.v", seed+2, 0.2, D, D),
	}
}

func (h *testHook) Params() []*engine.Param { return []*engine.Param{h.w, h.u, h.v} }
func (h *testHook) Forward(y, hh, xn, x *engine.Tensor, train bool) {
	be := h.w.W.Backend()
	be.Copy(y, hh)
	be.Gemm(y, hh, h.w.W, false, false, 1, 1)
	be.Gemm(y, xn, h.u.W, false, false, 1, 1)
	be.Gemm(y, x, h.v.W, false, false, 1, 1)
}
func (h *testHook) Backward(dh, dxn, dx, dy, hh, xn, x *engine.Tensor) {
	be := h.w.W.Backend()
	be.Axpy(dh, dy, 1)
	be.Gemm(dh, dy, h.w.W, false, true, 1, 1)
	if dxn != nil {
		be.Gemm(dxn, dy, h.u.W, false, true, 1, 1)
	}
	if dx != nil {
		be.Gemm(dx, dy, h.v.W, false, true, 1, 1)
	}
	for _, pair := range []struct {
		p  *engine.Param
		in *engine.Tensor
	}{{h.w, hh}, {h.u, xn}, {h.v, x}} {
		if g := Grad(pair.p); g != nil {
			be.Gemm(g, pair.in, dy, true, false, 1, 1)
		}
	}
}

// testLoRA wraps a Linear: y = base(x) + s·(x·Aᵀ)·Bᵀ.
type testLoRA struct {
	base Linear
	a, b *engine.Param // [r, in], [out, r]
	s    float32
}

func newTestLoRA(be engine.Backend, base Linear, r int, seed uint64) *testLoRA {
	return &testLoRA{base: base, s: 0.5,
		a: newParam(be, "lora_A", seed, 0.3, r, base.In()),
		b: newParam(be, "lora_B", seed+1, 0.3, base.Out(), r)}
}

func (l *testLoRA) In() int  { return l.base.In() }
func (l *testLoRA) Out() int { return l.base.Out() }
func (l *testLoRA) Params() []*engine.Param {
	return append(l.base.Params(), l.a, l.b)
}
func (l *testLoRA) xa(x *engine.Tensor) *engine.Tensor {
	be := l.a.W.Backend()
	t := be.Alloc(engine.Float32, x.Rows(), l.a.W.Dim(0))
	be.Gemm(t, x, l.a.W, false, true, 1, 0)
	return t
}
func (l *testLoRA) Forward(y, x *engine.Tensor, train bool) {
	l.base.Forward(y, x, train)
	xa := l.xa(x)
	l.a.W.Backend().Gemm(y, xa, l.b.W, false, true, l.s, 1)
}
func (l *testLoRA) Backward(dx, dy, x *engine.Tensor) {
	be := l.a.W.Backend()
	if dx != nil || Trainable(l.base) {
		l.base.Backward(dx, dy, x)
	}
	xa := l.xa(x)
	if g := Grad(l.b); g != nil {
		be.Gemm(g, dy, xa, true, false, l.s, 1)
	}
	dxa := be.Alloc(engine.Float32, x.Rows(), l.a.W.Dim(0))
	be.Gemm(dxa, dy, l.b.W, false, false, l.s, 0)
	if g := Grad(l.a); g != nil {
		be.Gemm(g, dxa, x, true, false, 1, 1)
	}
	if dx != nil {
		be.Gemm(dx, dxa, l.a.W, false, false, 1, 1)
	}
}
