package cuda

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
)

// This file maps every engine.Backend operation onto our kernels (or a
// driver copy/memset), and onto the host fallback where a dtype
// combination has no kernel (e.g. Int32 blocks, a BF16 normalisation
// statistic). Attention is in attention.go. Shape checks mirror engine/cpu so both
// backends reject the same calls with the same kind of message.

// need panics with a message naming the operation when cond is false.
func need(cond bool, op, format string, args ...any) {
	if !cond {
		panic(fmt.Sprintf("cuda.%s: %s", op, fmt.Sprintf(format, args...)))
	}
}

// sameLen panics unless every non-nil tensor has n elements.
func sameLen(op string, n int, ts ...*engine.Tensor) {
	for _, t := range ts {
		if t != nil && t.Len() != n {
			panic(fmt.Sprintf("cuda.%s: tensor %v has %d elements, want %d", op, t, t.Len(), n))
		}
	}
}

// isFloat reports whether every non-nil tensor is Float32 or BFloat16.
func isFloat(ts ...*engine.Tensor) bool {
	for _, t := range ts {
		if t != nil && t.DType() != engine.Float32 && t.DType() != engine.BFloat16 {
			return false
		}
	}
	return true
}

// isF32 reports whether every non-nil tensor is Float32.
func isF32(ts ...*engine.Tensor) bool {
	for _, t := range ts {
		if t != nil && t.DType() != engine.Float32 {
			return false
		}
	}
	return true
}

// fits32 reports whether every size fits a kernel's 32-bit int.
func fits32(ns ...int) bool {
	for _, n := range ns {
		if n < 0 || n > math.MaxInt32 {
			return false
		}
	}
	return true
}

// dt is a tensor's dtype code for the kernels (engine.DType's value; 0 for
// an absent tensor).
func dt(t *engine.Tensor) int {
	if t == nil {
		return 0
	}
	return int(t.DType())
}

// begin counts op as native and reports whether it should run (no earlier
// error). Callers hold b.mu.
func (b *Backend) begin(op string) bool {
	b.count(op, true)
	return !b.broken()
}

// ---- memory ----

// Copy copies src into dst, converting between Float32 and BFloat16.
func (b *Backend) Copy(dst, src *engine.Tensor) {
	const op = "Copy"
	need(dst.Len() == src.Len(), op, "dst %v and src %v differ in element count", dst, src)
	if (dst.DType() == engine.Int32) != (src.DType() == engine.Int32) {
		need(false, op, "cannot convert %v to %v", src, dst)
	}
	n := dst.Len()
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || n == 0 {
		return
	}
	if dst.DType() == src.DType() {
		b.setErr(b.ctx.CopyDtoD(b.ptr(op, dst), b.ptr(op, src), uint64(n*dst.DType().Size()), b.stream))
		return
	}
	b.copyBlock(op, b.ptr(op, dst), dt(dst), n, b.ptr(op, src), dt(src), n, 1, n, false)
}

// copyBlock launches gt_copy_block. Callers hold b.mu.
func (b *Backend) copyBlock(op string, dst DevicePtr, dstDT, dstStride int, src DevicePtr, srcDT, srcStride, rows, cols int, acc bool) {
	accumulate := 0
	if acc {
		accumulate = 1
	}
	b.launchCopyBlock(op, b.ew2dGeom(rows, cols), dst, dstDT, dstStride, src, srcDT, srcStride, rows, cols, accumulate)
}

