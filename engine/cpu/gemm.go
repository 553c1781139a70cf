package cpu

import (
	"sync"

	"github.com/gotune/gotune/engine"
)

// Gemm computes c = alpha·op(a)·op(b) + beta·c on matrix views; see
// engine.Backend. With beta == 0 the old contents of c are never read.
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
	check(k == k2 && c.Rows() == m && c.Cols() == n, op,
		"shapes c %v = op(a %v, transA=%v)·op(b %v, transB=%v) do not agree", c, a, transA, bm, transB)
	cs, done := write(op, c)
	gemm(true, m, n, k, alpha, operand(op, a, transA), operand(op, bm, transB), beta, cs, n)
	done()
}

// mat is a gemm operand: a row-major matrix with row stride ld, read
// transposed when trans, stored either as float32 (f) or bfloat16 (h).
// BFloat16 operands are converted while packing, so a large frozen
// bfloat16 weight is never expanded to float32 as a whole.
type mat struct {
	f     []float32
	h     []uint16
	ld    int
	trans bool
}

// fmat wraps a float32 slice as a gemm operand.
func fmat(f []float32, ld int, trans bool) mat { return mat{f: f, ld: ld, trans: trans} }

// operand wraps a Float32 or BFloat16 tensor's matrix view.
func operand(op string, t *engine.Tensor, trans bool) mat {
	if t.DType() == engine.BFloat16 {
		return mat{h: u16s(op, t), ld: t.Cols(), trans: trans}
	}
	return mat{f: f32s(op, t), ld: t.Cols(), trans: trans}
}

// float32s returns the operand as float32 (converting a bfloat16 one).
func (x mat) float32s() []float32 {
	if x.h == nil {
		return x.f
	}
	f := make([]float32, len(x.h))
	bf16ToF32(f, x.h)
	return f
}

// Blocking parameters (in elements). A kc-deep slice of packed A for mcBlock
// rows stays in L2 while a packed B micro-panel streams through L1; B is
// packed ncBlock columns at a time to bound scratch memory for wide
// outputs (vocabulary projections).
const (
	kcBlock = 256
	mcBlock = 96 // multiple of every kernel's mr
	ncBlock = 2048
	nSub    = 256 // column width of one parallel task, a multiple of every nr
)

// gemm is the float32 kernel behind Gemm: C[m×n] (row stride ldc) =
// alpha·op(A)·op(B) + beta·C, where A has row stride lda and is read
// transposed when transA, likewise B. With par it spreads the work over
// the cores; callers that are already parallel (attention tasks) pass
// false.
func gemm(par bool, m, n, k int, alpha float32, a, b mat, beta float32, c []float32, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	scaleC(par, m, n, beta, c, ldc)
	if k == 0 || alpha == 0 {
		return
	}
	thin := (m < 16 || n < 16) && a.h == nil && b.h == nil
	if thin || m*n*k < 48*48*48 {
		// Thin float32 products skip packing; tiny ones convert bfloat16
		// operands whole. Thin products with a bfloat16 operand take the
		// packed path, which converts panel by panel (a decode step
		// against a big frozen bfloat16 weight must not expand it).
		gemmSmall(par, m, n, k, alpha, a.float32s(), a.ld, a.trans, b.float32s(), b.ld, b.trans, c, ldc)
		return
	}
	kern := activeKernel
	mr, nr := kern.mr, kern.nr
	for jc := 0; jc < n; jc += ncBlock {
		nc := min(ncBlock, n-jc)
		for pc := 0; pc < k; pc += kcBlock {
			kc := min(kcBlock, k-pc)
			aPanels := (m + mr - 1) / mr
			bPanels := (nc + nr - 1) / nr
			ap := getBuf(aPanels * mr * kc)
			bp := getBuf(bPanels * nr * kc)
			pfor(par, aPanels, mr*kc, func(lo, hi int) {
				for pi := lo; pi < hi; pi++ {
					packA(ap[pi*mr*kc:(pi+1)*mr*kc], a, pi*mr, min(mr, m-pi*mr), pc, kc, mr, alpha)
				}
			})
			pfor(par, bPanels, nr*kc, func(lo, hi int) {
				for pj := lo; pj < hi; pj++ {
					packB(bp[pj*nr*kc:(pj+1)*nr*kc], b, jc+pj*nr, min(nr, nc-pj*nr), pc, kc, nr)
				}
			})
			mTasks := (m + mcBlock - 1) / mcBlock
			nTasks := (nc + nSub - 1) / nSub
			tiles := func(task int) {
				i0 := (task / nTasks) * mcBlock
				j0 := (task % nTasks) * nSub
				i1, j1 := min(i0+mcBlock, m), min(j0+nSub, nc)
				var tile [maxTile]float32
				for j := j0; j < j1; j += nr {
					bpan := bp[(j/nr)*nr*kc:][:nr*kc]
					w := min(nr, j1-j)
					for i := i0; i < i1; i += mr {
						apan := ap[(i/mr)*mr*kc:][:mr*kc]
						h := min(mr, i1-i)
						cOff := i*ldc + jc + j
						if h == mr && w == nr {
							kern.fn(kc, apan, bpan, c[cOff:], ldc)
							continue
						}
						// Edge tile: compute a full tile into scratch and
						// add only its valid part.
						t := tile[:mr*nr]
						clear(t)
						kern.fn(kc, apan, bpan, t, nr)
						for r := 0; r < h; r++ {
							cr := c[cOff+r*ldc:][:w]
							for q, v := range t[r*nr : r*nr+w] {
								cr[q] += v
							}
						}
					}
				}
			}
			if par {
				runChunks(mTasks*nTasks, tiles)
			} else {
				for task := 0; task < mTasks*nTasks; task++ {
					tiles(task)
				}
			}
			putBuf(ap)
			putBuf(bp)
		}
	}
}

