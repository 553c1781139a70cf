package cuda

import (
	"github.com/gotune/gotune/engine"
)

// LoRABackend is implemented by backends with fused LoRA and adapter
// kernels (this package's Backend). Method code should call the
// package-level LoRAForward, LoRABackward, AdapterForward and
// AdapterBackward, which use these methods when the backend has them and
// compose the same result from engine.Backend operations otherwise.
//
// Shapes (M rows = tokens): x [M, K]; frozen base weight w [N, K] and bias
// [N] (nil for none); LoRA factors a [r, K] and bm [N, r]; y [M, N]; the
// saved intermediate xa [M, r]. Adapter: x [M, D]; down projection wd
// [r, D], bd [r]; up projection wu [D, r], bu [D]; pre and hid [M, r]
// (the down projection before and after the activation); y [M, D]. Biases
// may be nil. As everywhere in the engine, backward outputs accumulate and
// nil outputs are skipped.
type LoRABackend interface {
	// LoRAForward computes y = x·wᵀ + bias + (scale·xl·aᵀ)·bmᵀ and saves
	// xa = scale·xl·aᵀ for the backward pass. xl is the LoRA branch's
	// input (x after dropout); nil means x.
	LoRAForward(y, xa, x, xl, w, bias, a, bm *engine.Tensor, scale float32)
	// LoRABackward accumulates, with w frozen (no dw):
	//   db += dyᵀ·xa,  da += dxaᵀ·xl,  dx += dy·w (+ dxa·a),
	// where dxa = scale·dy·bm. When dxl is nil the LoRA branch's input
	// gradient dxa·a goes into dx (no dropout: xl is x); otherwise it
	// goes into dxl and the caller applies the dropout mask.
	LoRABackward(dx, dxl, da, db, dy, xl, w, a, bm, xa *engine.Tensor, scale float32)
	// AdapterForward computes pre = x·wdᵀ + bd, hid = act(pre) and
	// y = x + hid·wuᵀ + bu.
	AdapterForward(y, pre, hid, x, wd, bd, wu, bu *engine.Tensor, act engine.Act)
	// AdapterBackward accumulates dx, dwd, dbd, dwu, dbu (any may be nil)
	// from dy, given the forward's x, pre and hid.
	AdapterBackward(dx, dwd, dbd, dwu, dbu, dy, x, wd, wu, pre, hid *engine.Tensor, act engine.Act)
}

var _ LoRABackend = (*Backend)(nil)

// loraDims checks LoRA shapes and returns M, K, N, r.
func loraDims(op string, y, xa, x, xl, w, bias, a, bm *engine.Tensor) (m, k, n, r int) {
	m, k = x.Rows(), x.Cols()
	n, r = w.Rows(), a.Rows()
	need(w.Cols() == k, op, "w %v must be [N, %d] for x %v", w, k, x)
	need(a.Cols() == k, op, "a %v must be [r, %d] for x %v", a, k, x)
	need(bm.Rows() == n && bm.Cols() == r, op, "b %v must be [%d, %d]", bm, n, r)
	need(xl == nil || (xl.Rows() == m && xl.Cols() == k), op, "xl %v must match x %v", xl, x)
	need(xa == nil || (xa.Rows() == m && xa.Cols() == r), op, "xa %v must be [%d, %d]", xa, m, r)
	need(y == nil || (y.Rows() == m && y.Cols() == n), op, "y %v must be [%d, %d]", y, m, n)
	need(bias == nil || bias.Len() == n, op, "bias %v must have %d elements", bias, n)
	need(isFloat(y, xa, x, xl, w, bias, a, bm), op, "tensors must be F32 or BF16")
	return m, k, n, r
}

