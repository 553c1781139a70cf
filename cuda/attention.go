package cuda

import (
	"math"

	"github.com/gotune/gotune/engine"
)

// Native attention (kernels/attention.cu): a flash-attention style forward
// (one block per batch, query head and tile of query rows; K/V tiles
// through shared memory; online softmax) and a two-kernel backward that
// needs no atomics (one kernel over query tiles for dq, one over key tiles
// for dk and dv that sums the query heads of each kv group), so the
// gradients are deterministic. Float32 math; Float32 or BFloat16 storage.

// attnThreads is the block size of the attention kernels (4 warps).
const attnThreads = 128

// attnTile is the number of keys (forward, dq) or queries (dk/dv) one
// streamed shared-memory tile holds: one per lane.
const attnTile = 32

// attnMaxDim is the largest head dimension the kernels take; larger ones
// use the host fallback.
const attnMaxDim = 256

// attnVariant is one head-dimension instantiation of the kernels.
type attnVariant struct {
	dmax          int
	fwd, dq, dkv  kernelID
	rowsPerWarp   int
	rowsPerBlock  int
	paddedRowSize int
}

// attnVariants lists the instantiations, smallest first; a call uses the
// first whose dmax is at least its head dimension.
var attnVariants = func() []attnVariant {
	ids := [][3]kernelID{
		{kAttnFwd32, kAttnDq32, kAttnDkv32},
		{kAttnFwd64, kAttnDq64, kAttnDkv64},
		{kAttnFwd128, kAttnDq128, kAttnDkv128},
		{kAttnFwd256, kAttnDq256, kAttnDkv256},
	}
	var out []attnVariant
	for i, dmax := range []int{32, 64, 128, 256} {
		r := 8 // AttCfg<DMAX>::R in attention.cu
		if dmax > 128 {
			r = 4
		}
		out = append(out, attnVariant{dmax: dmax, fwd: ids[i][0], dq: ids[i][1], dkv: ids[i][2],
			rowsPerWarp: r, rowsPerBlock: 4 * r, paddedRowSize: dmax + 4})
	}
	return out
}()

// attnVariantFor returns the variant for head dimension d.
func attnVariantFor(d int) attnVariant {
	for _, v := range attnVariants {
		if d <= v.dmax {
			return v
		}
	}
	panic("cuda: internal error: no attention variant for head dim above 256")
}

// attnSmem is the dynamic shared memory (bytes) of an attention kernel, as
// the comment atop kernels/attention.cu specifies.
func attnSmem(id kernelID) int {
	for _, v := range attnVariants {
		br, dm, ldp := v.rowsPerBlock, v.dmax, v.paddedRowSize
		switch id {
		case v.fwd:
			return 4 * (br*dm + 2*attnTile*ldp + br*attnTile)
		case v.dq:
			return 4 * (2*br*dm + 2*attnTile*ldp + br*attnTile)
		case v.dkv:
			return 4 * (2*br*dm + 2*attnTile*ldp + 2*br*attnTile)
		}
	}
	return 0
}

// attnDims are the sizes of one attention call.
type attnDims struct {
	b, t, s, hq, hkv, d int
}

// attnShapes validates the operands as engine/cpu does (same conditions,
// so both backends reject the same calls).
func attnShapes(op string, out, lse, q, k, v *engine.Tensor) attnDims {
	qs, ks := q.Shape(), k.Shape()
	need(len(qs) == 4 && len(ks) == 4, op, "q %v and k %v must be [B, T, H, D]", q, k)
	a := attnDims{b: qs[0], t: qs[1], hq: qs[2], d: qs[3], s: ks[1], hkv: ks[2]}
	need(ks[0] == a.b && ks[3] == a.d && engine.SameShape(k, v), op, "k %v and v %v must be [%d, S, Hkv, %d]", k, v, a.b, a.d)
	need(a.s >= a.t, op, "keys S=%d fewer than queries T=%d", a.s, a.t)
	need(a.hkv > 0 && a.hq%a.hkv == 0, op, "query heads %d not a multiple of kv heads %d", a.hq, a.hkv)
	need(out == nil || engine.SameShape(out, q), op, "out %v must match q %v", out, q)
	need(lse.Len() == a.b*a.hq*a.t, op, "lse %v must be [%d, %d, %d]", lse, a.b, a.hq, a.t)
	return a
}

// native reports whether the kernels take these sizes: a head dimension
// of 1..256, every size within the kernels' 32-bit ints, and grid
// dimensions within the hardware's limits (heads and batch are grid y, z).
func (a attnDims) native() bool {
	return a.d >= 1 && a.d <= attnMaxDim && a.hq <= 65535 && a.hkv <= 65535 && a.b <= 65535 &&
		fits32(a.b*a.t*a.hq*a.d, a.b*a.s*a.hkv*a.d, a.b*a.hq*a.t)
}

