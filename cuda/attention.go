package cuda

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// Native attention: BFloat16 q, k, v with head dims up to 128 run the
// tensor-core kernels of kernels/attention_tc.cu (FlashAttention-2 style,
// mma.sync bf16; see attnTcFor); everything else the SIMT kernels of
// kernels/attention.cu. Both share gt_attn_delta.
//
// SIMT kernels: a flash-attention style forward
// (one block per batch, query head and tile of query rows; K/V tiles
// through shared memory; online softmax) and a two-kernel backward that
// needs no atomics (one kernel over query tiles for dq, one over key tiles
// for dk and dv that sums the query heads of each kv group), so the
// gradients are deterministic. Float32 math; Float32 or BFloat16 storage.
// Both families round P and dS at engine.Backend.Attention's bfloat16
// points when q, k and v are BFloat16 (two-pass forward), and both take
// every engine.AttentionOptions field natively (kernels/attention.cuh;
// kernelOpts converts them).

// attnMaxDim is the largest head dimension the kernels take (their widest
// variant); larger ones use the host fallback.
var attnMaxDim = attnFwdVariants[len(attnFwdVariants)-1]

// attnVariantFor returns the head-dimension bound DMAX of the kernel
// instantiation for head dimension d: the smallest that holds it.
func attnVariantFor(d int) int {
	for _, dmax := range attnFwdVariants {
		if d <= dmax {
			return dmax
		}
	}
	panic(fmt.Sprintf("cuda: internal error: no attention variant for head dim %d", d))
}

// attnSmem is the dynamic shared memory (bytes) of an attention kernel
// (launch.cuh's GT_ATTN_*_SMEM).
func attnSmem(id kernelID) int {
	for _, dmax := range attnFwdVariants {
		switch id {
		case attnFwdKernel(dmax):
			return attnFwdSmem(dmax)
		case attnBwdDqKernel(dmax):
			return attnDqSmem(dmax)
		case attnBwdDkvKernel(dmax):
			return attnDkvSmem(dmax)
		}
	}
	return 0
}

// attnTcFor returns the head-dimension bound N of the tensor-core kernels
// (kernels/attention_tc.cu, gt_attn_*_tc_N) for the call, and whether they
// take it: q, k and v BFloat16 and D <= 128 (zero-padded to N inside the
// kernel, so D = 80 runs N = 128). Everything else runs the SIMT kernels.
func attnTcFor(a attnDims, q, k, v *engine.Tensor) (int, bool) {
	if q.DType() != engine.BFloat16 || k.DType() != engine.BFloat16 || v.DType() != engine.BFloat16 {
		return 0, false
	}
	for _, n := range attnFwdTcVariants {
		if a.d <= n {
			return n, true
		}
	}
	return 0, false
}

// attnTcSmem is the dynamic shared memory (bytes) of a tensor-core
// attention kernel (launch.cuh's GT_ATTN_TC_*_SMEM).
func attnTcSmem(id kernelID) int {
	for _, n := range attnFwdTcVariants {
		switch id {
		case attnFwdTcKernel(n):
			return attnTcFwdSmem(n)
		case attnBwdDqTcKernel(n):
			return attnTcDqSmem(n)
		case attnBwdDkvTcKernel(n):
			return attnTcDkvSmem(n)
		}
	}
	return 0
}

// attnDims are the sizes of one attention call.
type attnDims struct {
	b, t, s, hq, hkv, d int
}

// attnShapes validates the operands and options as engine/cpu does (same
// conditions, so both backends reject the same calls).
func attnShapes(op string, out, lse, q, k, v *engine.Tensor, opt engine.AttentionOptions) attnDims {
	qs, ks := q.Shape(), k.Shape()
	need(len(qs) == 4 && len(ks) == 4, op, "q %v and k %v must be [B, T, H, D]", q, k)
	a := attnDims{b: qs[0], t: qs[1], hq: qs[2], d: qs[3], s: ks[1], hkv: ks[2]}
	need(ks[0] == a.b && ks[3] == a.d && engine.SameShape(k, v), op, "k %v and v %v must be [%d, S, Hkv, %d]", k, v, a.b, a.d)
	need(a.s >= a.t, op, "keys S=%d fewer than queries T=%d", a.s, a.t)
	need(a.hkv > 0 && a.hq%a.hkv == 0, op, "query heads %d not a multiple of kv heads %d", a.hq, a.hkv)
	need(out == nil || engine.SameShape(out, q), op, "out %v must match q %v", out, q)
	need(lse.Len() == a.b*a.hq*a.t, op, "lse %v must be [%d, %d, %d]", lse, a.b, a.hq, a.t)
	if err := opt.Check(a.b, a.t); err != nil {
		need(false, op, "%v", err)
	}
	return a
}

