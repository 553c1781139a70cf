package cpu

import "github.com/gotune/gotune/engine"

// Add computes dst = a + b elementwise (dst may alias a or b).
func (b *Backend) Add(dst, x, y *engine.Tensor) {
	sameLen("Add", dst.Len(), x, y)
	xs, ys := read("Add", x), read("Add", y)
	d, done := write("Add", dst)
	parallelFor(len(d), 1, func(lo, hi int) {
		dd, xx, yy := d[lo:hi], xs[lo:hi], ys[lo:hi]
		for i := range dd {
			dd[i] = xx[i] + yy[i]
		}
	})
	done()
}

// Mul computes dst = a ⊙ b elementwise (dst may alias a or b).
func (b *Backend) Mul(dst, x, y *engine.Tensor) {
	sameLen("Mul", dst.Len(), x, y)
	xs, ys := read("Mul", x), read("Mul", y)
	d, done := write("Mul", dst)
	parallelFor(len(d), 1, func(lo, hi int) {
		dd, xx, yy := d[lo:hi], xs[lo:hi], ys[lo:hi]
		for i := range dd {
			dd[i] = xx[i] * yy[i]
		}
	})
	done()
}

// Axpy computes dst += alpha·x.
func (b *Backend) Axpy(dst, x *engine.Tensor, alpha float32) {
	sameLen("Axpy", dst.Len(), x)
	xs := read("Axpy", x)
	d, done := write("Axpy", dst)
	parallelFor(len(d), 1, func(lo, hi int) {
		axpy(d[lo:hi], xs[lo:hi], alpha)
	})
	done()
}

// Scale computes x *= alpha in place.
func (b *Backend) Scale(x *engine.Tensor, alpha float32) {
	d, done := write("Scale", x)
	parallelFor(len(d), 1, func(lo, hi int) {
		s := d[lo:hi]
		for i := range s {
			s[i] *= alpha
		}
	})
	done()
}

// Dropout computes out = x/(1 − p) where engine.DropoutKeep keeps the
// element, 0 elsewhere (out may alias x).
func (b *Backend) Dropout(out, x *engine.Tensor, p float32, seed uint64) {
	const op = "Dropout"
	sameLen(op, out.Len(), x)
	check(p >= 0 && p < 1, op, "dropout %g outside [0, 1)", p)
	thr, keep := engine.DropoutThreshold(p), 1/(1-p)
	xs := read(op, x)
	d, done := write(op, out)
	parallelFor(len(d), 1, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			if engine.DropoutKeep(seed, uint64(i), thr) {
				d[i] = xs[i] * keep
			} else {
				d[i] = 0
			}
		}
	})
	done()
}

// AddBias adds bias[j] to x[r, j] for every row r.
func (b *Backend) AddBias(x, bias *engine.Tensor) {
	cols := x.Cols()
	check(bias.Len() == cols, "AddBias", "bias %v does not match the %d columns of %v", bias, cols, x)
	bs := read("AddBias", bias)
	d, done := write("AddBias", x)
	parallelFor(x.Rows(), cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			row := d[r*cols : (r+1)*cols]
			for j, v := range bs {
				row[j] += v
			}
		}
	})
	done()
}

// sumRowsBlock is the column-block width of SumRows: partial sums of a
// block stay in L1 while rows stream past.
const sumRowsBlock = 256

// SumRows accumulates dst[j] += Σ_r x[r, j] (in float64), the gradient of
// AddBias.
func (b *Backend) SumRows(dst, x *engine.Tensor) {
	cols, rows := x.Cols(), x.Rows()
	check(dst.Len() == cols, "SumRows", "dst %v does not match the %d columns of %v", dst, cols, x)
	xs := read("SumRows", x)
	d, done := write("SumRows", dst)
	// Each chunk owns a range of columns, so there is nothing to merge.
	fixedChunks(cols, sumRowsBlock, func(_, lo, hi int) {
		acc := make([]float64, hi-lo)
		for r := 0; r < rows; r++ {
			row := xs[r*cols+lo : r*cols+hi]
			for j, v := range row {
				acc[j] += float64(v)
			}
		}
		for j, a := range acc {
			d[lo+j] += float32(a)
		}
	})
	done()
}