// CopyBlock copies (or adds) a rows×cols block between flat views.
func (b *Backend) CopyBlock(dst *engine.Tensor, dstOff, dstStride int, src *engine.Tensor, srcOff, srcStride int, rows, cols int, accumulate bool) {
	const op = "CopyBlock"
	if rows <= 0 || cols <= 0 {
		need(rows >= 0 && cols >= 0, op, "negative block %dx%d", rows, cols)
		return
	}
	inBounds := func(t *engine.Tensor, off, stride int, isDst bool) bool {
		last := off + (rows-1)*stride + cols - 1
		return off >= 0 && stride >= 0 && (!isDst || rows == 1 || stride >= cols) && last < t.Len()
	}
	need(inBounds(dst, dstOff, dstStride, true), op, "block %dx%d at offset %d stride %d outside dst %v", rows, cols, dstOff, dstStride, dst)
	need(inBounds(src, srcOff, srcStride, false), op, "block %dx%d at offset %d stride %d outside src %v", rows, cols, srcOff, srcStride, src)
	if dst.DType() == engine.Int32 || src.DType() == engine.Int32 {
		need(dst.DType() == src.DType(), op, "cannot copy %v into %v", src, dst)
		b.fallback(op, ts(dst), ts(src), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.CopyBlock(h(dst), dstOff, dstStride, h(src), srcOff, srcStride, rows, cols, accumulate)
		})
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) {
		return
	}
	d := b.ptr(op, dst) + DevicePtr(dstOff*dst.DType().Size())
	s := b.ptr(op, src) + DevicePtr(srcOff*src.DType().Size())
	b.copyBlock(op, d, dt(dst), dstStride, s, dt(src), srcStride, rows, cols, accumulate)
}

// Fill sets every element of t to v (truncated toward zero for Int32), with
// a driver memset of the value's bit pattern.
func (b *Backend) Fill(t *engine.Tensor, v float32) {
	const op = "Fill"
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || t.Len() == 0 {
		return
	}
	n := uint64(t.Len())
	switch t.DType() {
	case engine.Float32:
		b.setErr(b.ctx.Memset(b.ptr(op, t), 4, math.Float32bits(v), n, b.stream))
	case engine.BFloat16:
		b.setErr(b.ctx.Memset(b.ptr(op, t), 2, uint32(f32ToBF16(v)), n, b.stream))
	case engine.Int32:
		b.setErr(b.ctx.Memset(b.ptr(op, t), 4, uint32(int32(v)), n, b.stream))
	default:
		panic(fmt.Sprintf("cuda.Fill: unsupported tensor %v", t))
	}
}

// ---- linear algebra ----

// Gemm computes c = alpha·op(a)·op(b) + beta·c with the fused matmul
// kernel: gt_gemm_f32 when a and b are Float32, gt_gemm_bf16 (tensor cores)
// when both are BFloat16; a mixed pair is computed in float32 from a
// converted copy of the BFloat16 operand.
func (b *Backend) Gemm(c, a, bm *engine.Tensor, transA, transB bool, alpha, beta float32) {
	const op = "Gemm"
	m, k := a.Rows(), a.Cols()
	if transA {
		m, k = k, m
	}
	k2, n := bm.Rows(), bm.Cols()
	if transB {
		k2, n = n, k2
	}
	need(k == k2 && c.Rows() == m && c.Cols() == n, op,
		"shapes c %v = op(a %v, transA=%v)·op(b %v, transB=%v) do not agree", c, a, transA, bm, transB)
	need(isFloat(c, a, bm), op, "tensors c %v, a %v, b %v must be F32 or BF16", c, a, bm)
	b.gemm(op, gemmArgs{
		c: c, a: a, b: bm, transA: transA, transB: transB,
		m: m, n: n, k: k, alpha: alpha, beta: beta, act: engine.ActIdentity,
	})
}

// AddBias adds bias[j] to every row of x.
func (b *Backend) AddBias(x, bias *engine.Tensor) {
	const op = "AddBias"
	need(bias.Len() == x.Cols(), op, "bias %v does not match the %d columns of %v", bias, x.Cols(), x)
	need(isFloat(x, bias), op, "tensors must be F32 or BF16")
	b.ew(op, x.Len(), func(g geomEw) {
		b.launchAddBias(op, g, b.ptr(op, x), dt(x), b.ptr(op, bias), dt(bias), x.Len(), x.Cols())
	})
}

// SumRows accumulates dst[j] += Σ_r x[r, j].
func (b *Backend) SumRows(dst, x *engine.Tensor) {
	const op = "SumRows"
	need(dst.Len() == x.Cols(), op, "dst %v does not match the %d columns of %v", dst, x.Cols(), x)
	need(isFloat(dst, x), op, "tensors must be F32 or BF16")
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || x.Len() == 0 {
		return
	}
	need(fits32(x.Len()), op, "tensor %v too large for the kernels' 32-bit sizes", x)
	b.launchSumRows(op, cols32Geom(x.Cols()), b.ptr(op, dst), dt(dst), b.ptr(op, x), dt(x), x.Rows(), x.Cols())
}