// adapterDims checks adapter shapes and returns M, D, r.
func adapterDims(op string, y, pre, hid, x, wd, bd, wu, bu *engine.Tensor) (m, d, r int) {
	m, d = x.Rows(), x.Cols()
	r = wd.Rows()
	need(wd.Cols() == d, op, "wd %v must be [r, %d] for x %v", wd, d, x)
	need(wu.Rows() == d && wu.Cols() == r, op, "wu %v must be [%d, %d]", wu, d, r)
	need(bd == nil || bd.Len() == r, op, "bd %v must have %d elements", bd, r)
	need(bu == nil || bu.Len() == d, op, "bu %v must have %d elements", bu, d)
	for _, t := range []*engine.Tensor{pre, hid} {
		need(t == nil || (t.Rows() == m && t.Cols() == r), op, "%v must be [%d, %d]", t, m, r)
	}
	need(y == nil || (y.Rows() == m && y.Cols() == d), op, "y %v must be [%d, %d]", y, m, d)
	need(isFloat(y, pre, hid, x, wd, bd, wu, bu), op, "tensors must be F32 or BF16")
	return m, d, r
}

// LoRAForward is the fused LoRA forward: two launches, the rank-r product
// xa (written once, read once by the second), and the base GEMM with the
// low-rank update streamed through the same k-loop and the bias in the
// epilogue.
func (b *Backend) LoRAForward(y, xa, x, xl, w, bias, a, bm *engine.Tensor, scale float32) {
	const op = "LoRAForward"
	m, k, n, r := loraDims(op, y, xa, x, xl, w, bias, a, bm)
	need(y != nil && xa != nil, op, "y and xa are required")
	if xl == nil {
		xl = x
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) {
		return
	}
	b.gemmLocked(op, gemmArgs{c: xa, a: xl, b: a, transB: true, m: m, n: r, k: k, alpha: scale})
	b.gemmLocked(op, gemmArgs{c: y, a: x, b: w, transB: true, a2: xa, b2: bm, transB2: true, k2: r,
		bias: bias, m: m, n: n, k: k, alpha: 1})
}

// LoRABackward is the fused LoRA backward: dxa = scale·dy·bm (scratch),
// then db and da as accumulating products (split over k when the output is
// small), and dx = dy·w + dxa·a in one pass.
func (b *Backend) LoRABackward(dx, dxl, da, db, dy, xl, w, a, bm, xa *engine.Tensor, scale float32) {
	const op = "LoRABackward"
	m, k, n, r := loraDims(op, dy, xa, xl, nil, w, nil, a, bm)
	for _, g := range []struct {
		t    *engine.Tensor
		rows int
		cols int
	}{{dx, m, k}, {dxl, m, k}, {da, r, k}, {db, n, r}} {
		need(g.t == nil || (g.t.Rows() == g.rows && g.t.Cols() == g.cols), op, "gradient %v must be [%d, %d]", g.t, g.rows, g.cols)
	}
	need(isFloat(dx, dxl, da, db), op, "gradients must be F32 or BF16")
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) {
		return
	}
	if db != nil {
		b.gemmLocked(op, gemmArgs{c: db, a: dy, transA: true, b: xa, m: n, n: r, k: m, alpha: 1, beta: 1})
	}
	var dxa *engine.Tensor
	if da != nil || dx != nil || dxl != nil {
		dxa = b.alloc(op, dy.DType(), m, r)
		defer b.pool.put(b.store(op, dxa).l)
		b.gemmLocked(op, gemmArgs{c: dxa, a: dy, b: bm, m: m, n: r, k: n, alpha: scale})
	}
	if da != nil {
		b.gemmLocked(op, gemmArgs{c: da, a: dxa, transA: true, b: xl, m: r, n: k, k: m, alpha: 1, beta: 1})
	}
	switch {
	case dx != nil && dxl == nil:
		b.gemmLocked(op, gemmArgs{c: dx, a: dy, b: w, a2: dxa, b2: a, k2: r, m: m, n: k, k: n, alpha: 1, beta: 1})
	case dx != nil:
		b.gemmLocked(op, gemmArgs{c: dx, a: dy, b: w, m: m, n: k, k: n, alpha: 1, beta: 1})
	}
	if dxl != nil {
		b.gemmLocked(op, gemmArgs{c: dxl, a: dxa, b: a, m: m, n: k, k: r, alpha: 1, beta: 1})
	}
}

