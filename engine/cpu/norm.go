package cpu

import (
	"math"

	"github.com/gotune/gotune/engine"
)

// normRowChunk returns how many rows one partial weight-gradient sum of a
// norm backward covers: a function of the row count only (never of the
// core count), so the reduction order — and the result — is fixed.
func normRowChunk(rows int) int {
	return max(16, (rows+63)/64)
}

// RMSNorm computes out = x·rstd ⊙ w row by row with rstd =
// 1/sqrt(mean(x²)+eps) (mean in float64), saving rstd for backward.
func (b *Backend) RMSNorm(out, rstd, x, w *engine.Tensor, eps float32) {
	const op = "RMSNorm"
	rows, cols := x.Rows(), x.Cols()
	sameLen(op, x.Len(), out)
	check(w.Len() == cols, op, "weight %v does not match the %d columns of %v", w, cols, x)
	check(rstd.Len() == rows, op, "rstd %v does not match the %d rows of %v", rstd, rows, x)
	xs, ws := read(op, x), read(op, w)
	o, doneO := write(op, out)
	rs, doneR := write(op, rstd)
	parallelFor(rows, 2*cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, or := xs[r*cols:(r+1)*cols], o[r*cols:(r+1)*cols]
			inv := float32(1 / math.Sqrt(sumSq64(xr)/float64(cols)+float64(eps)))
			rs[r] = inv
			for j, v := range xr {
				// (x·rstd)·w, rounded as Hugging Face's LlamaRMSNorm does.
				or[j] = (v * inv) * ws[j]
			}
		}
	})
	doneO()
	doneR()
}

// RMSNormBackward accumulates dx += rstd·(g − x̂·mean(g·x̂)) with g = dout⊙w
// and x̂ = x·rstd, and dw += Σ_rows dout⊙x̂. Either output may be nil.
func (b *Backend) RMSNormBackward(dx, dw, dout, x, w, rstd *engine.Tensor) {
	const op = "RMSNormBackward"
	if dx == nil && dw == nil {
		return
	}
	rows, cols := x.Rows(), x.Cols()
	sameLen(op, x.Len(), dout, dx)
	sameLen(op, cols, w, dw)
	sameLen(op, rows, rstd)
	xs, ws, ds, rs := read(op, x), read(op, w), read(op, dout), read(op, rstd)
	if dx != nil {
		g, done := write(op, dx)
		parallelFor(rows, 4*cols, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				xr, dr, gr := xs[r*cols:(r+1)*cols], ds[r*cols:(r+1)*cols], g[r*cols:(r+1)*cols]
				inv := float64(rs[r])
				var s float64 // Σ g·x̂
				for j, v := range xr {
					s += float64(dr[j]) * float64(ws[j]) * float64(v) * inv
				}
				m := s / float64(cols)
				for j, v := range xr {
					xh := float64(v) * inv
					gr[j] += float32(inv * (float64(dr[j])*float64(ws[j]) - xh*m))
				}
			}
		})
		done()
	}
	if dw != nil {
		colGrad(op, dw, rows, cols, func(r int, acc []float64) {
			xr, dr := xs[r*cols:(r+1)*cols], ds[r*cols:(r+1)*cols]
			inv := rs[r]
			for j, v := range xr {
				acc[j] += float64(dr[j] * (v * inv))
			}
		})
	}
}

// colGrad accumulates a per-column gradient dst[j] += Σ_r term(r, j): each
// fixed chunk of rows adds its terms into a float64 partial via addRow,
// and the partials are summed in chunk order.
func colGrad(op string, dst *engine.Tensor, rows, cols int, addRow func(r int, acc []float64)) {
	chunk := normRowChunk(rows)
	n := (rows + chunk - 1) / chunk
	partial := make([][]float64, n)
	fixedChunks(rows, chunk, func(c, lo, hi int) {
		acc := make([]float64, cols)
		for r := lo; r < hi; r++ {
			addRow(r, acc)
		}
		partial[c] = acc
	})
	d, done := write(op, dst)
	for j := range d {
		var s float64
		for _, p := range partial {
			s += p[j]
		}
		d[j] += float32(s)
	}
	done()
}