// ---- elementwise ----

// ew runs launch, the call of one elementwise kernel's generated
// launcher, with the EW geometry for n elements. It takes b.mu itself and
// skips the launch after an earlier error or when n is 0.
func (b *Backend) ew(op string, n int, launch func(geomEw)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || n == 0 {
		return
	}
	need(fits32(n), op, "%d elements exceed the kernels' 32-bit sizes", n)
	launch(b.ewGeom(n))
}

// Add computes dst = a + b.
func (b *Backend) Add(dst, x, y *engine.Tensor) {
	const op = "Add"
	sameLen(op, dst.Len(), x, y)
	need(isFloat(dst, x, y), op, "tensors must be F32 or BF16")
	b.ew(op, dst.Len(), func(g geomEw) {
		b.launchAdd(op, g, b.ptr(op, dst), dt(dst), b.ptr(op, x), dt(x), b.ptr(op, y), dt(y), dst.Len())
	})
}

// Mul computes dst = a ⊙ b.
func (b *Backend) Mul(dst, x, y *engine.Tensor) {
	const op = "Mul"
	sameLen(op, dst.Len(), x, y)
	need(isFloat(dst, x, y), op, "tensors must be F32 or BF16")
	b.ew(op, dst.Len(), func(g geomEw) {
		b.launchMul(op, g, b.ptr(op, dst), dt(dst), b.ptr(op, x), dt(x), b.ptr(op, y), dt(y), dst.Len())
	})
}

// Axpy computes dst += alpha·x.
func (b *Backend) Axpy(dst, x *engine.Tensor, alpha float32) {
	const op = "Axpy"
	sameLen(op, dst.Len(), x)
	need(isFloat(dst, x), op, "tensors must be F32 or BF16")
	b.ew(op, dst.Len(), func(g geomEw) {
		b.launchAxpy(op, g, b.ptr(op, dst), dt(dst), b.ptr(op, x), dt(x), dst.Len(), alpha)
	})
}

// Scale computes x *= alpha.
func (b *Backend) Scale(x *engine.Tensor, alpha float32) {
	const op = "Scale"
	need(isFloat(x), op, "tensor must be F32 or BF16")
	b.ew(op, x.Len(), func(g geomEw) {
		b.launchScale(op, g, b.ptr(op, x), dt(x), x.Len(), alpha)
	})
}

// Dropout computes out = x/(1 − p) where engine.DropoutKeep keeps the
// element, 0 elsewhere, with gt_dropout (the same mask as every backend).
func (b *Backend) Dropout(out, x *engine.Tensor, p float32, seed uint64) {
	const op = "Dropout"
	sameLen(op, x.Len(), out)
	need(isFloat(out, x), op, "tensors must be F32 or BF16")
	need(p >= 0 && p < 1, op, "dropout %g outside [0, 1)", p)
	thr, keep := engine.DropoutThreshold(p), 1/(1-p)
	b.ew(op, x.Len(), func(g geomEw) {
		b.launchDropout(op, g, b.ptr(op, out), dt(out), b.ptr(op, x), dt(x), x.Len(),
			int(int32(uint32(seed))), int(int32(uint32(seed>>32))), int(thr), keep)
	})
}

// MulCols computes dst[r, j] = x[r, j]·v[j].
func (b *Backend) MulCols(dst, x, v *engine.Tensor) {
	const op = "MulCols"
	sameLen(op, x.Len(), dst)
	need(v.Len() == x.Cols(), op, "v %v does not match the %d columns of %v", v, x.Cols(), x)
	need(isFloat(dst, x, v), op, "tensors must be F32 or BF16")
	b.ew(op, x.Len(), func(g geomEw) {
		b.launchMulCols(op, g, b.ptr(op, dst), dt(dst), b.ptr(op, x), dt(x), b.ptr(op, v), dt(v), x.Len(), x.Cols())
	})
}

