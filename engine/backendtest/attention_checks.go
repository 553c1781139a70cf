package backendtest

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// attnCases covers single tokens, GQA groupings, S > T (keys before the
// queries) and head dimensions around common vector widths.
func attnCases(h *harness) []attnCase {
	c := []attnCase{
		{1, 1, 1, 1, 1, 1, attnRefOptions{}},
		{1, 3, 3, 2, 1, 4, attnRefOptions{}},
		{2, 5, 5, 4, 2, 8, attnRefOptions{}},
		{1, 3, 7, 3, 1, 5, attnRefOptions{}},    // S > T, MQA
		{2, 17, 33, 6, 2, 16, attnRefOptions{}}, // S > T, GQA
		{1, 1, 9, 2, 2, 17, attnRefOptions{}},   // one query over a cache
	}
	if !h.short() {
		c = append(c, attnCase{2, 33, 33, 3, 3, 64, attnRefOptions{}}, attnCase{1, 65, 65, 8, 1, 32, attnRefOptions{}})
	}
	return c
}

// attnBF16Cases adds, for bfloat16 q/k/v, a head dimension above 128 (the
// CUDA backend's SIMT kernels; up to 128 it runs its tensor-core kernels)
// and one of 128 with rows past a 64-row block.
func attnBF16Cases(h *harness) []attnCase {
	return append(attnCases(h), attnCase{1, 5, 9, 2, 1, 160, attnRefOptions{}}, attnCase{1, 70, 75, 2, 1, 128, attnRefOptions{}})
}

// attnMode is one storage mode of the attention checks: float32 tensors
// against the exact reference, or bfloat16 q/k/v/dout against the
// reference with the bfloat16 contract's rounding points, with out and the
// gradients stored in outDT (float32 outputs make the check tight enough
// to tell whether P and dS are rounded at all).
type attnMode struct {
	name      string
	in, outDT engine.DType
	tol       float64
	gradInit  float64 // scale of the values the gradient outputs start from
}

// attnBF16Tight bounds bfloat16 attention with float32 outputs: both sides
// round P and dS at the same points, so only float32 arithmetic and rare
// one-unit rounding flips differ; leaving either rounding out errs by
// about 1e-3.
const attnBF16Tight = 1e-4

// checkAttention covers Attention (out and lse NaN-filled) and
// AttentionBackward with accumulating and nil gradient outputs, with
// float32 and (unless skipped) bfloat16 storage. Backward is fed the
// reference forward results (as stored) so a forward error cannot hide or
// masquerade as a backward one.
func checkAttention(h *harness) {
	for _, c := range attnCases(h) {
		checkAttentionCase(h, c, attnMode{"F32", engine.Float32, engine.Float32, h.o.tol(), 1})
	}
	if h.o.SkipBFloat16 {
		return
	}
	// Gradients start small so the error is measured against the gradient
	// itself, not against the starting values.
	for _, c := range attnBF16Cases(h) {
		checkAttentionCase(h, c, attnMode{"BF16", engine.BFloat16, engine.BFloat16, bf16Tol, 0.01})
		checkAttentionCase(h, c, attnMode{"BF16 in, F32 out", engine.BFloat16, engine.Float32, attnBF16Tight, 0.01})
	}
}

// attnOptionCases covers every AttentionOptions field alone and together,
// with keys before the queries (where windows and segments must still
// show prefix keys correctly) and rows past a 64-row tile.
func attnOptionCases(h *harness) []attnCase {
	seg := func(b, t int, lens ...int) []int32 {
		ids := make([]int32, 0, b*t)
		for len(ids) < b*t {
			for i, n := range lens {
				for j := 0; j < n && len(ids) < b*t; j++ {
					ids = append(ids, int32(i))
				}
			}
		}
		return ids
	}
	c := []attnCase{
		{1, 5, 5, 2, 1, 8, attnRefOptions{scale: 0.3}},
		{2, 6, 9, 4, 2, 8, attnRefOptions{softCap: 1.5, scale: 1}},
		{1, 9, 9, 2, 2, 8, attnRefOptions{window: 4}},
		{2, 7, 10, 2, 1, 16, attnRefOptions{window: 5}},
		{2, 9, 9, 2, 1, 8, attnRefOptions{segments: seg(2, 9, 3, 4, 2)}},
		{1, 8, 11, 2, 2, 8, attnRefOptions{segments: seg(1, 8, 2, 5, 1)}},
		{1, 6, 6, 3, 1, 8, attnRefOptions{dropout: 0.25, seed: 7}},
		{2, 7, 9, 2, 1, 16, attnRefOptions{scale: 0.2, softCap: 2, window: 4, segments: seg(2, 7, 3, 4), dropout: 0.1, seed: 3}},
	}
	if !h.short() {
		c = append(c,
			attnCase{1, 130, 130, 2, 1, 64, attnRefOptions{window: 70, softCap: 3}},
			attnCase{1, 100, 104, 2, 2, 128, attnRefOptions{segments: seg(1, 100, 40, 27, 33), dropout: 0.2, seed: 5}})
	}
	return c
}