// scaleC applies beta to C: zero (ignoring NaN/Inf in the old contents)
// when beta == 0, nothing when beta == 1.
func scaleC(par bool, m, n int, beta float32, c []float32, ldc int) {
	if beta == 1 {
		return
	}
	pfor(par, m, n, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			row := c[i*ldc : i*ldc+n]
			if beta == 0 {
				clear(row)
				continue
			}
			for j := range row {
				row[j] *= beta
			}
		}
	})
}

// packA copies rows [i0, i0+h) × columns [p0, p0+kc) of op(A), scaled by
// alpha, into dst as kc groups of mr values (rows past h are zero).
func packA(dst []float32, a mat, i0, h, p0, kc, mr int, alpha float32) {
	if h < mr {
		clear(dst)
	}
	lda := a.ld
	for r := 0; r < h; r++ {
		i := i0 + r
		switch {
		case a.h != nil && a.trans:
			for p := 0; p < kc; p++ {
				dst[p*mr+r] = alpha * bf16BitsToF32(a.h[(p0+p)*lda+i])
			}
		case a.h != nil:
			for p, v := range a.h[i*lda+p0 : i*lda+p0+kc] {
				dst[p*mr+r] = alpha * bf16BitsToF32(v)
			}
		case a.trans:
			for p := 0; p < kc; p++ {
				dst[p*mr+r] = alpha * a.f[(p0+p)*lda+i]
			}
		default:
			for p, v := range a.f[i*lda+p0 : i*lda+p0+kc] {
				dst[p*mr+r] = alpha * v
			}
		}
	}
}

// packB copies rows [p0, p0+kc) × columns [j0, j0+w) of op(B) into dst as
// kc groups of nr values (columns past w are zero).
func packB(dst []float32, b mat, j0, w, p0, kc, nr int) {
	if w < nr {
		clear(dst)
	}
	ldb := b.ld
	switch {
	case b.trans && b.h != nil:
		for q := 0; q < w; q++ {
			for p, v := range b.h[(j0+q)*ldb+p0 : (j0+q)*ldb+p0+kc] {
				dst[p*nr+q] = bf16BitsToF32(v)
			}
		}
	case b.trans:
		for q := 0; q < w; q++ {
			for p, v := range b.f[(j0+q)*ldb+p0 : (j0+q)*ldb+p0+kc] {
				dst[p*nr+q] = v
			}
		}
	case b.h != nil:
		for p := 0; p < kc; p++ {
			d := dst[p*nr : p*nr+w]
			for q, v := range b.h[(p0+p)*ldb+j0 : (p0+p)*ldb+j0+w] {
				d[q] = bf16BitsToF32(v)
			}
		}
	default:
		for p := 0; p < kc; p++ {
			copy(dst[p*nr:p*nr+w], b.f[(p0+p)*ldb+j0:(p0+p)*ldb+j0+w])
		}
	}
}

// gemmSmall handles thin or tiny products without packing: each C row is
// built from contiguous axpys (op(B) = B) or dot products (op(B) = Bᵀ).
func gemmSmall(par bool, m, n, k int, alpha float32, a []float32, lda int, transA bool, b []float32, ldb int, transB bool, c []float32, ldc int) {
	pfor(par, m, 2*n*k, func(lo, hi int) {
		arow := make([]float32, k)
		for i := lo; i < hi; i++ {
			if transA {
				for p := range arow {
					arow[p] = a[p*lda+i]
				}
			} else {
				copy(arow, a[i*lda:i*lda+k])
			}
			crow := c[i*ldc : i*ldc+n]
			if transB {
				for j := range crow {
					crow[j] += alpha * dot(arow, b[j*ldb:j*ldb+k])
				}
				continue
			}
			for p, av := range arow {
				if av != 0 {
					axpy(crow, b[p*ldb:p*ldb+n], alpha*av)
				}
			}
		}
	})
}

// pfor is parallelFor when par, a plain call otherwise.
func pfor(par bool, n, cost int, fn func(lo, hi int)) {
	if par {
		parallelFor(n, cost, fn)
	} else if n > 0 {
		fn(0, n)
	}
}

// bufPool recycles packing buffers between calls.
var bufPool sync.Pool

func getBuf(n int) []float32 {
	if p, ok := bufPool.Get().(*[]float32); ok && cap(*p) >= n {
		return (*p)[:n]
	}
	return make([]float32, n)
}

func putBuf(b []float32) { bufPool.Put(&b) }