// RowSumSquares computes dst[r] = Σ_j x[r, j]².
func (b *Backend) RowSumSquares(dst, x *engine.Tensor) {
	const op = "RowSumSquares"
	need(dst.Len() == x.Rows(), op, "dst %v does not match the %d rows of %v", dst, x.Rows(), x)
	need(isFloat(dst, x), op, "tensors must be F32 or BF16")
	b.row(op, x.Rows(), x.Cols(), func(g geomRow) {
		b.launchRowSumSquares(op, g, b.ptr(op, dst), dt(dst), b.ptr(op, x), dt(x), x.Rows(), x.Cols())
	})
}

// row runs launch, the call of one one-block-per-row kernel's generated
// launcher, with the ROW geometry (takes b.mu, like ew).
func (b *Backend) row(op string, rows, cols int, launch func(geomRow)) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || rows == 0 {
		return
	}
	need(fits32(rows*cols), op, "%dx%d elements exceed the kernels' 32-bit sizes", rows, cols)
	launch(rowGeom(rows))
}

// SumSquares accumulates dst[0] += Σ x².
func (b *Backend) SumSquares(dst, x *engine.Tensor) {
	const op = "SumSquares"
	need(dst.Len() == 1, op, "dst %v must have one element", dst)
	need(isFloat(x), op, "x %v must be F32 or BF16", x)
	if dst.DType() != engine.Float32 {
		b.fallback(op, ts(dst), ts(x), func(h func(*engine.Tensor) *engine.Tensor) { b.host.SumSquares(h(dst), h(x)) })
		return
	}
	b.ew(op, x.Len(), func(g geomEw) {
		b.launchSumSquares(op, g, b.ptr(op, dst), b.ptr(op, x), dt(x), x.Len())
	})
}

// ---- activations ----

// Activation computes out = act(x).
func (b *Backend) Activation(out, x *engine.Tensor, act engine.Act) {
	const op = "Activation"
	sameLen(op, x.Len(), out)
	need(isFloat(out, x), op, "tensors must be F32 or BF16")
	need(act <= engine.ActSigmoid, op, "unknown activation %d", act)
	b.ew(op, x.Len(), func(g geomEw) {
		b.launchActivation(op, g, b.ptr(op, out), dt(out), b.ptr(op, x), dt(x), x.Len(), int(act))
	})
}

// ActivationBackward accumulates dx += dout ⊙ act'(x).
func (b *Backend) ActivationBackward(dx, dout, x *engine.Tensor, act engine.Act) {
	const op = "ActivationBackward"
	if dx == nil {
		return
	}
	sameLen(op, x.Len(), dx, dout)
	need(isFloat(dx, dout, x), op, "tensors must be F32 or BF16")
	need(act <= engine.ActSigmoid, op, "unknown activation %d", act)
	b.ew(op, x.Len(), func(g geomEw) {
		b.launchActivationBackward(op, g, b.ptr(op, dx), dt(dx), b.ptr(op, dout), dt(dout), b.ptr(op, x), dt(x), x.Len(), int(act))
	})
}

// SwiGLU computes out = silu(gate) ⊙ up.
func (b *Backend) SwiGLU(out, gate, up *engine.Tensor) {
	b.glu("SwiGLU", b.launchSwiglu, out, gate, up)
}

// SwiGLUBackward accumulates dgate and dup (either may be nil).
func (b *Backend) SwiGLUBackward(dgate, dup, dout, gate, up *engine.Tensor) {
	b.gluBackward("SwiGLUBackward", b.launchSwigluBackward, dgate, dup, dout, gate, up)
}

// GeGLU computes out = gelu_tanh(gate) ⊙ up.
func (b *Backend) GeGLU(out, gate, up *engine.Tensor) { b.glu("GeGLU", b.launchGeglu, out, gate, up) }

// GeGLUBackward accumulates dgate and dup (either may be nil).
func (b *Backend) GeGLUBackward(dgate, dup, dout, gate, up *engine.Tensor) {
	b.gluBackward("GeGLUBackward", b.launchGegluBackward, dgate, dup, dout, gate, up)
}

// gluLauncher is the launcher of a gated-activation kernel (out, gate, up).
type gluLauncher func(op string, geom geomEw, out DevicePtr, outDt int, gate DevicePtr, gateDt int, up DevicePtr, upDt int, n int)

