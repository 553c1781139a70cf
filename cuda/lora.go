package cuda

import (
	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fused"
)

var (
	_ fused.LoRABackend    = (*Backend)(nil)
	_ fused.AdapterBackend = (*Backend)(nil)
)

// LoRAForward is the fused LoRA forward: two launches, the rank-r product
// xa (written once, read once by the second), and the base GEMM with the
// low-rank update streamed through the same k-loop and the bias in the
// epilogue. The base weight's layout is the base product's trans flag.
func (b *Backend) LoRAForward(y, xa, x, xl *engine.Tensor, l fused.LoRA) {
	const op = "LoRAForward"
	m, k, n, r := fused.CheckLoRA("cuda."+op, y, xa, x, xl, l, nil, nil, nil, nil)
	need(y != nil && xa != nil, op, "y and xa are required")
	need(isFloat(y, xa, x, xl, l.W, l.Bias, l.A, l.B), op, "tensors must be F32 or BF16")
	if xl == nil {
		xl = x
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) {
		return
	}
	b.gemmLocked(op, gemmArgs{c: xa, a: xl, b: l.A, transB: true, m: m, n: r, k: k, alpha: l.Scale})
	b.gemmLocked(op, gemmArgs{c: y, a: x, b: l.W, transB: l.TransW(), a2: xa, b2: l.B, transB2: true, k2: r,
		bias: l.Bias, m: m, n: n, k: k, alpha: 1})
}

// LoRABackward is the fused LoRA backward: dxa = scale·dy·B (scratch),
// then db and da as accumulating products (split over k when the output is
// small), and dx = dy·op(W)ᵀ + dxa·A in one pass.
func (b *Backend) LoRABackward(dx, dxl, da, db, dy, xl, xa *engine.Tensor, l fused.LoRA) {
	const op = "LoRABackward"
	m, k, n, r := fused.CheckLoRA("cuda."+op, dy, xa, xl, nil, l, dx, dxl, da, db)
	need(isFloat(dy, xl, xa, l.W, l.A, l.B), op, "tensors must be F32 or BF16")
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
		b.gemmLocked(op, gemmArgs{c: dxa, a: dy, b: l.B, m: m, n: r, k: n, alpha: l.Scale})
	}
	if da != nil {
		b.gemmLocked(op, gemmArgs{c: da, a: dxa, transA: true, b: xl, m: r, n: k, k: m, alpha: 1, beta: 1})
	}
	transBack := !l.TransW() // dy·op(W)ᵀ
	switch {
	case dx != nil && dxl == nil:
		b.gemmLocked(op, gemmArgs{c: dx, a: dy, b: l.W, transB: transBack, a2: dxa, b2: l.A, k2: r, m: m, n: k, k: n, alpha: 1, beta: 1})
	case dx != nil:
		b.gemmLocked(op, gemmArgs{c: dx, a: dy, b: l.W, transB: transBack, m: m, n: k, k: n, alpha: 1, beta: 1})
	}
	if dxl != nil {
		b.gemmLocked(op, gemmArgs{c: dxl, a: dxa, b: l.A, m: m, n: k, k: r, alpha: 1, beta: 1})
	}
}

// AdapterForward is the fused adapter forward: the down projection with
// bias and activation in its epilogue (saving the pre-activation), then the
// up projection scaled by alpha, with the (scaled) bias and the residual
// in its epilogue.
func (b *Backend) AdapterForward(y, pre, hid, x, res *engine.Tensor, a fused.Bottleneck) {
	const op = "AdapterForward"
	m, d, r := fused.CheckAdapter("cuda."+op, y, pre, hid, x, res, a, nil, nil, nil, nil, nil, nil)
	need(y != nil && res != nil, op, "y and res are required")
	need(isFloat(y, pre, hid, x, res, a.Down, a.DownBias, a.Up, a.UpBias), op, "tensors must be F32 or BF16")
	need(pre.DType() == hid.DType(), op, "pre %v and hid %v must share a dtype", pre, hid)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) {
		return
	}
	b.gemmLocked(op, gemmArgs{c: hid, a: x, b: a.Down, transB: true, bias: a.DownBias, aux: pre, auxMode: 1, act: a.Act,
		m: m, n: r, k: d, alpha: 1})
	bias := a.UpBias
	if bias != nil && a.Scale != 1 {
		// The epilogue adds the bias unscaled: pass Scale·UpBias.
		bias = b.alloc(op, engine.Float32, d)
		defer b.pool.put(b.store(op, bias).l)
		b.axpyLocked(op, bias, a.UpBias, a.Scale, true)
	}
	b.gemmLocked(op, gemmArgs{c: y, a: hid, b: a.Up, transB: true, bias: bias, res: res, m: m, n: d, k: r, alpha: a.Scale})
}