// native reports whether the kernels take these sizes: a head dimension
// of 1..256, every size within the kernels' 32-bit ints, and grid
// dimensions within the hardware's limits (heads and batch are grid y, z).
func (a attnDims) native() bool {
	return a.d >= 1 && a.d <= attnMaxDim && a.hq <= 65535 && a.hkv <= 65535 && a.b <= 65535 &&
		fits32(a.b*a.t*a.hq*a.d, a.b*a.s*a.hkv*a.d, a.b*a.hq*a.t)
}

// attnKernelOpts are engine.AttentionOptions as the attention kernels
// take them: the trailing parameters of their kernels.def lines, computed
// on the host as engine/cpu computes them.
type attnKernelOpts struct {
	scale     float32   // opt.ScaleFor(D)
	seg       DevicePtr // Segments, or 0
	softCap   float32
	window    int
	drop      int     // engine.DropoutThreshold(Dropout); 0 without dropout
	keepScale float32 // 1/(1 − Dropout)
	seed      uint64
}

// kernelOpts converts opt for the kernels (attnShapes has checked it).
func (b *Backend) kernelOpts(op string, a attnDims, opt engine.AttentionOptions) attnKernelOpts {
	o := attnKernelOpts{scale: opt.ScaleFor(a.d), softCap: opt.SoftCap, window: opt.Window, keepScale: 1, seed: opt.DropoutSeed}
	if opt.Segments != nil {
		o.seg = b.ptr(op, opt.Segments)
	}
	if opt.Dropout > 0 {
		o.drop = int(engine.DropoutThreshold(opt.Dropout))
		o.keepScale = 1 / (1 - opt.Dropout)
	}
	return o
}

// Attention computes causal grouped-query attention with gt_attn_fwd_*
// (see engine.Backend.Attention), options included. Head dimensions above
// 256, sizes beyond the kernels' 32-bit indices and Int32 operands take
// the host fallback.
func (b *Backend) Attention(out, lse, q, k, v *engine.Tensor, opt engine.AttentionOptions) {
	const op = "Attention"
	a := attnShapes(op, out, lse, q, k, v, opt)
	if !a.native() || !isFloat(out, lse, q, k, v) {
		b.fallback(op, ts(out, lse), ts(q, k, v, opt.Segments), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.Attention(h(out), h(lse), h(q), h(k), h(v), hostOptions(opt, h))
		})
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || a.b*a.t*a.hq == 0 {
		return
	}
	o := b.kernelOpts(op, a, opt)
	if n, ok := attnTcFor(a, q, k, v); ok {
		b.launchAttnFwdTc(op, attnTcFwdGeom(n, a.t, a.hq, a.b), n,
			b.ptr(op, out), dt(out), b.ptr(op, lse), dt(lse), b.ptr(op, q), dt(q), b.ptr(op, k), dt(k), b.ptr(op, v), dt(v),
			a.t, a.s, a.hq, a.hkv, a.d, o.scale, o.seg, o.softCap, o.window, o.drop, o.keepScale, o.seed)
		return
	}
	dmax := attnVariantFor(a.d)
	b.launchAttnFwd(op, attnFwdGeom(dmax, a.t, a.hq, a.b), dmax,
		b.ptr(op, out), dt(out), b.ptr(op, lse), dt(lse), b.ptr(op, q), dt(q), b.ptr(op, k), dt(k), b.ptr(op, v), dt(v),
		a.t, a.s, a.hq, a.hkv, a.d, o.scale, o.seg, o.softCap, o.window, o.drop, o.keepScale, o.seed)
}

