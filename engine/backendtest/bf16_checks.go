package backendtest

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// bf16Tol bounds results stored in BFloat16: one rounding to 8 significant
// bits is at most 2^-9 relative per element, so 2^-8 on the norm leaves
// room for the float32 arithmetic before it.
const bf16Tol = 1.0 / 256

// randBF16 returns a BFloat16 tensor of normal values times scale and the
// exact values it holds (rounded by the independent reference).
func (h *harness) randBF16(name string, scale float64, shape ...int) (*engine.Tensor, []float64) {
	v := h.randVals(engine.Numel(shape), scale)
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
		v[i] = bf16Ref(f[i])
	}
	t := h.alloc(name, engine.BFloat16, shape...)
	h.b.Upload(t, f)
	return t, v
}

// checkBFloat16Ops covers operations with BFloat16 operands — frozen
// weights stored in bfloat16 feeding float32 activations, and all-bfloat16
// products — which every backend must accept (computing in float32).
func checkBFloat16Ops(h *harness) {
	if h.o.SkipBFloat16 {
		h.t.Skip("backend skips BFloat16")
	}
	for _, s := range [][3]int{{3, 17, 5}, {33, 65, 17}, {70, 40, 130}, {1, 300, 200}, {5, 90, 64}} {
		m, n, k := s[0], s[1], s[2]
		for _, tb := range []bool{false, true} {
			a, av := h.randn("a", 1, m, k)
			w, wv := h.randBF16("w", 1, gemmStored(k, n, tb)...)
			c := h.nan("c", m, n)
			h.b.Gemm(c, a, w, false, tb, 1, 0)
			what := fmt.Sprintf("Gemm F32·BF16 m=%d n=%d k=%d transB=%v", m, n, k, tb)
			h.expect(what, c, refGemm(m, n, k, av, false, wv, tb), h.o.tol())

			ab, abv := h.randBF16("a bf16", 1, m, k)
			cb := h.alloc("c bf16", engine.BFloat16, m, n)
			h.b.Gemm(cb, ab, w, false, tb, 1, 0)
			h.expect("all-BF16 "+what, cb, refGemm(m, n, k, abv, false, wv, tb), bf16Tol)
		}
	}
	for _, n := range raggedSizes {
		x, xv := h.randn("x", 1, n)
		y, yv := h.randBF16("y", 1, n)
		sum := make([]float64, n)
		for i := range sum {
			sum[i] = xv[i] + yv[i]
		}
		d := h.nan("dst", n)
		h.b.Add(d, x, y)
		h.expect(fmt.Sprintf("Add F32+BF16 [%d]", n), d, sum, h.o.tol())
		h.b.Add(y, y, x)
		h.expect(fmt.Sprintf("Add into BF16 [%d]", n), y, sum, bf16Tol)
	}
	{
		vocab, dim, n := 17, 33, 20
		table, tv := h.randBF16("table", 1, vocab, dim)
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32(h.rng.IntN(vocab))
		}
		out := h.nan("out", n, dim)
		h.b.Embedding(out, table, h.ints("ids", ids, n))
		h.expect("Embedding from a BF16 table", out, refEmbedding(tv, dim, ids), 0)
	}
	{
		r, c := 17, 65
		x, xv := h.randn("x", 1, r, c)
		w, wv := h.randBF16("w", 1, c)
		out, rstd := h.nan("out", r, c), h.nan("rstd", r)
		h.b.RMSNorm(out, rstd, x, w, 1e-6)
		ro, _ := refRMSNorm(xv, wv, r, c, 1e-6)
		h.expect("RMSNorm with a BF16 weight", out, ro, h.o.tol())
	}
}
