package backendtest

import "fmt"

// matShapes are [rows, cols] pairs for row-wise operations.
var matShapes = [][2]int{{1, 1}, {1, 17}, {3, 5}, {17, 33}, {65, 3}, {33, 65}, {7, 257}}

// checkBias covers AddBias and its gradient SumRows (accumulating).
func checkBias(h *harness) {
	for _, s := range matShapes {
		r, c := s[0], s[1]
		x, xv := h.randn("x", 1, r, c)
		bias, bv := h.randn("bias", 1, c)
		h.b.AddBias(x, bias)
		want := make([]float64, r*c)
		for i := range want {
			want[i] = xv[i] + bv[i%c]
		}
		h.expect(fmt.Sprintf("AddBias [%d,%d]", r, c), x, want, h.o.tol())

		dst, d0 := h.randn("dst", 1, c)
		h.b.SumRows(dst, x)
		sums := make([]float64, c)
		for i, v := range h.download(x) { // SumRows is checked on what x holds
			sums[i%c] += v
		}
		h.expect(fmt.Sprintf("SumRows [%d,%d]", r, c), dst, addTo(d0, sums), h.o.tol())
	}
}

// checkElementwise covers Add, Mul, Axpy, Scale and MulCols, including the
// in-place aliasing they allow.
func checkElementwise(h *harness) {
	for _, n := range raggedSizes {
		a, av := h.randn("a", 1, n)
		b, bv := h.randn("b", 1, n)
		sum, prod := make([]float64, n), make([]float64, n)
		for i := range av {
			sum[i], prod[i] = av[i]+bv[i], av[i]*bv[i]
		}
		dst := h.nan("dst", n)
		h.b.Add(dst, a, b)
		h.expect(fmt.Sprintf("Add [%d]", n), dst, sum, h.o.tol())
		h.b.Mul(dst, a, b)
		h.expect(fmt.Sprintf("Mul [%d]", n), dst, prod, h.o.tol())

		a2, _ := h.randn("a2", 0, n)
		h.b.Upload(a2, h.b.Download(a))
		h.b.Add(a2, a2, b) // dst aliases the first operand
		h.expect(fmt.Sprintf("Add [%d] in place", n), a2, sum, h.o.tol())
		h.b.Upload(a2, h.b.Download(a))
		h.b.Mul(a2, b, a2) // dst aliases the second operand
		h.expect(fmt.Sprintf("Mul [%d] in place", n), a2, prod, h.o.tol())

		y, yv := h.randn("y", 1, n)
		h.b.Axpy(y, a, -0.375)
		want := make([]float64, n)
		for i := range want {
			want[i] = yv[i] - 0.375*av[i]
		}
		h.expect(fmt.Sprintf("Axpy [%d]", n), y, want, h.o.tol())

		h.b.Scale(b, 1.5)
		for i := range want {
			want[i] = 1.5 * bv[i]
		}
		h.expect(fmt.Sprintf("Scale [%d]", n), b, want, h.o.tol())
	}
	for _, s := range matShapes {
		r, c := s[0], s[1]
		x, xv := h.randn("x", 1, r, c)
		v, vv := h.randn("v", 1, c)
		want := make([]float64, r*c)
		for i := range want {
			want[i] = xv[i] * vv[i%c]
		}
		dst := h.nan("dst", r, c)
		h.b.MulCols(dst, x, v)
		h.expect(fmt.Sprintf("MulCols [%d,%d]", r, c), dst, want, h.o.tol())

		// Backward as models compose it: dx += MulCols(dout, v) and
		// dv += SumRows(dout ⊙ x).
		dout, dov := h.randn("dout", 1, r, c)
		dx, dx0 := h.randn("dx", 1, r, c)
		dv, dv0 := h.randn("dv", 1, c)
		tmp := h.nan("tmp", r, c)
		h.b.MulCols(tmp, dout, v)
		h.b.Add(dx, dx, tmp)
		h.b.Mul(tmp, dout, x)
		h.b.SumRows(dv, tmp)
		rdx, rdv := refMulColsBackward(dov, xv, vv)
		h.expect(fmt.Sprintf("MulCols backward [%d,%d] dx", r, c), dx, addTo(dx0, rdx), h.o.tol())
		h.expect(fmt.Sprintf("MulCols backward [%d,%d] dv", r, c), dv, addTo(dv0, rdv), h.o.tol())

		h.b.MulCols(x, x, v)
		h.expect(fmt.Sprintf("MulCols [%d,%d] in place", r, c), x, want, h.o.tol())
	}
}

// checkReductions covers RowSumSquares (overwrite) and SumSquares
// (accumulate into one element).
func checkReductions(h *harness) {
	for _, s := range matShapes {
		r, c := s[0], s[1]
		x, xv := h.randn("x", 1, r, c)
		dst := h.nan("dst", r)
		h.b.RowSumSquares(dst, x)
		want := make([]float64, r)
		total := 0.0
		for i, v := range xv {
			want[i/c] += v * v
			total += v * v
		}
		h.expect(fmt.Sprintf("RowSumSquares [%d,%d]", r, c), dst, want, h.o.tol())

		acc := h.tensor("acc", []float64{2.5}, 1)
		h.b.SumSquares(acc, x)
		h.b.SumSquares(acc, x)
		h.expect(fmt.Sprintf("SumSquares [%d,%d] twice into 2.5", r, c), acc, []float64{2.5 + 2*total}, h.o.tol())
	}
	if !h.short() {
		// A large reduction, where float32 accumulation would drift.
		n := 1 << 20
		x, xv := h.randn("x", 1, n)
		acc := h.tensor("acc", []float64{0}, 1)
		h.b.SumSquares(acc, x)
		var total float64
		for _, v := range xv {
			total += v * v
		}
		h.expect(fmt.Sprintf("SumSquares [%d]", n), acc, []float64{total}, h.o.tol())
	}
}
