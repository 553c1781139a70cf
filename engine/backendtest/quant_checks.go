package backendtest

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/quant"
)

// refDequant returns the bfloat16-rounded values of a quantized weight
// from its raw parts, independently of package quant's Dequantize: code
// of element i from byte i/2 (high nibble for even i) or byte i, absmax
// of block i/BlockSize (float32 products and sums, as the contract says).
func refDequant(q *quant.Quantized) []float64 {
	n := q.Rows * q.Cols
	out := make([]float64, n)
	for i := range out {
		var c byte
		if q.Format == quant.Int8 {
			c = q.Codes[i]
		} else if i%2 == 0 {
			c = q.Codes[i/2] >> 4
		} else {
			c = q.Codes[i/2] & 15
		}
		b := i / q.BlockSize
		var am float32
		if q.Nested() {
			prod := q.NestedCode[q.QAbsmax[b]] * q.NestedAbsmax[b/q.NestedBlock]
			am = prod + q.Offset
		} else {
			am = q.Absmax[b]
		}
		v := q.Code[c] * am
		out[i] = bf16Ref(v)
	}
	return out
}

// checkQuantGemm covers QuantGemm in every format (NF4/FP4 plain and
// double quantized, int8), both products (x·Wᵀ and dy·W), float32 and
// bfloat16 a and c, beta 0 over a NaN c and beta 1, ragged shapes (odd
// element counts, partial blocks) and one with several nested blocks,
// against the float64 product of the bfloat16-rounded operands.
func checkQuantGemm(h *harness) {
	type shape struct{ m, rows, cols int }
	shapes := []shape{{1, 5, 7}, {3, 33, 65}, {17, 64, 64}, {9, 200, 136}}
	if !h.short() {
		shapes = append(shapes, shape{130, 97, 300})
	}
	opts := []quant.Options{{Format: quant.NF4}, {Format: quant.NF4, DoubleQuant: true},
		{Format: quant.FP4}, {Format: quant.FP4, DoubleQuant: true}, {Format: quant.Int8}}
	for _, s := range shapes {
		wv := h.randVals(s.rows*s.cols, 0.1)
		wf := make([]float32, len(wv))
		for i, v := range wv {
			wf[i] = float32(v)
		}
		for _, o := range opts {
			q, err := quant.Quantize(wf, s.rows, s.cols, o)
			if err != nil {
				h.t.Fatal(err)
			}
			w := quant.Upload(h.b, q)
			deq := refDequant(q)
			for _, transW := range []bool{true, false} {
				k, n := s.rows, s.cols
				if transW {
					k, n = n, k
				}
				for _, dts := range [][2]engine.DType{{engine.Float32, engine.Float32}, {engine.BFloat16, engine.BFloat16}, {engine.BFloat16, engine.Float32}} {
					for _, beta := range []float64{0, 1} {
						what := fmt.Sprintf("QuantGemm %v double=%v m=%d W=[%d,%d] transW=%v a %v c %v beta %g",
							o.Format, o.DoubleQuant, s.m, s.rows, s.cols, transW, dts[0], dts[1], beta)
						h.quantCase(what, w, deq, s.m, n, k, transW, dts, beta)
					}
				}
			}
			quant.Free(h.b, w)
		}
	}
}

// quantCase runs one QuantGemm with alpha -0.75 and compares it with the
// reference.
func (h *harness) quantCase(what string, w *engine.QuantWeight, deq []float64, m, n, k int, transW bool, dts [2]engine.DType, beta float64) {
	var a *engine.Tensor
	var av []float64
	if dts[0] == engine.BFloat16 {
		a, av = h.randBF16("a", 1, m, k)
	} else {
		a, av = h.randn("a", 1, m, k)
	}
	ar := make([]float64, len(av))
	for i, v := range av {
		ar[i] = bf16Ref(float32(v))
	}
	var c *engine.Tensor
	cv := make([]float64, m*n)
	switch {
	case beta == 0:
		c = h.alloc("c", dts[1], m, n)
		h.b.Fill(c, float32(math.NaN()))
	case dts[1] == engine.BFloat16:
		c, cv = h.randBF16("c", 1, m, n)
	default:
		c, cv = h.randn("c", 1, m, n)
	}
	const alpha = -0.75
	h.b.QuantGemm(c, a, w, transW, alpha, float32(beta))
	prod := refGemm(m, n, k, ar, false, deq, transW)
	want := make([]float64, m*n)
	for i := range want {
		want[i] = alpha*prod[i] + beta*cv[i]
	}
	tol := h.o.tol()
	if dts[1] == engine.BFloat16 {
		tol = bf16Tol
	}
	h.expect(what, c, want, tol)
}