// checkAttentionOptions runs the option cases in the storage modes of
// checkAttention.
func checkAttentionOptions(h *harness) {
	for _, c := range attnOptionCases(h) {
		checkAttentionCase(h, c, attnMode{"F32", engine.Float32, engine.Float32, h.o.tol(), 1})
		if !h.o.SkipBFloat16 {
			checkAttentionCase(h, c, attnMode{"BF16", engine.BFloat16, engine.BFloat16, bf16Tol, 0.01})
			checkAttentionCase(h, c, attnMode{"BF16 in, F32 out", engine.BFloat16, engine.Float32, attnBF16Tight, 0.01})
		}
	}
}

// options returns the case's options for the backend under test.
func (c attnCase) options(h *harness) engine.AttentionOptions {
	o := engine.AttentionOptions{
		Scale: float32(c.opt.scale), SoftCap: float32(c.opt.softCap), Window: c.opt.window,
		Dropout: float32(c.opt.dropout), DropoutSeed: c.opt.seed,
	}
	if c.opt.segments != nil {
		o.Segments = h.ints("segments", c.opt.segments, c.B, c.T)
	}
	return o
}

// checkAttentionCase runs one shape in one storage mode.
func checkAttentionCase(h *harness, c attnCase, m attnMode) {
	what := fmt.Sprintf("Attention %s B=%d T=%d S=%d Hq=%d Hkv=%d D=%d %+v", m.name, c.B, c.T, c.S, c.Hq, c.Hkv, c.D, c.opt)
	opt := c.options(h)
	bf := m.in == engine.BFloat16
	rand := func(name string, dt engine.DType, scale float64, shape ...int) (*engine.Tensor, []float64) {
		if dt == engine.BFloat16 {
			return h.randBF16(name, scale, shape...)
		}
		return h.randn(name, scale, shape...)
	}
	// stored uploads vals as outDT and returns the values it holds.
	stored := func(name string, vals []float64, shape ...int) (*engine.Tensor, []float64) {
		if m.outDT == engine.Float32 {
			return h.tensor(name, vals, shape...), f64sOf(f32s(vals))
		}
		r := make([]float64, len(vals))
		for i, x := range vals {
			r[i] = bf16Round(x)
		}
		t := h.alloc(name, engine.BFloat16, shape...)
		h.b.Upload(t, f32s(r))
		return t, r
	}
	q, qv := rand("q", m.in, 1, c.B, c.T, c.Hq, c.D)
	k, kv := rand("k", m.in, 1, c.B, c.S, c.Hkv, c.D)
	v, vv := rand("v", m.in, 1, c.B, c.S, c.Hkv, c.D)
	out, lse := h.nan("out", c.B, c.T, c.Hq, c.D), h.nan("lse", c.B, c.Hq, c.T)
	ro, rl := refAttention(c, qv, kv, vv)
	if bf {
		ro, rl = refAttentionBF16(c, qv, kv, vv)
	}
	if m.outDT == engine.BFloat16 {
		out = h.alloc("out", engine.BFloat16, c.B, c.T, c.Hq, c.D) // guard sentinels: an unwritten element fails
	}
	h.b.Attention(out, lse, q, k, v, opt)
	h.expect(what+" out", out, ro, m.tol)
	h.expect(what+" lse", lse, rl, h.o.tol())

	dout, dv := rand("dout", m.in, 1, c.B, c.T, c.Hq, c.D)
	so, sov := stored("out (reference)", ro, c.B, c.T, c.Hq, c.D)
	sl := h.tensor("lse (reference)", rl, c.B, c.Hq, c.T)
	rdq, rdk, rdv := refAttentionBackward(c, qv, kv, vv, dv)
	if bf {
		// Δ comes from out as the backward pass sees it (stored).
		rdq, rdk, rdv = refAttentionBackwardBF16(c, qv, kv, vv, dv, sov)
	}
	for _, g := range [][3]bool{{true, true, true}, {true, false, false}, {false, true, false}, {false, false, true}} {
		var dq, dk, dvt *engine.Tensor
		var dq0, dk0, dv0 []float64
		if g[0] {
			dq, dq0 = rand("dq", m.outDT, m.gradInit, c.B, c.T, c.Hq, c.D)
		}
		if g[1] {
			dk, dk0 = rand("dk", m.outDT, m.gradInit, c.B, c.S, c.Hkv, c.D)
		}
		if g[2] {
			dvt, dv0 = rand("dv", m.outDT, m.gradInit, c.B, c.S, c.Hkv, c.D)
		}
		h.b.AttentionBackward(dq, dk, dvt, dout, q, k, v, so, sl, opt)
		bw := fmt.Sprintf("%s backward outputs %v", what, g)
		if dq != nil {
			h.expect(bw+" dq", dq, addTo(dq0, rdq), m.tol)
		}
		if dk != nil {
			h.expect(bw+" dk", dk, addTo(dk0, rdk), m.tol)
		}
		if dvt != nil {
			h.expect(bw+" dv", dvt, addTo(dv0, rdv), m.tol)
		}
	}
	h.b.AttentionBackward(nil, nil, nil, dout, q, k, v, so, sl, opt)
}

// f32s converts float64 values to float32 for Upload.
func f32s(v []float64) []float32 {
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return f
}

// f64sOf widens float32 values.
func f64sOf(f []float32) []float64 {
	v := make([]float64, len(f))
	for i, x := range f {
		v[i] = float64(x)
	}
	return v
}