// MulCols computes dst[r, j] = x[r, j]·v[j] (dst may alias x).
func (b *Backend) MulCols(dst, x, v *engine.Tensor) {
	cols := x.Cols()
	sameLen("MulCols", x.Len(), dst)
	check(v.Len() == cols, "MulCols", "v %v does not match the %d columns of %v", v, cols, x)
	xs, vs := read("MulCols", x), read("MulCols", v)
	d, done := write("MulCols", dst)
	parallelFor(x.Rows(), cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			dr, xr := d[r*cols:(r+1)*cols], xs[r*cols:(r+1)*cols]
			for j, s := range vs {
				dr[j] = xr[j] * s
			}
		}
	})
	done()
}

// RowSumSquares computes dst[r] = Σ_j x[r, j]² (accumulated in float64).
func (b *Backend) RowSumSquares(dst, x *engine.Tensor) {
	cols := x.Cols()
	check(dst.Len() == x.Rows(), "RowSumSquares", "dst %v does not match the %d rows of %v", dst, x.Rows(), x)
	xs := read("RowSumSquares", x)
	d, done := write("RowSumSquares", dst)
	parallelFor(x.Rows(), cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			d[r] = float32(sumSq64(xs[r*cols : (r+1)*cols]))
		}
	})
	done()
}

// sumSquaresChunk is the fixed chunk size of SumSquares' deterministic
// reduction.
const sumSquaresChunk = 1 << 16

// SumSquares accumulates dst[0] += Σ x² over all of x, in float64 with a
// chunking that does not depend on the core count.
func (b *Backend) SumSquares(dst, x *engine.Tensor) {
	check(dst.Len() == 1, "SumSquares", "dst %v must have one element", dst)
	xs := read("SumSquares", x)
	partial := make([]float64, (len(xs)+sumSquaresChunk-1)/sumSquaresChunk)
	fixedChunks(len(xs), sumSquaresChunk, func(c, lo, hi int) {
		partial[c] = sumSq64(xs[lo:hi])
	})
	var total float64
	for _, p := range partial {
		total += p
	}
	d, done := write("SumSquares", dst)
	d[0] = float32(float64(d[0]) + total)
	done()
}

// sumSq64 returns Σ x² accumulated in float64 (four partial sums let the
// additions overlap).
func sumSq64(x []float32) float64 {
	var s0, s1, s2, s3 float64
	i := 0
	for ; i+4 <= len(x); i += 4 {
		a, b, c, d := float64(x[i]), float64(x[i+1]), float64(x[i+2]), float64(x[i+3])
		s0 += a * a
		s1 += b * b
		s2 += c * c
		s3 += d * d
	}
	for ; i < len(x); i++ {
		v := float64(x[i])
		s0 += v * v
	}
	return (s0 + s1) + (s2 + s3)
}

// dot returns Σ a[i]·b[i] (len(b) >= len(a)); assembly replaces it at
// init on CPUs that support it.
var dot = dotGo

// axpy computes y += alpha·x (len(x) >= len(y)); assembly replaces it at
// init on CPUs that support it.
var axpy = axpyGo

// dotGo returns Σ a[i]·b[i] in float32 with eight partial sums.
func dotGo(a, b []float32) float32 {
	b = b[:len(a)]
	var s0, s1, s2, s3, s4, s5, s6, s7 float32
	i := 0
	for ; i+8 <= len(a); i += 8 {
		aa, bb := a[i:i+8:i+8], b[i:i+8:i+8]
		s0 += aa[0] * bb[0]
		s1 += aa[1] * bb[1]
		s2 += aa[2] * bb[2]
		s3 += aa[3] * bb[3]
		s4 += aa[4] * bb[4]
		s5 += aa[5] * bb[5]
		s6 += aa[6] * bb[6]
		s7 += aa[7] * bb[7]
	}
	for ; i < len(a); i++ {
		s0 += a[i] * b[i]
	}
	return ((s0 + s1) + (s2 + s3)) + ((s4 + s5) + (s6 + s7))
}

// axpyGo computes y += alpha·x.
func axpyGo(y, x []float32, alpha float32) {
	x = x[:len(y)]
	i := 0
	for ; i+4 <= len(y); i += 4 {
		yy, xx := y[i:i+4:i+4], x[i:i+4:i+4]
		yy[0] += alpha * xx[0]
		yy[1] += alpha * xx[1]
		yy[2] += alpha * xx[2]
		yy[3] += alpha * xx[3]
	}
	for ; i < len(y); i++ {
		y[i] += alpha * x[i]
	}
}