// AdapterForward is the fused adapter forward: the down projection with
// bias and activation in its epilogue (saving the pre-activation), then the
// up projection with bias and the residual x in its epilogue.
func (b *Backend) AdapterForward(y, pre, hid, x, wd, bd, wu, bu *engine.Tensor, act engine.Act) {
	const op = "AdapterForward"
	m, d, r := adapterDims(op, y, pre, hid, x, wd, bd, wu, bu)
	need(y != nil && pre != nil && hid != nil, op, "y, pre and hid are required")
	need(pre.DType() == hid.DType(), op, "pre %v and hid %v must share a dtype", pre, hid)
	need(act <= engine.ActSigmoid, op, "unknown activation %d", act)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) {
		return
	}
	b.gemmLocked(op, gemmArgs{c: hid, a: x, b: wd, transB: true, bias: bd, aux: pre, auxMode: 1, act: act,
		m: m, n: r, k: d, alpha: 1})
	b.gemmLocked(op, gemmArgs{c: y, a: hid, b: wu, transB: true, bias: bu, res: x, m: m, n: d, k: r, alpha: 1})
}

// AdapterBackward is the fused adapter backward: dpre = (dy·wu) ⊙ act'(pre)
// in one product (the activation derivative in the epilogue), the weight
// gradients as accumulating products, and dx += dy + dpre·wd in one pass
// (dy as the epilogue's residual).
func (b *Backend) AdapterBackward(dx, dwd, dbd, dwu, dbu, dy, x, wd, wu, pre, hid *engine.Tensor, act engine.Act) {
	const op = "AdapterBackward"
	m, d, r := adapterDims(op, dy, pre, hid, x, wd, dbd, wu, dbu)
	need(dx == nil || engine.SameShape(dx, x) || (dx.Rows() == m && dx.Cols() == d), op, "dx %v must match x %v", dx, x)
	need(dwd == nil || (dwd.Rows() == r && dwd.Cols() == d), op, "dwd %v must be [%d, %d]", dwd, r, d)
	need(dwu == nil || (dwu.Rows() == d && dwu.Cols() == r), op, "dwu %v must be [%d, %d]", dwu, d, r)
	need(isFloat(dx, dwd, dwu), op, "gradients must be F32 or BF16")
	need(act <= engine.ActSigmoid, op, "unknown activation %d", act)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) {
		return
	}
	if dwu != nil {
		b.gemmLocked(op, gemmArgs{c: dwu, a: dy, transA: true, b: hid, m: d, n: r, k: m, alpha: 1, beta: 1})
	}
	if dbu != nil && m > 0 {
		b.launchSumRows(op, cols32Geom(d), b.ptr(op, dbu), dt(dbu), b.ptr(op, dy), dt(dy), m, d)
	}
	if dx == nil && dwd == nil && dbd == nil {
		return
	}
	dpre := b.alloc(op, pre.DType(), m, r)
	defer b.pool.put(b.store(op, dpre).l)
	b.gemmLocked(op, gemmArgs{c: dpre, a: dy, b: wu, aux: pre, auxMode: 2, act: act, m: m, n: r, k: d, alpha: 1})
	if dwd != nil {
		b.gemmLocked(op, gemmArgs{c: dwd, a: dpre, transA: true, b: x, m: r, n: d, k: m, alpha: 1, beta: 1})
	}
	if dbd != nil && m > 0 {
		b.launchSumRows(op, cols32Geom(r), b.ptr(op, dbd), dt(dbd), b.ptr(op, dpre), dt(dpre), m, r)
	}
	if dx != nil {
		b.gemmLocked(op, gemmArgs{c: dx, a: dpre, b: wd, res: dy, m: m, n: d, k: r, alpha: 1, beta: 1})
	}
}

// ---- backend-independent entry points ----

