package cuda

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// gemmArgs is one fused matrix product (see kernels/gemm.cu):
//
//	v = alpha·(op(a)·op(b) + a2·op(b2)) ; v += bias ; aux/act ; v += res ; v += beta·c
//
// a2/b2, bias, res and aux may be nil. Matrices are dense row-major
// tensors; leading dimensions are their column counts.
type gemmArgs struct {
	c, a, b        *engine.Tensor
	transA, transB bool
	a2, b2         *engine.Tensor
	transB2        bool
	k2             int
	bias, res, aux *engine.Tensor
	auxMode        int
	m, n, k        int
	alpha, beta    float32
	act            engine.Act
}

func bool2int(v bool) int {
	if v {
		return 1
	}
	return 0
}

// gemm runs the fused product; it takes b.mu.
func (b *Backend) gemm(op string, g gemmArgs) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) {
		return
	}
	b.gemmLocked(op, g)
}

// gemmLocked picks the kernel and launches it. Both kernels need their four
// operands in one dtype: all BFloat16 takes the tensor-core kernel,
// anything else the float32 one, with BFloat16 operands converted to
// float32 scratch copies first. res and aux must share c's dtype (the
// kernel reads them with c's dtype code); a res of another dtype is
// converted. Callers hold b.mu.
func (b *Backend) gemmLocked(op string, g gemmArgs) {
	if g.m == 0 || g.n == 0 {
		return
	}
	for _, t := range []*engine.Tensor{g.c, g.a, g.b, g.a2, g.b2, g.res, g.aux} {
		need(t == nil || fits32(t.Len()), op, "tensor %v exceeds the kernels' 32-bit sizes", t)
	}
	if g.a2 == nil || g.b2 == nil {
		g.a2, g.b2, g.k2 = nil, nil, 0
	}
	need(g.aux == nil || g.aux.DType() == g.c.DType(), op, "aux %v must have c's dtype (%v)", g.aux, g.c.DType())
	var scratch []*engine.Tensor
	defer func() {
		for _, t := range scratch {
			b.pool.put(b.store(op, t).l)
		}
	}()
	convert := func(t *engine.Tensor, to engine.DType) *engine.Tensor {
		if t == nil || t.DType() == to {
			return t
		}
		s := b.alloc(op, to, t.Shape()...)
		scratch = append(scratch, s)
		if !b.broken() {
			b.copyBlock(op, b.ptr(op, s), int(to), t.Len(), b.ptr(op, t), dt(t), t.Len(), 1, t.Len(), false)
		}
		return s
	}
	allBF16 := true
	for _, t := range []*engine.Tensor{g.a, g.b, g.a2, g.b2} {
		if t != nil && t.DType() != engine.BFloat16 {
			allBF16 = false
		}
	}
	tile, bk := gemmBf16Tile, gemmBf16K
	if !allBF16 {
		tile, bk = gemmF32Tile, gemmF32K
		g.a, g.b = convert(g.a, engine.Float32), convert(g.b, engine.Float32)
		g.a2, g.b2 = convert(g.a2, engine.Float32), convert(g.b2, engine.Float32)
	}
	g.res = convert(g.res, g.c.DType())
	if b.broken() {
		return
	}
	gx, gy := (g.n+tile-1)/tile, (g.m+tile-1)/tile
	need(gy <= maxGridYz, op, "%d rows exceed the kernel's grid (%d tiles of %d)", g.m, maxGridYz, tile)
	splits := b.splitK(g, gx*gy, bk)
	ld := func(t *engine.Tensor) int {
		if t == nil {
			return 0
		}
		return t.Cols()
	}
	c, a, bm := b.ptr(op, g.c), b.ptr(op, g.a), b.ptr(op, g.b)
	a2, b2, bias, res, aux := b.ptr(op, g.a2), b.ptr(op, g.b2), b.ptr(op, g.bias), b.ptr(op, g.res), b.ptr(op, g.aux)
	if allBF16 {
		b.launchGemmBf16(op, gemmBf16Geom(g.m, g.n, splits), c, dt(g.c), ld(g.c), a, ld(g.a), bool2int(g.transA),
			bm, ld(g.b), bool2int(g.transB), a2, ld(g.a2), b2, ld(g.b2), bool2int(g.transB2), g.k2,
			bias, dt(g.bias), res, ld(g.res), aux, ld(g.aux), g.auxMode, g.m, g.n, g.k, g.alpha, g.beta, int(g.act))
		return
	}
	b.launchGemmF32(op, gemmF32Geom(g.m, g.n, splits), c, dt(g.c), ld(g.c), a, ld(g.a), bool2int(g.transA),
		bm, ld(g.b), bool2int(g.transB), a2, ld(g.a2), b2, ld(g.b2), bool2int(g.transB2), g.k2,
		bias, dt(g.bias), res, ld(g.res), aux, ld(g.aux), g.auxMode, g.m, g.n, g.k, g.alpha, g.beta, int(g.act))
}

// splitK chooses how many k-slices (gridDim.z) a product is split into.
// Splitting pays when the output has too few tiles to fill the device and
// the reduction is long (weight gradients: a rank-r × K output summed over
// many tokens); the kernel then adds partial sums atomically, which it
// allows only for a float32 c with beta = 1 and no epilogue.
func (b *Backend) splitK(g gemmArgs, tiles, bk int) int {
	if g.c.DType() != engine.Float32 || g.beta != 1 || g.bias != nil || g.res != nil || g.aux != nil || g.act != engine.ActIdentity {
		return 1
	}
	kTiles := (g.k+bk-1)/bk + (g.k2+bk-1)/bk
	sms := max(1, b.ctx.Info().SMs)
	if tiles >= sms {
		return 1
	}
	z := min((2*sms+tiles-1)/tiles, kTiles/splitkMinKtiles, splitkMax)
	return max(1, z)
}

// String describes the product for error messages.
func (g gemmArgs) String() string {
	return fmt.Sprintf("[%d×%d]·[%d×%d] (+ k2 %d)", g.m, g.k, g.k, g.n, g.k2)
}
