package backendtest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gotune/gotune/engine"
)

// fdCase is one finite-difference check of a reference backward: with
// L = Σ dout ⊙ forward(inputs), the gradients returned by backward must
// equal central differences of L in every input element.
type fdCase struct {
	name     string
	inputs   [][]float64 // perturbed in place by the check
	forward  func() []float64
	backward func(dout []float64) [][]float64
}

// fdTol bounds the relative error between analytic and numeric gradients:
// central differences with step 1e-5 in float64 are accurate to ~1e-9.
const fdTol = 1e-6

func runFD(t *testing.T, rng *rand.Rand, c fdCase) {
	t.Run(c.name, func(t *testing.T) {
		out := c.forward()
		dout := make([]float64, len(out))
		for i := range dout {
			dout[i] = rng.NormFloat64()
		}
		loss := func() float64 {
			var s float64
			for i, v := range c.forward() {
				s += dout[i] * v
			}
			return s
		}
		grads := c.backward(dout)
		if len(grads) != len(c.inputs) {
			t.Fatalf("backward returned %d gradients for %d inputs", len(grads), len(c.inputs))
		}
		for n, x := range c.inputs {
			num := make([]float64, len(x))
			for i := range x {
				orig := x[i]
				step := 1e-5 * math.Max(1, math.Abs(orig))
				x[i] = orig + step
				lp := loss()
				x[i] = orig - step
				lm := loss()
				x[i] = orig
				num[i] = (lp - lm) / (2 * step)
			}
			if err := relErr(grads[n], num); !(err <= fdTol) {
				i, g, w := worst(grads[n], num)
				t.Errorf("input %d: analytic vs numeric gradient relative error %.3g (element %d: %v vs %v)", n, err, i, g, w)
			}
		}
	})
}

func randVec(rng *rand.Rand, n int, scale float64) []float64 {
	v := make([]float64, n)
	for i := range v {
		v[i] = rng.NormFloat64() * scale
	}
	return v
}

