// Package fused holds the fused recipes of the parameter-efficient
// methods: a LoRA projection over a frozen base weight, and a bottleneck
// adapter. A backend with fused kernels for them (the CUDA backend)
// implements LoRABackend and AdapterBackend; every other backend gets Composed, the same
// computation from engine.Backend operations. Method code calls the
// package-level functions, which pick one or the other, so the CPU and
// the GPU run one code path.
package fused

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// Layout is how a frozen base weight is stored.
type Layout int

const (
	// OutIn is torch.nn.Linear's layout, w [N, K]: y = x·wᵀ.
	OutIn Layout = iota
	// InOut is GPT-2's Conv1D layout, w [K, N]: y = x·w.
	InOut
)

// LoRA is one low-rank-adapted projection: the frozen base weight W (in
// Layout), its Bias [N] (nil for none), the factors A [r, K] and B [N, r]
// and the scale of the low-rank term.
type LoRA struct {
	W      *engine.Tensor
	Layout Layout
	Bias   *engine.Tensor
	A, B   *engine.Tensor
	Scale  float32
}

// TransW reports whether the forward product x·op(W) transposes the
// stored W (torch layout); the input gradient dy·op(W)ᵀ then does not.
func (l LoRA) TransW() bool { return l.Layout == OutIn }

// Bottleneck is one bottleneck adapter: Down [r, D] with bias DownBias
// [r], Up [D, r] with bias UpBias [D] (biases may be nil), the activation
// between them and the scale of the adapter's output.
type Bottleneck struct {
	Down, DownBias *engine.Tensor
	Up, UpBias     *engine.Tensor
	Act            engine.Act
	Scale          float32
}

// LoRABackend is implemented by backends with fused LoRA kernels. M rows
// are tokens. As everywhere in the engine, backward outputs accumulate
// and nil outputs are skipped; outputs must not alias inputs.
type LoRABackend interface {
	// LoRAForward computes y = x·op(W) + Bias + (Scale·xl·Aᵀ)·Bᵀ [M, N]
	// and saves xa = Scale·xl·Aᵀ [M, r] for the backward pass. xl [M, K]
	// is the LoRA branch's input (x after dropout); nil means x.
	LoRAForward(y, xa, x, xl *engine.Tensor, l LoRA)
	// LoRABackward accumulates, with W frozen (no gradient):
	//   db += dyᵀ·xa,  da += dxaᵀ·xl,  dx += dy·op(W)ᵀ (+ dxa·A),
	// where dxa = Scale·dy·B. When dxl is nil the LoRA branch's input
	// gradient dxa·A goes into dx (no dropout: xl is x); otherwise it
	// goes into dxl and the caller applies the dropout mask.
	LoRABackward(dx, dxl, da, db, dy, xl, xa *engine.Tensor, l LoRA)
}

// AdapterBackend is implemented by backends with fused bottleneck-adapter
// kernels, with the conventions of LoRABackend.
type AdapterBackend interface {
	// AdapterForward computes pre = x·Downᵀ + DownBias, hid = act(pre)
	// [M, r] and y = res + Scale·(hid·Upᵀ + UpBias) [M, D]. res is the
	// residual input: x itself for an adapter on a sub-layer's output,
	// the sub-layer's output for a parallel adapter.
	AdapterForward(y, pre, hid, x, res *engine.Tensor, m Bottleneck)
	// AdapterBackward accumulates dres += dy, dx (through the adapter)
	// and the gradients of Down, DownBias, Up and UpBias, given the
	// forward's x, pre and hid. dx and dres may be the same tensor.
	AdapterBackward(dx, dres, dDown, dDownBias, dUp, dUpBias, dy, x, pre, hid *engine.Tensor, m Bottleneck)
}

// loraOf returns be's fused LoRA operations, or Composed's.
func loraOf(be engine.Backend) LoRABackend {
	if f, ok := be.(LoRABackend); ok {
		return f
	}
	return Composed{be}
}

// adapterOf returns be's fused adapter operations, or Composed's.
func adapterOf(be engine.Backend) AdapterBackend {
	if f, ok := be.(AdapterBackend); ok {
		return f
	}
	return Composed{be}
}

// LoRAForward runs LoRABackend.LoRAForward on be, fused when be has the
// kernels.
func LoRAForward(be engine.Backend, y, xa, x, xl *engine.Tensor, l LoRA) {
	loraOf(be).LoRAForward(y, xa, x, xl, l)
}

// LoRABackward runs LoRABackend.LoRABackward on be, fused when be has
// the kernels.
func LoRABackward(be engine.Backend, dx, dxl, da, db, dy, xl, xa *engine.Tensor, l LoRA) {
	loraOf(be).LoRABackward(dx, dxl, da, db, dy, xl, xa, l)
}