// glu runs a gated-activation forward kernel.
func (b *Backend) glu(op string, launch gluLauncher, out, gate, up *engine.Tensor) {
	sameLen(op, out.Len(), gate, up)
	need(isFloat(out, gate, up), op, "tensors must be F32 or BF16")
	b.ew(op, out.Len(), func(g geomEw) {
		launch(op, g, b.ptr(op, out), dt(out), b.ptr(op, gate), dt(gate), b.ptr(op, up), dt(up), out.Len())
	})
}

// gluBackward runs a gated-activation backward kernel (dgate, dup, dout,
// gate, up; either gradient may be nil).
func (b *Backend) gluBackward(op string, launch func(string, geomEw, DevicePtr, int, DevicePtr, int, DevicePtr, int, DevicePtr, int, DevicePtr, int, int), dgate, dup, dout, gate, up *engine.Tensor) {
	if dgate == nil && dup == nil {
		return
	}
	sameLen(op, dout.Len(), gate, up, dgate, dup)
	need(isFloat(dgate, dup, dout, gate, up), op, "tensors must be F32 or BF16")
	b.ew(op, dout.Len(), func(g geomEw) {
		launch(op, g, b.ptr(op, dgate), dt(dgate), b.ptr(op, dup), dt(dup), b.ptr(op, dout), dt(dout), b.ptr(op, gate), dt(gate), b.ptr(op, up), dt(up), dout.Len())
	})
}

// ---- embeddings ----

// Embedding gathers out[i, :] = table[ids[i], :]. Unlike the CPU backend,
// which panics, an id outside the table yields a zero row: checking would
// need a device-to-host copy of the ids. Callers validate ids on the host.
func (b *Backend) Embedding(out, table, ids *engine.Tensor) {
	const op = "Embedding"
	vocab, dim := table.Rows(), table.Cols()
	need(out.Cols() == dim && out.Rows() == ids.Len(), op, "out %v must be [%d, %d] for ids %v and table %v", out, ids.Len(), dim, ids, table)
	need(ids.DType() == engine.Int32, op, "ids %v must be I32", ids)
	need(isFloat(out, table), op, "tensors must be F32 or BF16")
	need(fits32(table.Len()), op, "table %v exceeds the kernels' 32-bit sizes", table)
	b.ew(op, out.Len(), func(g geomEw) {
		b.launchEmbedding(op, g, b.ptr(op, out), dt(out), b.ptr(op, table), dt(table), b.ptr(op, ids), out.Len(), dim, vocab)
	})
}

// EmbeddingBackward scatter-adds dtable[ids[i], :] += dout[i, :] (ids
// outside the table are skipped; see Embedding).
func (b *Backend) EmbeddingBackward(dtable, dout, ids *engine.Tensor) {
	const op = "EmbeddingBackward"
	if dtable == nil {
		return
	}
	vocab, dim := dtable.Rows(), dtable.Cols()
	need(dout.Cols() == dim && dout.Rows() == ids.Len(), op, "dout %v must be [%d, %d] for ids %v and dtable %v", dout, ids.Len(), dim, ids, dtable)
	need(ids.DType() == engine.Int32, op, "ids %v must be I32", ids)
	need(isFloat(dtable, dout), op, "tensors must be F32 or BF16")
	need(fits32(dtable.Len()), op, "table %v exceeds the kernels' 32-bit sizes", dtable)
	b.ew(op, dout.Len(), func(g geomEw) {
		b.launchEmbeddingBackward(op, g, b.ptr(op, dtable), dt(dtable), b.ptr(op, dout), dt(dout), b.ptr(op, ids), dout.Len(), dim, vocab)
	})
}

// ---- normalisation ----

// RMSNorm computes out = x·rstd ⊙ w row by row, saving rstd.
func (b *Backend) RMSNorm(out, rstd, x, w *engine.Tensor, eps float32) {
	const op = "RMSNorm"
	rows, cols := x.Rows(), x.Cols()
	sameLen(op, x.Len(), out)
	need(w.Len() == cols, op, "weight %v does not match the %d columns of %v", w, cols, x)
	need(rstd.Len() == rows, op, "rstd %v does not match the %d rows of %v", rstd, rows, x)
	need(isFloat(out, rstd, x, w), op, "tensors must be F32 or BF16")
	if !isF32(rstd) {
		b.fallback(op, ts(out, rstd), ts(x, w), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.RMSNorm(h(out), h(rstd), h(x), h(w), eps)
		})
		return
	}
	b.row(op, rows, cols, func(g geomRow) {
		b.launchRmsnorm(op, g, b.ptr(op, out), dt(out), b.ptr(op, rstd), b.ptr(op, x), dt(x), b.ptr(op, w), dt(w), rows, cols, eps)
	})
}