// TestReferenceGradients verifies every reference backward formula by
// central finite differences of the reference forward.
func TestReferenceGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 11))
	var cases []fdCase

	for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
		m, n, k := 3, 4, 5
		a, b := randVec(rng, m*k, 1), randVec(rng, k*n, 1)
		ta, tb := tr[0], tr[1]
		cases = append(cases, fdCase{
			name:    fmt.Sprintf("Gemm transA=%v transB=%v", ta, tb),
			inputs:  [][]float64{a, b},
			forward: func() []float64 { return refGemm(m, n, k, a, ta, b, tb) },
			backward: func(d []float64) [][]float64 {
				da, db := refGemmBackward(m, n, k, a, ta, b, tb, d)
				return [][]float64{da, db}
			},
		})
	}

	for _, act := range allActs {
		x := randVec(rng, 40, 2)
		if act.act == engine.ActReLU {
			for i := range x { // keep away from the kink at 0
				if math.Abs(x[i]) < 0.1 {
					x[i] += 0.5
				}
			}
		}
		a := act.act
		cases = append(cases, fdCase{
			name:   "Activation " + act.name,
			inputs: [][]float64{x},
			forward: func() []float64 {
				out := make([]float64, len(x))
				for i, v := range x {
					out[i] = refAct(a, v)
				}
				return out
			},
			backward: func(d []float64) [][]float64 {
				dx := make([]float64, len(x))
				for i, v := range x {
					dx[i] = d[i] * refActGrad(a, v)
				}
				return [][]float64{dx}
			},
		})
	}

	for _, act := range []engine.Act{engine.ActSiLU, engine.ActGELUTanh} {
		g, u := randVec(rng, 30, 2), randVec(rng, 30, 1)
		cases = append(cases, fdCase{
			name: fmt.Sprintf("GLU act %d", act), inputs: [][]float64{g, u},
			forward: func() []float64 { return refGLU(act, g, u) },
			backward: func(d []float64) [][]float64 {
				dg, du := refGLUBackward(act, d, g, u)
				return [][]float64{dg, du}
			},
		})
	}

	{
		vocab, dim := 5, 3
		table := randVec(rng, vocab*dim, 1)
		ids := []int32{4, 0, 4, 2}
		cases = append(cases, fdCase{
			name: "Embedding", inputs: [][]float64{table},
			forward: func() []float64 { return refEmbedding(table, dim, ids) },
			backward: func(d []float64) [][]float64 {
				return [][]float64{refEmbeddingBackward(d, vocab, dim, ids)}
			},
		})
	}

	{
		rows, cols := 3, 7
		x, w := randVec(rng, rows*cols, 1.5), randVec(rng, cols, 1)
		cases = append(cases, fdCase{
			name: "RMSNorm", inputs: [][]float64{x, w},
			forward: func() []float64 { o, _ := refRMSNorm(x, w, rows, cols, 1e-5); return o },
			backward: func(d []float64) [][]float64 {
				dx, dw := refRMSNormBackward(d, x, w, rows, cols, 1e-5)
				return [][]float64{dx, dw}
			},
		})
	}

	{
		rows, cols := 3, 7
		x, w, b := randVec(rng, rows*cols, 1.5), randVec(rng, cols, 1), randVec(rng, cols, 1)
		cases = append(cases, fdCase{
			name: "LayerNorm", inputs: [][]float64{x, w, b},
			forward: func() []float64 { o, _, _ := refLayerNorm(x, w, b, rows, cols, 1e-5); return o },
			backward: func(d []float64) [][]float64 {
				dx, dw, db := refLayerNormBackward(d, x, w, rows, cols, 1e-5)
				return [][]float64{dx, dw, db}
			},
		})
	}

	for _, layout := range []engine.RopeLayout{engine.RopeHalf, engine.RopeInterleaved} {
		for _, inv := range []bool{false, true} {
			bsz, seq, heads, dim, off := 2, 3, 2, 6, 2
			cos, sin := ropeTables(seq+off, dim/2, 100)
			x := randVec(rng, bsz*seq*heads*dim, 1)
			ly, iv := layout, inv
			cases = append(cases, fdCase{
				name: fmt.Sprintf("RoPE layout=%d inverse=%v", layout, inv), inputs: [][]float64{x},
				forward: func() []float64 { return refRoPE(x, bsz, seq, heads, dim, cos, sin, off, ly, iv) },
				backward: func(d []float64) [][]float64 {
					// A rotation's transpose is its inverse.
					return [][]float64{refRoPE(d, bsz, seq, heads, dim, cos, sin, off, ly, !iv)}
				},
			})
		}
	}

	// The option cases check the reference's soft cap, window, segments,
	// scale and dropout derivatives against finite differences too.
	attnFD := []attnCase{
		{1, 3, 3, 2, 2, 4, attnRefOptions{}},
		{2, 3, 3, 4, 2, 3, attnRefOptions{}},
		{1, 2, 5, 3, 1, 4, attnRefOptions{}},
		{1, 4, 6, 2, 1, 4, attnRefOptions{scale: 0.7, softCap: 0.9, window: 3}},
		{2, 4, 5, 2, 2, 3, attnRefOptions{segments: []int32{0, 0, 1, 1, 3, 4, 4, 4}}},
		{1, 5, 5, 2, 1, 4, attnRefOptions{dropout: 0.3, seed: 11}},
	}
	for _, c := range attnFD {
		q, k, v := randVec(rng, c.qLen(), 1), randVec(rng, c.kLen(), 1), randVec(rng, c.kLen(), 1)
		ac := c
		cases = append(cases, fdCase{
			name:    fmt.Sprintf("Attention %+v", c),
			inputs:  [][]float64{q, k, v},
			forward: func() []float64 { o, _ := refAttention(ac, q, k, v); return o },
			backward: func(d []float64) [][]float64 {
				dq, dk, dv := refAttentionBackward(ac, q, k, v, d)
				return [][]float64{dq, dk, dv}
			},
		})
	}

	{
		vocab := 6
		labels := []int32{2, -100, 5, 0}
		logits := randVec(rng, len(labels)*vocab, 3)
		const scale = 0.7
		cases = append(cases, fdCase{
			name: "CrossEntropy", inputs: [][]float64{logits},
			forward: func() []float64 { l, _ := refCrossEntropy(logits, labels, vocab, 1, 0); return l },
			backward: func(d []float64) [][]float64 {
				// The backend's gradient is per-row-uniform (gradScale);
				// combine the reference's unit-scale rows with dout here.
				_, g := refCrossEntropy(logits, labels, vocab, 1, 0)
				for i := range g {
					g[i] *= d[i/vocab]
				}
				return [][]float64{g}
			},
		})
		// Soft-capped: the loss of the capped logits, differentiated with
		// respect to the uncapped ones.
		const softCap = 2.5
		cases = append(cases, fdCase{
			name: "CrossEntropy soft-capped", inputs: [][]float64{logits},
			forward: func() []float64 {
				l, _ := refCrossEntropy(refSoftCap(logits, softCap), labels, vocab, 1, 0)
				return l
			},
			backward: func(d []float64) [][]float64 {
				_, g := refCrossEntropy(refSoftCap(logits, softCap), labels, vocab, 1, softCap)
				for i := range g {
					g[i] *= d[i/vocab]
				}
				return [][]float64{g}
			},
		})
		// And the scaled form the backend returns directly.
		cases = append(cases, fdCase{
			name: "CrossEntropy scaled", inputs: [][]float64{logits},
			forward: func() []float64 {
				l, _ := refCrossEntropy(logits, labels, vocab, 1, 0)
				var s float64
				for _, v := range l {
					s += scale * v
				}
				return []float64{s}
			},
			backward: func(d []float64) [][]float64 {
				_, g := refCrossEntropy(logits, labels, vocab, scale*d[0], 0)
				return [][]float64{g}
			},
		})
	}

	{
		x, v := randVec(rng, 4*5, 1), randVec(rng, 5, 1)
		cases = append(cases, fdCase{
			name: "MulCols", inputs: [][]float64{x, v},
			forward: func() []float64 { return refMulCols(x, v) },
			backward: func(d []float64) [][]float64 {
				dx, dv := refMulColsBackward(d, x, v)
				return [][]float64{dx, dv}
			},
		})
	}

	for _, acc := range []bool{false, true} {
		s := blockSpec{rows: 3, cols: 2, srcOff: 1, srcStride: 0, dstOff: 2, dstStride: 3}
		src, dst := randVec(rng, 4, 1), randVec(rng, 12, 1)
		a := acc
		cases = append(cases, fdCase{
			name: fmt.Sprintf("CopyBlock accumulate=%v", acc), inputs: [][]float64{src, dst},
			forward: func() []float64 { return refCopyBlock(dst, src, s, a) },
			backward: func(d []float64) [][]float64 {
				ds, dd := refCopyBlockBackward(d, len(src), s, a)
				return [][]float64{ds, dd}
			},
		})
	}

	for _, c := range cases {
		runFD(t, rng, c)
	}
}

// TestBF16Reference pins the independent bfloat16 rounding reference on
// hand-worked values.
func TestBF16Reference(t *testing.T) {
	cases := []struct {
		in   uint32
		want float64
	}{
		{0x3f800000, 1},
		{0x3f808000, 1},             // halfway, even below: down
		{0x3f818000, 1 + 2.0/128},   // halfway, odd below: up
		{0x3f808001, 1 + 1.0/128},   // above halfway: up
		{0x7f7f8000, math.Inf(1)},   // rounds past the largest finite
		{0x7f7f7fff, 0x1.fep127},    // largest finite bfloat16
		{0x00000001, 0},             // tiny subnormal rounds to +0
		{0x80018000, -0x1p-132 * 1}, // halfway between subnormals 0x8001 and 0x8002 rounds to even 0x8002
	}
	for _, c := range cases {
		got := bf16Ref(math.Float32frombits(c.in))
		if got != c.want {
			t.Errorf("bf16Ref(%#08x) = %g, want %g", c.in, got, c.want)
		}
	}
}