// LoRAForward computes the LoRA forward on any backend: fused where be
// implements LoRABackend, otherwise from Gemm and AddBias (see
// LoRABackend for the contract).
func LoRAForward(be engine.Backend, y, xa, x, xl, w, bias, a, bm *engine.Tensor, scale float32) {
	if f, ok := be.(LoRABackend); ok {
		f.LoRAForward(y, xa, x, xl, w, bias, a, bm, scale)
		return
	}
	loraDims("LoRAForward", y, xa, x, xl, w, bias, a, bm)
	if xl == nil {
		xl = x
	}
	be.Gemm(xa, xl, a, false, true, scale, 0)
	be.Gemm(y, x, w, false, true, 1, 0)
	if bias != nil {
		be.AddBias(y, bias)
	}
	be.Gemm(y, xa, bm, false, true, 1, 1)
}

// LoRABackward computes the LoRA backward on any backend (see LoRABackend).
func LoRABackward(be engine.Backend, dx, dxl, da, db, dy, xl, w, a, bm, xa *engine.Tensor, scale float32) {
	if f, ok := be.(LoRABackend); ok {
		f.LoRABackward(dx, dxl, da, db, dy, xl, w, a, bm, xa, scale)
		return
	}
	m, _, _, r := loraDims("LoRABackward", dy, xa, xl, nil, w, nil, a, bm)
	if db != nil {
		be.Gemm(db, dy, xa, true, false, 1, 1)
	}
	if da == nil && dx == nil && dxl == nil {
		return
	}
	dxa := be.Alloc(engine.Float32, m, r)
	defer be.Free(dxa)
	be.Gemm(dxa, dy, bm, false, false, scale, 0)
	if da != nil {
		be.Gemm(da, dxa, xl, true, false, 1, 1)
	}
	if dx != nil {
		be.Gemm(dx, dy, w, false, false, 1, 1)
	}
	switch {
	case dxl != nil:
		be.Gemm(dxl, dxa, a, false, false, 1, 1)
	case dx != nil:
		be.Gemm(dx, dxa, a, false, false, 1, 1)
	}
}

// AdapterForward computes the adapter forward on any backend (see
// LoRABackend).
func AdapterForward(be engine.Backend, y, pre, hid, x, wd, bd, wu, bu *engine.Tensor, act engine.Act) {
	if f, ok := be.(LoRABackend); ok {
		f.AdapterForward(y, pre, hid, x, wd, bd, wu, bu, act)
		return
	}
	adapterDims("AdapterForward", y, pre, hid, x, wd, bd, wu, bu)
	be.Gemm(pre, x, wd, false, true, 1, 0)
	if bd != nil {
		be.AddBias(pre, bd)
	}
	be.Activation(hid, pre, act)
	be.Copy(y, x)
	be.Gemm(y, hid, wu, false, true, 1, 1)
	if bu != nil {
		be.AddBias(y, bu)
	}
}

// AdapterBackward computes the adapter backward on any backend (see
// LoRABackend).
func AdapterBackward(be engine.Backend, dx, dwd, dbd, dwu, dbu, dy, x, wd, wu, pre, hid *engine.Tensor, act engine.Act) {
	if f, ok := be.(LoRABackend); ok {
		f.AdapterBackward(dx, dwd, dbd, dwu, dbu, dy, x, wd, wu, pre, hid, act)
		return
	}
	m, _, r := adapterDims("AdapterBackward", dy, pre, hid, x, wd, dbd, wu, dbu)
	if dwu != nil {
		be.Gemm(dwu, dy, hid, true, false, 1, 1)
	}
	if dbu != nil {
		be.SumRows(dbu, dy)
	}
	if dx == nil && dwd == nil && dbd == nil {
		return
	}
	dh := be.Alloc(engine.Float32, m, r)
	defer be.Free(dh)
	be.Gemm(dh, dy, wu, false, false, 1, 0)
	dpre := be.Alloc(engine.Float32, m, r)
	defer be.Free(dpre)
	be.ActivationBackward(dpre, dh, pre, act)
	if dwd != nil {
		be.Gemm(dwd, dpre, x, true, false, 1, 1)
	}
	if dbd != nil {
		be.SumRows(dbd, dpre)
	}
	if dx != nil {
		be.Axpy(dx, dy, 1)
		be.Gemm(dx, dpre, wd, false, false, 1, 1)
	}
}