// AdapterBackward is the fused adapter backward: dpre = Scale·(dy·Up) ⊙
// act'(pre) in one product (the activation derivative in the epilogue),
// the weight gradients as accumulating products, and dx += dpre·Down (+ dy
// when dx is also dres: the epilogue's residual) in one pass.
func (b *Backend) AdapterBackward(dx, dres, dDown, dDownBias, dUp, dUpBias, dy, x, pre, hid *engine.Tensor, a fused.Bottleneck) {
	const op = "AdapterBackward"
	m, d, r := fused.CheckAdapter("cuda."+op, dy, pre, hid, x, nil, a, dx, dres, dDown, dDownBias, dUp, dUpBias)
	need(isFloat(dy, pre, hid, x, a.Down, a.Up), op, "tensors must be F32 or BF16")
	need(isFloat(dx, dres, dDown, dDownBias, dUp, dUpBias), op, "gradients must be F32 or BF16")
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || m == 0 {
		return
	}
	var resDY *engine.Tensor // dy as dx's residual (dres is dx)
	switch {
	case dres != nil && dres == dx:
		resDY = dy
	case dres != nil:
		b.axpyLocked(op, dres, dy, 1, false)
	}
	if dUp != nil {
		b.gemmLocked(op, gemmArgs{c: dUp, a: dy, transA: true, b: hid, m: d, n: r, k: m, alpha: a.Scale, beta: 1})
	}
	if dUpBias != nil {
		b.sumRowsScaledLocked(op, dUpBias, dy, a.Scale)
	}
	if dx == nil && dDown == nil && dDownBias == nil {
		return
	}
	dpre := b.alloc(op, pre.DType(), m, r)
	defer b.pool.put(b.store(op, dpre).l)
	b.gemmLocked(op, gemmArgs{c: dpre, a: dy, b: a.Up, aux: pre, auxMode: 2, act: a.Act, m: m, n: r, k: d, alpha: a.Scale})
	if dDown != nil {
		b.gemmLocked(op, gemmArgs{c: dDown, a: dpre, transA: true, b: x, m: r, n: d, k: m, alpha: 1, beta: 1})
	}
	if dDownBias != nil {
		b.sumRowsScaledLocked(op, dDownBias, dpre, 1)
	}
	if dx != nil {
		b.gemmLocked(op, gemmArgs{c: dx, a: dpre, b: a.Down, res: resDY, m: m, n: d, k: r, alpha: 1, beta: 1})
	}
}

// axpyLocked computes dst += alpha·x, or dst = alpha·x when overwrite is
// set (dst is zeroed first). Callers hold b.mu.
func (b *Backend) axpyLocked(op string, dst, x *engine.Tensor, alpha float32, overwrite bool) {
	n := dst.Len()
	if n == 0 || b.broken() {
		return
	}
	if overwrite {
		need(dst.DType() == engine.Float32, op, "internal error: zeroing %v", dst)
		b.setErr(b.ctx.Memset(b.ptr(op, dst), 4, 0, uint64(n), b.stream))
	}
	b.launchAxpy(op, b.ewGeom(n), b.ptr(op, dst), dt(dst), b.ptr(op, x), dt(x), n, alpha)
}

// sumRowsScaledLocked accumulates dst[j] += s·Σ_rows x[:, j], through a
// float32 scratch row when s is not 1. Callers hold b.mu.
func (b *Backend) sumRowsScaledLocked(op string, dst, x *engine.Tensor, s float32) {
	rows, cols := x.Rows(), x.Cols()
	if b.broken() {
		return
	}
	if s == 1 {
		b.launchSumRows(op, cols32Geom(cols), b.ptr(op, dst), dt(dst), b.ptr(op, x), dt(x), rows, cols)
		return
	}
	tmp := b.alloc(op, engine.Float32, cols)
	defer b.pool.put(b.store(op, tmp).l)
	b.setErr(b.ctx.Memset(b.ptr(op, tmp), 4, 0, uint64(cols), b.stream))
	b.launchSumRows(op, cols32Geom(cols), b.ptr(op, tmp), dt(tmp), b.ptr(op, x), dt(x), rows, cols)
	b.launchAxpy(op, b.ewGeom(cols), b.ptr(op, dst), dt(dst), b.ptr(op, tmp), dt(tmp), cols, s)
}