// LayerNorm computes out = (x−mean)·rstd ⊙ w + b row by row (b may be nil),
// with biased variance accumulated in float64, saving mean and rstd.
func (b *Backend) LayerNorm(out, mean, rstd, x, w, bias *engine.Tensor, eps float32) {
	const op = "LayerNorm"
	rows, cols := x.Rows(), x.Cols()
	sameLen(op, x.Len(), out)
	sameLen(op, cols, w, bias)
	sameLen(op, rows, mean, rstd)
	xs, ws, bs := read(op, x), read(op, w), readOpt(op, bias)
	o, doneO := write(op, out)
	ms, doneM := write(op, mean)
	rs, doneR := write(op, rstd)
	parallelFor(rows, 3*cols, func(lo, hi int) {
		for r := lo; r < hi; r++ {
			xr, or := xs[r*cols:(r+1)*cols], o[r*cols:(r+1)*cols]
			var s float64
			for _, v := range xr {
				s += float64(v)
			}
			mu := s / float64(cols)
			var ss float64
			for _, v := range xr {
				d := float64(v) - mu
				ss += d * d
			}
			inv := 1 / math.Sqrt(ss/float64(cols)+float64(eps))
			ms[r], rs[r] = float32(mu), float32(inv)
			for j, v := range xr {
				y := float32((float64(v)-mu)*inv) * ws[j]
				if bs != nil {
					y += bs[j]
				}
				or[j] = y
			}
		}
	})
	doneO()
	doneM()
	doneR()
}

// LayerNormBackward accumulates dx += rstd·(g − mean(g) − x̂·mean(g·x̂)) with
// g = dout⊙w, dw += Σ dout⊙x̂ and db += Σ dout; any output may be nil.
func (b *Backend) LayerNormBackward(dx, dw, db, dout, x, w, mean, rstd *engine.Tensor) {
	const op = "LayerNormBackward"
	rows, cols := x.Rows(), x.Cols()
	sameLen(op, x.Len(), dout, dx)
	sameLen(op, cols, w, dw, db)
	sameLen(op, rows, mean, rstd)
	xs, ws, ds := read(op, x), read(op, w), read(op, dout)
	ms, rs := read(op, mean), read(op, rstd)
	if dx != nil {
		g, done := write(op, dx)
		parallelFor(rows, 5*cols, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				xr, dr, gr := xs[r*cols:(r+1)*cols], ds[r*cols:(r+1)*cols], g[r*cols:(r+1)*cols]
				mu, inv := float64(ms[r]), float64(rs[r])
				var sg, sgx float64
				for j, v := range xr {
					gj := float64(dr[j]) * float64(ws[j])
					sg += gj
					sgx += gj * (float64(v) - mu) * inv
				}
				mg, mgx := sg/float64(cols), sgx/float64(cols)
				for j, v := range xr {
					gj := float64(dr[j]) * float64(ws[j])
					xh := (float64(v) - mu) * inv
					gr[j] += float32(inv * (gj - mg - xh*mgx))
				}
			}
		})
		done()
	}
	if dw != nil {
		colGrad(op, dw, rows, cols, func(r int, acc []float64) {
			xr, dr := xs[r*cols:(r+1)*cols], ds[r*cols:(r+1)*cols]
			mu, inv := float64(ms[r]), float64(rs[r])
			for j, v := range xr {
				acc[j] += float64(dr[j]) * (float64(v) - mu) * inv
			}
		})
	}
	if db != nil {
		colGrad(op, db, rows, cols, func(r int, acc []float64) {
			for j, v := range ds[r*cols : (r+1)*cols] {
				acc[j] += float64(v)
			}
		})
	}
}