// scale is 1/sqrt(D), computed in float64 as engine/cpu does.
func (a attnDims) scale() float32 { return float32(1 / math.Sqrt(float64(a.d))) }

// Attention computes causal grouped-query attention with gt_attn_fwd_*
// (see engine.Backend.Attention). Head dimensions above 256, sizes beyond
// the kernels' 32-bit indices and Int32 operands take the host fallback.
func (b *Backend) Attention(out, lse, q, k, v *engine.Tensor) {
	const op = "Attention"
	a := attnShapes(op, out, lse, q, k, v)
	if !a.native() || !isFloat(out, lse, q, k, v) {
		b.fallback(op, ts(out, lse), ts(q, k, v), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.Attention(h(out), h(lse), h(q), h(k), h(v))
		})
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || a.b*a.t*a.hq == 0 {
		return
	}
	va := attnVariantFor(a.d)
	grid := Dim3{uint32((a.t + va.rowsPerBlock - 1) / va.rowsPerBlock), uint32(a.hq), uint32(a.b)}
	b.launch(op, va.fwd, grid, Dim3{attnThreads, 1, 1}, attnSmem(va.fwd),
		b.ptr(op, out), dt(out), b.ptr(op, lse), dt(lse), b.ptr(op, q), dt(q), b.ptr(op, k), dt(k), b.ptr(op, v), dt(v),
		a.t, a.s, a.hq, a.hkv, a.d, a.scale())
}

// AttentionBackward accumulates dq, dk, dv (any may be nil) with
// gt_attn_delta (Δ = rowsum(dout ⊙ out) into float32 scratch), then
// gt_attn_bwd_dq_* and gt_attn_bwd_dkv_*. No atomics: deterministic.
func (b *Backend) AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse *engine.Tensor) {
	const op = "AttentionBackward"
	if dq == nil && dk == nil && dv == nil {
		return
	}
	a := attnShapes(op, out, lse, q, k, v)
	need(engine.SameShape(dout, q), op, "dout %v must match q %v", dout, q)
	need(dq == nil || engine.SameShape(dq, q), op, "dq %v must match q %v", dq, q)
	need(dk == nil || engine.SameShape(dk, k), op, "dk %v must match k %v", dk, k)
	need(dv == nil || engine.SameShape(dv, v), op, "dv %v must match v %v", dv, v)
	if !a.native() || !isFloat(dq, dk, dv, dout, q, k, v, out, lse) {
		b.fallback(op, ts(dq, dk, dv), ts(dout, q, k, v, out, lse), func(h func(*engine.Tensor) *engine.Tensor) {
			b.host.AttentionBackward(h(dq), h(dk), h(dv), h(dout), h(q), h(k), h(v), h(out), h(lse))
		})
		return
	}
	need(out != nil, op, "out (the forward output) is required")
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.begin(op) || a.b*a.t*a.hq == 0 {
		return // no queries: every gradient is zero, nothing to add
	}
	va := attnVariantFor(a.d)
	block := Dim3{attnThreads, 1, 1}
	scale := a.scale()
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
		grid := uint32(max(1, min((rows+7)/8, ewBlocksPerSM*max(1, b.ctx.Info().SMs))))
		b.launch(op, kAttnDelta, Dim3{grid, 1, 1}, Dim3{256, 1, 1}, 0,
			delta, b.ptr(op, dout), dt(dout), b.ptr(op, out), dt(out), rows, a.t, a.hq, a.d)
	}
	if dq != nil {
		grid := Dim3{uint32((a.t + va.rowsPerBlock - 1) / va.rowsPerBlock), uint32(a.hq), uint32(a.b)}
		b.launch(op, va.dq, grid, block, attnSmem(va.dq),
			b.ptr(op, dq), dt(dq), b.ptr(op, dout), dt(dout), b.ptr(op, q), dt(q), b.ptr(op, k), dt(k),
			b.ptr(op, v), dt(v), b.ptr(op, lse), dt(lse), delta, a.t, a.s, a.hq, a.hkv, a.d, scale)
	}
	if dk != nil || dv != nil {
		grid := Dim3{uint32((a.s + va.rowsPerBlock - 1) / va.rowsPerBlock), uint32(a.hkv), uint32(a.b)}
		b.launch(op, va.dkv, grid, block, attnSmem(va.dkv),
			b.ptr(op, dk), dt(dk), b.ptr(op, dv), dt(dv), b.ptr(op, dout), dt(dout), b.ptr(op, q), dt(q),
			b.ptr(op, k), dt(k), b.ptr(op, v), dt(v), b.ptr(op, lse), dt(lse), delta,
			a.t, a.s, a.hq, a.hkv, a.d, scale)
	}
}