// RMSNormBackward accumulates dx and dw (either may be nil).
func (b *Backend) RMSNormBackward(dx, dw, dout, x, w, rstd *engine.Tensor) {
	const op = "RMSNormBackward"
	if dx == nil && dw == nil {
		return
	}
	rows, cols := x.Rows(), x.Cols()
	sameLen(op, x.Len(), dout, dx)
	sameLen(op, cols, w, dw)
	sameLen(op, rows, rstd)
	need(isFloat(dx, dw, dout, x, w, rstd), op, "tensors must be F32 or BF16")
	if !isF32(rstd) {
		b.fallback(op, ts(dx, dw), ts(dout, x, w, rstd), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.RMSNormBackward(h(dx), h(dw), h(dout), h(x), h(w), h(rstd))
		})
		return
	}
	b.row(op, rows, cols, func(g geomRow) {
		b.launchRmsnormBackward(op, g, b.ptr(op, dx), dt(dx), b.ptr(op, dw), dt(dw), b.ptr(op, dout), dt(dout), b.ptr(op, x), dt(x), b.ptr(op, w), dt(w), b.ptr(op, rstd), rows, cols)
	})
}

// LayerNorm computes out = (x-mean)·rstd ⊙ w + b row by row (b may be nil).
func (b *Backend) LayerNorm(out, mean, rstd, x, w, bias *engine.Tensor, eps float32) {
	const op = "LayerNorm"
	rows, cols := x.Rows(), x.Cols()
	sameLen(op, x.Len(), out)
	sameLen(op, cols, w, bias)
	sameLen(op, rows, mean, rstd)
	need(isFloat(out, mean, rstd, x, w, bias), op, "tensors must be F32 or BF16")
	if !isF32(mean, rstd) {
		b.fallback(op, ts(out, mean, rstd), ts(x, w, bias), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.LayerNorm(h(out), h(mean), h(rstd), h(x), h(w), h(bias), eps)
		})
		return
	}
	b.row(op, rows, cols, func(g geomRow) {
		b.launchLayernorm(op, g, b.ptr(op, out), dt(out), b.ptr(op, mean), b.ptr(op, rstd), b.ptr(op, x), dt(x), b.ptr(op, w), dt(w), b.ptr(op, bias), dt(bias), rows, cols, eps)
	})
}

// LayerNormBackward accumulates dx, dw, db (any may be nil).
func (b *Backend) LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd *engine.Tensor) {
	const op = "LayerNormBackward"
	if dx == nil && dw == nil && db == nil {
		return
	}
	rows, cols := x.Rows(), x.Cols()
	sameLen(op, x.Len(), dout, dx)
	sameLen(op, cols, w, dw, db)
	sameLen(op, rows, mean, rstd)
	need(isFloat(dx, dw, db, dout, x, w, mean, rstd), op, "tensors must be F32 or BF16")
	if !isF32(mean, rstd) {
		b.fallback(op, ts(dx, dw, db), ts(dout, x, w, mean, rstd), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.LayerNormBackward(h(dx), h(dw), h(db), h(dout), h(x), h(w), h(mean), h(rstd))
		})
		return
	}
	b.row(op, rows, cols, func(g geomRow) {
		b.launchLayernormBackward(op, g, b.ptr(op, dx), dt(dx), b.ptr(op, dw), dt(dw), b.ptr(op, db), dt(db), b.ptr(op, dout), dt(dout), b.ptr(op, x), dt(x), b.ptr(op, w), dt(w), b.ptr(op, mean), b.ptr(op, rstd), rows, cols)
	})
}

// ---- positions and attention ----

