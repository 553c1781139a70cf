package backendtest

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
)

// allActs lists every activation with its name.
var allActs = []struct {
	act  engine.Act
	name string
}{
	{engine.ActIdentity, "identity"}, {engine.ActReLU, "relu"}, {engine.ActSiLU, "silu"},
	{engine.ActGELUTanh, "gelu_tanh"}, {engine.ActGELU, "gelu"}, {engine.ActTanh, "tanh"},
	{engine.ActSigmoid, "sigmoid"},
}

// checkActivation covers Activation (also in place) and the accumulating
// ActivationBackward (also with a nil dx) for every activation.
func checkActivation(h *harness) {
	for _, a := range allActs {
		for _, n := range raggedSizes {
			x, xv := h.randn("x", 3, n)
			want, grad := make([]float64, n), make([]float64, n)
			dout, dv := h.randn("dout", 1, n)
			for i, v := range xv {
				want[i] = refAct(a.act, v)
				grad[i] = dv[i] * refActGrad(a.act, v)
			}
			out := h.nan("out", n)
			h.b.Activation(out, x, a.act)
			h.expect(fmt.Sprintf("Activation %s [%d]", a.name, n), out, want, h.o.tol())

			dx, d0 := h.randn("dx", 1, n)
			h.b.ActivationBackward(dx, dout, x, a.act)
			h.expect(fmt.Sprintf("ActivationBackward %s [%d]", a.name, n), dx, addTo(d0, grad), h.o.tol())
			h.b.ActivationBackward(nil, dout, x, a.act) // must be a no-op

			h.b.Activation(x, x, a.act)
			h.expect(fmt.Sprintf("Activation %s [%d] in place", a.name, n), x, want, h.o.tol())
		}
	}
}

// checkGLU covers the gated activations (SwiGLU, GeGLU) and their
// backward passes with every combination of nil gradient outputs.
func checkGLU(h *harness) {
	ops := []struct {
		name string
		act  engine.Act
		fwd  func(out, gate, up *engine.Tensor)
		bwd  func(dgate, dup, dout, gate, up *engine.Tensor)
	}{
		{"SwiGLU", engine.ActSiLU, h.b.SwiGLU, h.b.SwiGLUBackward},
		{"GeGLU", engine.ActGELUTanh, h.b.GeGLU, h.b.GeGLUBackward},
	}
	for _, op := range ops {
		for _, n := range raggedSizes {
			g, gv := h.randn("gate", 3, n)
			u, uv := h.randn("up", 1, n)
			out := h.nan("out", n)
			op.fwd(out, g, u)
			h.expect(fmt.Sprintf("%s [%d]", op.name, n), out, refGLU(op.act, gv, uv), h.o.tol())

			dout, dv := h.randn("dout", 1, n)
			rg, ru := refGLUBackward(op.act, dv, gv, uv)
			for _, which := range [][2]bool{{true, true}, {true, false}, {false, true}, {false, false}} {
				var dg, du *engine.Tensor
				var g0, u0 []float64
				if which[0] {
					dg, g0 = h.randn("dgate", 1, n)
				}
				if which[1] {
					du, u0 = h.randn("dup", 1, n)
				}
				op.bwd(dg, du, dout, g, u)
				if dg != nil {
					h.expect(fmt.Sprintf("%sBackward [%d] dgate (dup nil=%v)", op.name, n, du == nil), dg, addTo(g0, rg), h.o.tol())
				}
				if du != nil {
					h.expect(fmt.Sprintf("%sBackward [%d] dup (dgate nil=%v)", op.name, n, dg == nil), du, addTo(u0, ru), h.o.tol())
				}
			}
		}
	}
}

// checkEmbedding covers the gather and the accumulating scatter-add with
// repeated ids.
func checkEmbedding(h *harness) {
	for _, s := range [][3]int{{1, 1, 1}, {5, 3, 7}, {17, 33, 40}, {50, 65, 300}} {
		vocab, dim, n := s[0], s[1], s[2]
		table, tv := h.randn("table", 1, vocab, dim)
		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32(h.rng.IntN(vocab))
		}
		if n > 2 {
			ids[n-1] = ids[0] // force a repeat
		}
		it := h.ints("ids", ids, n)
		out := h.nan("out", n, dim)
		h.b.Embedding(out, table, it)
		h.expect(fmt.Sprintf("Embedding V=%d D=%d N=%d", vocab, dim, n), out, refEmbedding(tv, dim, ids), 0)

		dout, dv := h.randn("dout", 1, n, dim)
		dt, d0 := h.randn("dtable", 1, vocab, dim)
		h.b.EmbeddingBackward(dt, dout, it)
		h.expect(fmt.Sprintf("EmbeddingBackward V=%d D=%d N=%d", vocab, dim, n), dt, addTo(d0, refEmbeddingBackward(dv, vocab, dim, ids)), h.o.tol())
		h.b.EmbeddingBackward(nil, dout, it)
	}
}

// gradPair names the nil-ness of two gradient outputs.
var gradPairs = [][2]bool{{true, true}, {true, false}, {false, true}}