// AttentionBackward accumulates dq, dk, dv (any may be nil) with
// gt_attn_delta (Δ = rowsum(dout ⊙ out) into float32 scratch), then
// gt_attn_bwd_dq_* and gt_attn_bwd_dkv_*. No atomics: deterministic.
func (b *Backend) AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse *engine.Tensor, opt engine.AttentionOptions) {
	const op = "AttentionBackward"
	if dq == nil && dk == nil && dv == nil {
		return
	}
	a := attnShapes(op, out, lse, q, k, v, opt)
	need(engine.SameShape(dout, q), op, "dout %v must match q %v", dout, q)
	need(dq == nil || engine.SameShape(dq, q), op, "dq %v must match q %v", dq, q)
	need(dk == nil || engine.SameShape(dk, k), op, "dk %v must match k %v", dk, k)
	need(dv == nil || engine.SameShape(dv, v), op, "dv %v must match v %v", dv, v)
	if !a.native() || !isFloat(dq, dk, dv, dout, q, k, v, out, lse) {
		b.fallback(op, ts(dq, dk, dv), ts(dout, q, k, v, out, lse, opt.Segments), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.AttentionBackward(h(dq), h(dk), h(dv), h(dout), h(q), h(k), h(v), h(out), h(lse), hostOptions(opt, h))
		})
		return
	}
	need(out != nil, op, "out (the forward output) is required")
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || a.b*a.t*a.hq == 0 {
		return // no queries: every gradient is zero, nothing to add
	}
	// Δ is needed by dq and dk (dv uses P only).
	var delta DevicePtr
	if dq != nil || dk != nil {
		rows := a.b * a.t * a.hq
		dtens := b.alloc(op, engine.Float32, rows)
		if b.broken() {
			return
		}
		defer b.Free(dtens) // stream-ordered: reuse happens after these launches
		delta = b.ptr(op, dtens)
		b.launchAttnDelta(op, b.warpRowsGeom(rows), delta, b.ptr(op, dout), dt(dout), b.ptr(op, out), dt(out), rows, a.t, a.hq, a.d)
	}
	o := b.kernelOpts(op, a, opt)
	if n, ok := attnTcFor(a, q, k, v); ok {
		b.attnBackwardTc(op, a, n, o, delta, dq, dk, dv, dout, q, k, v, lse)
		return
	}
	dmax := attnVariantFor(a.d)
	if dq != nil {
		b.launchAttnBwdDq(op, attnDqGeom(dmax, a.t, a.hq, a.b), dmax, b.ptr(op, dq), dt(dq), b.ptr(op, dout), dt(dout), b.ptr(op, q), dt(q), b.ptr(op, k), dt(k),
			b.ptr(op, v), dt(v), b.ptr(op, lse), dt(lse), delta, a.t, a.s, a.hq, a.hkv, a.d,
			o.scale, o.seg, o.softCap, o.window, o.drop, o.keepScale, o.seed)
	}
	if dk != nil || dv != nil {
		b.launchAttnBwdDkv(op, attnDkvGeom(dmax, a.s, a.hkv, a.b), dmax, b.ptr(op, dk), dt(dk), b.ptr(op, dv), dt(dv), b.ptr(op, dout), dt(dout), b.ptr(op, q), dt(q),
			b.ptr(op, k), dt(k), b.ptr(op, v), dt(v), b.ptr(op, lse), dt(lse), delta, a.t, a.s, a.hq, a.hkv, a.d,
			o.scale, o.seg, o.softCap, o.window, o.drop, o.keepScale, o.seed)
	}
}

// attnBackwardTc launches the tensor-core dq and dk/dv kernels for head
// dimension bound n (delta already computed when dq or dk is wanted).
// dout is an mma operand: a Float32 dout is rounded to bfloat16 on load.
func (b *Backend) attnBackwardTc(op string, a attnDims, n int, o attnKernelOpts, delta DevicePtr, dq, dk, dv, dout, q, k, v, lse *engine.Tensor) {
	if dq != nil {
		b.launchAttnBwdDqTc(op, attnTcDqGeom(n, a.t, a.hq, a.b), n, b.ptr(op, dq), dt(dq), b.ptr(op, dout), dt(dout), b.ptr(op, q), dt(q),
			b.ptr(op, k), dt(k), b.ptr(op, v), dt(v), b.ptr(op, lse), dt(lse), delta, a.t, a.s, a.hq, a.hkv, a.d,
			o.scale, o.seg, o.softCap, o.window, o.drop, o.keepScale, o.seed)
	}
	if dk != nil || dv != nil {
		b.launchAttnBwdDkvTc(op, attnTcDkvGeom(n, a.s, a.hkv, a.b), n, b.ptr(op, dk), dt(dk), b.ptr(op, dv), dt(dv), b.ptr(op, dout), dt(dout),
			b.ptr(op, q), dt(q), b.ptr(op, k), dt(k), b.ptr(op, v), dt(v), b.ptr(op, lse), dt(lse), delta, a.t, a.s, a.hq, a.hkv, a.d,
			o.scale, o.seg, o.softCap, o.window, o.drop, o.keepScale, o.seed)
	}
}

// hostOptions is opt with its Segments tensor replaced by the host copy h
// makes of it.
func hostOptions(opt engine.AttentionOptions, h func(*engine.Tensor) *engine.Tensor) engine.AttentionOptions {
	if opt.Segments != nil {
		opt.Segments = h(opt.Segments)
	}
	return opt
}