// RoPE rotates x in place (see engine.Backend).
func (b *Backend) RoPE(x, cos, sin *engine.Tensor, posOffset int, layout engine.RopeLayout, inverse bool) {
	const op = "RoPE"
	shape := x.Shape()
	need(len(shape) == 4, op, "x %v must be [B, T, H, D]", x)
	bsz, seq, heads, dim := shape[0], shape[1], shape[2], shape[3]
	half := dim / 2
	need(dim%2 == 0, op, "head dim %d of %v is odd", dim, x)
	need(cos.Cols() == half && sin.Cols() == half && cos.Rows() == sin.Rows(), op, "cos %v and sin %v must both be [maxPos, %d]", cos, sin, half)
	need(posOffset >= 0 && posOffset+seq <= cos.Rows(), op, "positions [%d, %d) outside the %d-row tables", posOffset, posOffset+seq, cos.Rows())
	need(layout == engine.RopeHalf || layout == engine.RopeInterleaved, op, "unknown layout %d", layout)
	need(isFloat(x, cos, sin), op, "tensors must be F32 or BF16")
	if cos.DType() != sin.DType() {
		b.fallback(op, ts(x), ts(cos, sin), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.RoPE(h(x), h(cos), h(sin), posOffset, layout, inverse)
		})
		return
	}
	interleaved, inv := 0, 0
	if layout == engine.RopeInterleaved {
		interleaved = 1
	}
	if inverse {
		inv = 1
	}
	pairs := bsz * seq * heads * half
	b.ew(op, pairs, func(g geomEw) {
		b.launchRope(op, g, b.ptr(op, x), dt(x), b.ptr(op, cos), b.ptr(op, sin), dt(cos), pairs, seq, heads, dim, posOffset, interleaved, inv)
	})
}

// Attention and AttentionBackward: attention.go.

// ---- loss and optimizer ----

// CrossEntropy computes per-row losses and, when dlogits is non-nil,
// overwrites it with the scaled gradient. Labels >= the class count are
// not checked on the device (the CPU backend panics on them): such a row
// gets a NaN loss, which the caller's loss then shows.
func (b *Backend) CrossEntropy(losses, dlogits, logits, labels *engine.Tensor, gradScale, softCap float32) {
	const op = "CrossEntropy"
	rows, vocab := logits.Rows(), logits.Cols()
	need(labels.Len() == rows, op, "labels %v do not match the %d rows of %v", labels, rows, logits)
	need(losses.Len() == rows, op, "losses %v do not match the %d rows of %v", losses, rows, logits)
	need(labels.DType() == engine.Int32, op, "labels %v must be I32", labels)
	sameLen(op, logits.Len(), dlogits)
	need(isFloat(losses, dlogits, logits), op, "tensors must be F32 or BF16")
	if !isF32(losses) {
		b.fallback(op, ts(losses, dlogits), ts(logits, labels), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.CrossEntropy(h(losses), h(dlogits), h(logits), h(labels), gradScale, softCap)
		})
		return
	}
	b.row(op, rows, vocab, func(g geomRow) {
		b.launchCrossEntropy(op, g, b.ptr(op, losses), b.ptr(op, dlogits), dt(dlogits), b.ptr(op, logits), dt(logits), b.ptr(op, labels), rows, vocab, gradScale, softCap)
	})
}

// AdamW updates param in place (torch.optim.AdamW semantics; the
// step-dependent scalars are computed on the host in float64, as the CPU
// backend does).
func (b *Backend) AdamW(param, grad, m, v *engine.Tensor, h engine.AdamWParams) {
	const op = "AdamW"
	sameLen(op, param.Len(), grad, m, v)
	need(h.Step >= 1, op, "step %d must be >= 1", h.Step)
	need(isFloat(param, grad, m, v), op, "tensors must be F32 or BF16")
	bc1 := float32(1 - math.Pow(float64(h.Beta1), float64(h.Step)))
	bc2 := float32(1 - math.Pow(float64(h.Beta2), float64(h.Step)))
	b.ew(op, param.Len(), func(g geomEw) {
		b.launchAdamw(op, g, b.ptr(op, param), dt(param), b.ptr(op, grad), dt(grad), b.ptr(op, m), dt(m), b.ptr(op, v), dt(v), param.Len(), h.LR, h.Beta1, h.Beta2, h.Eps, h.WeightDecay, bc1, bc2)
	})
}