// AdapterForward runs AdapterBackend.AdapterForward on be, fused when be
// has the kernels.
func AdapterForward(be engine.Backend, y, pre, hid, x, res *engine.Tensor, m Bottleneck) {
	adapterOf(be).AdapterForward(y, pre, hid, x, res, m)
}

// AdapterBackward runs AdapterBackend.AdapterBackward on be, fused when
// be has the kernels.
func AdapterBackward(be engine.Backend, dx, dres, dDown, dDownBias, dUp, dUpBias, dy, x, pre, hid *engine.Tensor, m Bottleneck) {
	adapterOf(be).AdapterBackward(dx, dres, dDown, dDownBias, dUp, dUpBias, dy, x, pre, hid, m)
}

// need panics with op's name and the formatted message unless cond holds.
func need(cond bool, op, format string, args ...any) {
	if !cond {
		panic(fmt.Sprintf("%s: %s", op, fmt.Sprintf(format, args...)))
	}
}

// shaped reports whether t is nil or [rows, cols].
func shaped(t *engine.Tensor, rows, cols int) bool {
	return t == nil || (t.Rows() == rows && t.Cols() == cols)
}

// CheckLoRA panics (naming op) unless the LoRA operands agree: x [M, K]
// and the optional xl, xa, y and gradients dx, dxl [M, K], da [r, K],
// db [N, r]; it returns M, K, N and r.
func CheckLoRA(op string, y, xa, x, xl *engine.Tensor, l LoRA, dx, dxl, da, db *engine.Tensor) (m, k, n, r int) {
	m, k = x.Rows(), x.Cols()
	r = l.A.Rows()
	wk, wn := l.W.Cols(), l.W.Rows()
	if l.Layout == InOut {
		wk, wn = wn, wk
	}
	n = wn
	need(l.Layout == OutIn || l.Layout == InOut, op, "unknown weight layout %d", l.Layout)
	need(wk == k, op, "w %v (layout %d) does not take the %d features of x %v", l.W, l.Layout, k, x)
	need(l.A.Cols() == k, op, "a %v must be [r, %d] for x %v", l.A, k, x)
	need(shaped(l.B, n, r), op, "b %v must be [%d, %d]", l.B, n, r)
	need(l.Bias == nil || l.Bias.Len() == n, op, "bias %v must have %d elements", l.Bias, n)
	for _, t := range []*engine.Tensor{xl, dx, dxl} {
		need(shaped(t, m, k), op, "%v must be [%d, %d] like x %v", t, m, k, x)
	}
	need(shaped(xa, m, r), op, "xa %v must be [%d, %d]", xa, m, r)
	need(shaped(y, m, n), op, "y %v must be [%d, %d]", y, m, n)
	need(shaped(da, r, k), op, "da %v must be [%d, %d]", da, r, k)
	need(shaped(db, n, r), op, "db %v must be [%d, %d]", db, n, r)
	return m, k, n, r
}

// CheckAdapter panics (naming op) unless the adapter operands agree: x
// [M, D], pre and hid [M, r], and the optional y, res, dx, dres [M, D],
// dDown [r, D], dUp [D, r] and bias gradients; it returns M, D and r.
func CheckAdapter(op string, y, pre, hid, x, res *engine.Tensor, a Bottleneck, dx, dres, dDown, dDownBias, dUp, dUpBias *engine.Tensor) (m, d, r int) {
	m, d = x.Rows(), x.Cols()
	r = a.Down.Rows()
	need(a.Down.Cols() == d, op, "down %v must be [r, %d] for x %v", a.Down, d, x)
	need(shaped(a.Up, d, r), op, "up %v must be [%d, %d]", a.Up, d, r)
	for _, t := range []*engine.Tensor{a.DownBias, dDownBias} {
		need(t == nil || t.Len() == r, op, "%v must have %d elements", t, r)
	}
	for _, t := range []*engine.Tensor{a.UpBias, dUpBias} {
		need(t == nil || t.Len() == d, op, "%v must have %d elements", t, d)
	}
	for _, t := range []*engine.Tensor{pre, hid} {
		need(t != nil && shaped(t, m, r), op, "%v must be [%d, %d]", t, m, r)
	}
	for _, t := range []*engine.Tensor{y, res, dx, dres} {
		need(shaped(t, m, d), op, "%v must be [%d, %d] like x %v", t, m, d, x)
	}
	need(shaped(dDown, r, d), op, "dDown %v must be [%d, %d]", dDown, r, d)
	need(shaped(dUp, d, r), op, "dUp %v must be [%d, %d]", dUp, d, r)
	need(a.Act <= engine.ActSigmoid, op, "unknown activation %d", a.Act)
	return m, d, r
}