// checkRMSNorm covers RMSNorm (out and rstd NaN-filled) and
// RMSNormBackward with nil combinations.
func checkRMSNorm(h *harness) {
	const eps = 1e-5
	for _, s := range matShapes {
		r, c := s[0], s[1]
		x, xv := h.randn("x", 2, r, c)
		w, wv := h.randn("w", 1, c)
		out, rstd := h.nan("out", r, c), h.nan("rstd", r)
		h.b.RMSNorm(out, rstd, x, w, eps)
		ro, rr := refRMSNorm(xv, wv, r, c, eps)
		what := fmt.Sprintf("RMSNorm [%d,%d]", r, c)
		h.expect(what+" out", out, ro, h.o.tol())
		h.expect(what+" rstd", rstd, rr, h.o.tol())

		dout, dv := h.randn("dout", 1, r, c)
		rdx, rdw := refRMSNormBackward(dv, xv, wv, r, c, eps)
		saved := h.tensor("rstd (reference)", rr, r)
		for _, g := range gradPairs {
			var dx, dw *engine.Tensor
			var dx0, dw0 []float64
			if g[0] {
				dx, dx0 = h.randn("dx", 1, r, c)
			}
			if g[1] {
				dw, dw0 = h.randn("dw", 1, c)
			}
			h.b.RMSNormBackward(dx, dw, dout, x, w, saved)
			if dx != nil {
				h.expect(what+fmt.Sprintf(" backward dx (dw nil=%v)", dw == nil), dx, addTo(dx0, rdx), h.o.tol())
			}
			if dw != nil {
				h.expect(what+fmt.Sprintf(" backward dw (dx nil=%v)", dx == nil), dw, addTo(dw0, rdw), h.o.tol())
			}
		}
	}
}

// checkLayerNorm covers LayerNorm with and without bias and
// LayerNormBackward with nil combinations.
func checkLayerNorm(h *harness) {
	const eps = 1e-5
	for _, s := range matShapes {
		r, c := s[0], s[1]
		// An offset mean stresses the variance computation.
		x, xv := h.randn("x", 2, r, c)
		for i := range xv {
			xv[i] = float64(float32(xv[i] + 3))
		}
		h.b.Upload(x, toF32(xv))
		w, wv := h.randn("w", 1, c)
		for _, withBias := range []bool{true, false} {
			var bias *engine.Tensor
			var bv []float64
			if withBias {
				bias, bv = h.randn("b", 1, c)
			}
			out, mean, rstd := h.nan("out", r, c), h.nan("mean", r), h.nan("rstd", r)
			h.b.LayerNorm(out, mean, rstd, x, w, bias, eps)
			ro, rm, rr := refLayerNorm(xv, wv, bv, r, c, eps)
			what := fmt.Sprintf("LayerNorm [%d,%d] bias=%v", r, c, withBias)
			// A single-column row has zero variance; its output is exactly
			// the bias, compared absolutely by expect.
			h.expect(what+" out", out, ro, h.o.tol())
			h.expect(what+" mean", mean, rm, h.o.tol())
			h.expect(what+" rstd", rstd, rr, h.o.tol())
		}
		_, rm, rr := refLayerNorm(xv, wv, nil, r, c, eps)
		sm, sr := h.tensor("mean (reference)", rm, r), h.tensor("rstd (reference)", rr, r)
		dout, dv := h.randn("dout", 1, r, c)
		rdx, rdw, rdb := refLayerNormBackward(dv, xv, wv, r, c, eps)
		for _, g := range [][3]bool{{true, true, true}, {true, false, false}, {false, true, true}, {false, false, true}} {
			var dx, dw, db *engine.Tensor
			var dx0, dw0, db0 []float64
			if g[0] {
				dx, dx0 = h.randn("dx", 1, r, c)
			}
			if g[1] {
				dw, dw0 = h.randn("dw", 1, c)
			}
			if g[2] {
				db, db0 = h.randn("db", 1, c)
			}
			h.b.LayerNormBackward(dx, dw, db, dout, x, w, sm, sr)
			what := fmt.Sprintf("LayerNormBackward [%d,%d] outputs %v", r, c, g)
			if dx != nil {
				h.expect(what+" dx", dx, addTo(dx0, rdx), h.o.tol())
			}
			if dw != nil {
				h.expect(what+" dw", dw, addTo(dw0, rdw), h.o.tol())
			}
			if db != nil {
				h.expect(what+" db", db, addTo(db0, rdb), h.o.tol())
			}
		}
	}
}

// toF32 rounds values to float32.
func toF32(v []float64) []float32 {
	f := make([]float32, len(v))
	for i, x := range v {
		f[i] = float32(x)
	}
	return f
}

// ropeTables returns cos/sin tables [maxPos, half] for base theta.
func ropeTables(maxPos, half int, theta float64) (cos, sin []float64) {
	cos, sin = make([]float64, maxPos*half), make([]float64, maxPos*half)
	for p := 0; p < maxPos; p++ {
		for i := 0; i < half; i++ {
			ang := float64(p) * math.Pow(theta, -float64(2*i)/float64(2*half))
			cos[p*half+i] = float64(float32(math.Cos(ang)))
			sin[p*half+i] = float64(float32(math.Sin(ang)))
		}
	}
	return cos, sin
}

// checkRoPE covers both layouts, position offsets and the inverse rotation.
func checkRoPE(h *harness) {
	for _, s := range [][4]int{{1, 1, 1, 2}, {2, 3, 5, 4}, {1, 17, 3, 34}, {2, 33, 4, 64}} {
		b, t, hd, d := s[0], s[1], s[2], s[3]
		maxPos := t + 9
		cos, sin := ropeTables(maxPos, d/2, 10000)
		ct, st := h.tensor("cos", cos, maxPos, d/2), h.tensor("sin", sin, maxPos, d/2)
		for _, layout := range []engine.RopeLayout{engine.RopeHalf, engine.RopeInterleaved} {
			for _, off := range []int{0, 9} {
				for _, inv := range []bool{false, true} {
					x, xv := h.randn("x", 1, b, t, hd, d)
					h.b.RoPE(x, ct, st, off, layout, inv)
					h.expect(fmt.Sprintf("RoPE [%d,%d,%d,%d] layout=%d offset=%d inverse=%v", b, t, hd, d, layout, off, inv),
						x, refRoPE(xv, b, t, hd, d, cos, sin, off, layout, inv), h.o.tol())
				}
			}
		}
	}
}
