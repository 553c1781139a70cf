package cuda

import "github.com/gotune/gotune/engine"

// QuantGemm computes c = alpha·bf16(a)·op(bf16(W)) + beta·c over a
// quantized weight with gt_gemm_q, which dequantizes W tile by tile
// into shared memory (see engine.Backend). A float32 a is first rounded
// into a bfloat16 scratch copy.
func (b *Backend) QuantGemm(c, a *engine.Tensor, w *engine.QuantWeight, transW bool, alpha, beta float32) {
	const op = "QuantGemm"
	m, n, k := engine.CheckQuantGemm(op, c, a, w, transW)
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || m == 0 || n == 0 {
		return
	}
	for _, t := range []*engine.Tensor{c, a} {
		need(fits32(t.Len()), op, "tensor %v exceeds the kernels' 32-bit sizes", t)
	}
	need(fits32(w.Rows*w.Cols), op, "%v exceeds the kernels' 32-bit sizes", w)
	if a.DType() != engine.BFloat16 {
		s := b.alloc(op, engine.BFloat16, a.Shape()...)
		defer b.pool.put(b.store(op, s).l)
		if b.broken() {
			return
		}
		b.copyBlock(op, b.ptr(op, s), int(engine.BFloat16), a.Len(), b.ptr(op, a), dt(a), a.Len(), 1, a.Len(), false)
		a = s
	}
	if b.broken() {
		return
	}
	gy := (m + gemmBf16Tile - 1) / gemmBf16Tile
	need(gy <= maxGridYz, op, "%d rows exceed the kernel's grid (%d tiles of %d)", m, maxGridYz, gemmBf16Tile)
	b.launchGemmQ(op, gemmBf16Geom(m, n, 1), b.ptr(op, c), dt(c), c.Cols(), b.ptr(op, a), a.Cols(),
		b.ptr(op, w.Codes), b.ptr(op, w.Code), b.ptr(op, w.Absmax), b.ptr(op, w.QAbsmax),
		b.ptr(op, w.NestedCode), b.ptr(op, w.NestedAbsmax), w.Offset, w.Bits, w.BlockSize, w.NestedBlock,
		w.Cols, bool2int(transW), m, n, k, alpha, beta)
}
