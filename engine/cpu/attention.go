package cpu

import (
	"math"

	"github.com/gotune/gotune/engine"
)

// attnBlock is the number of query rows (forward, dq) or key rows (dk, dv)
// one attention task handles: its score block is attnBlock × S floats.
const attnBlock = 64

// attnDims are the sizes of one attention call.
type attnDims struct {
	b, t, s, hq, hkv, d int
	group               int     // query heads per kv head
	off                 int     // s − t: query t sees keys [0, t+off]
	scale               float32 // score multiplier, 1/sqrt(d) by default
	opt                 engine.AttentionOptions
	seg                 []int32 // opt.Segments' ids, [b, t]
	masked              bool    // some key up to t+off may be hidden (window, segments)
	dropThreshold       uint32  // DropoutKeep's threshold; 0 without dropout
	keepScale           float32 // 1/(1 − dropout)
}

// attnShapes validates the operands of Attention and AttentionBackward.
func attnShapes(op string, out, lse, q, k, v *engine.Tensor, opt engine.AttentionOptions) attnDims {
	qs, ks := q.Shape(), k.Shape()
	check(len(qs) == 4 && len(ks) == 4, op, "q %v and k %v must be [B, T, H, D]", q, k)
	a := attnDims{b: qs[0], t: qs[1], hq: qs[2], d: qs[3], s: ks[1], hkv: ks[2]}
	check(ks[0] == a.b && ks[3] == a.d && engine.SameShape(k, v), op, "k %v and v %v must be [%d, S, Hkv, %d]", k, v, a.b, a.d)
	check(a.s >= a.t, op, "keys S=%d fewer than queries T=%d", a.s, a.t)
	check(a.hkv > 0 && a.hq%a.hkv == 0, op, "query heads %d not a multiple of kv heads %d", a.hq, a.hkv)
	check(out == nil || engine.SameShape(out, q), op, "out %v must match q %v", out, q)
	check(lse.Len() == a.b*a.hq*a.t, op, "lse %v must be [%d, %d, %d]", lse, a.b, a.hq, a.t)
	a.group = a.hq / a.hkv
	a.off = a.s - a.t
	a.scale = opt.ScaleFor(a.d)
	a.opt = opt
	if err := opt.Check(a.b, a.t); err != nil {
		check(false, op, "%v", err)
	}
	if opt.Segments != nil {
		a.seg = i32s(op, opt.Segments)
	}
	a.masked = opt.Window > 0 || a.seg != nil
	a.keepScale = 1
	if opt.Dropout > 0 {
		a.dropThreshold = engine.DropoutThreshold(opt.Dropout)
		a.keepScale = 1 / (1 - opt.Dropout)
	}
	return a
}

// hidden reports whether query t of batch b may not see key j <= t+off
// (causality is the caller's bound).
func (a *attnDims) hidden(b, t, j int) bool {
	if !a.opt.Visible(t+a.off, j) {
		return true
	}
	return a.seg != nil && j >= a.off && a.seg[b*a.t+t] != a.seg[b*a.t+j-a.off]
}

// capScore soft-caps one scaled score, returning the capped score and its
// derivative with respect to the uncapped one.
func (a *attnDims) capScore(s float32) (capped, deriv float32) {
	c := a.opt.SoftCap
	th := float32(math.Tanh(float64(s / c)))
	return c * th, 1 - th*th
}

// prepRow soft-caps and masks the scores row[j] of query t for keys
// j < len(row): hidden keys become −Inf, so the exponentials give 0. deriv,
// when not nil, receives each score's cap derivative (backward needs it,
// forward does not).
func (a *attnDims) prepRow(b, t int, row, deriv []float32) {
	if a.opt.SoftCap > 0 {
		for j, s := range row {
			c, d := a.capScore(s)
			row[j] = c
			if deriv != nil {
				deriv[j] = d
			}
		}
	}
	if !a.masked {
		return
	}
	for j := range row {
		if a.hidden(b, t, j) {
			row[j] = float32(math.Inf(-1))
		}
	}
}

// dropRow zeroes the probabilities row[j] of query t, head h whose dropout
// mask drops them.
func (a *attnDims) dropRow(b, h, t int, row []float32) {
	if a.dropThreshold == 0 {
		return
	}
	for j := range row {
		if !a.keep(b, h, t, j) {
			row[j] = 0
		}
	}
}

// keep reports whether dropout keeps the probability of query t, head h
// and key j.
func (a *attnDims) keep(b, h, t, j int) bool {
	return a.dropThreshold == 0 || engine.DropoutKeep(a.opt.DropoutSeed, engine.AttentionDropoutCounter(b, h, t, j, a.hq, a.t, a.s), a.dropThreshold)
}

// qRow returns the offset of q/out/dout row (b, t, h); consecutive t are
// hq·d apart.
func (a *attnDims) qRow(b, t, h int) int { return ((b*a.t+t)*a.hq + h) * a.d }

// kRow returns the offset of k/v row (b, s, kvh); consecutive s are
// hkv·d apart.
func (a *attnDims) kRow(b, s, kvh int) int { return ((b*a.s+s)*a.hkv + kvh) * a.d }

// Attention computes causal grouped-query attention flash-style: each task
// takes one (batch, head) and a block of up to attnBlock query rows,
// computes that block's scores against the keys it may see with a gemm,
// softmaxes each row (exact row maximum, float64 sums) and multiplies by V
// with a second gemm. Only one block of scores exists per worker — never a
// [T, S] matrix — and lse = max + log Σ exp is all backward keeps. With
// BFloat16 q, k, v the probabilities are P = bf16(exp(s − lse)) from the
// row's final float32 lse (engine.Backend's bfloat16 attention contract).
func (b *Backend) Attention(out, lse, q, k, v *engine.Tensor, opt engine.AttentionOptions) {
	const op = "Attention"
	a := attnShapes(op, out, lse, q, k, v, opt)
	bf := attnBF16(q, k, v)
	qs, ks, vs := read(op, q), read(op, k), read(op, v)
	os, doneO := write(op, out)
	ls, doneL := write(op, lse)
	blocks := (a.t + attnBlock - 1) / attnBlock
	runChunks(a.b*a.hq*blocks, func(task int) {
		blk, bh := task%blocks, task/blocks
		h, bi := bh%a.hq, bh/a.hq
		kvh := h / a.group
		t0 := blk * attnBlock
		rows := min(attnBlock, a.t-t0)
		n := t0 + rows + a.off // keys visible to the block's last row
		sc := getBuf(rows * n)
		defer putBuf(sc)
		ldq, ldk := a.hq*a.d, a.hkv*a.d
		gemm(false, rows, n, a.d, a.scale, fmat(qs[a.qRow(bi, t0, h):], ldq, false), fmat(ks[a.kRow(bi, 0, kvh):], ldk, true), 0, sc, n)
		// inv is the factor each output row is scaled by: 1/Σ (float32:
		// P stays unnormalised) and dropout's 1/(1 − p). nil when 1.
		var inv []float32
		if !bf || a.dropThreshold != 0 {
			inv = make([]float32, rows)
		}
		var tmp []float32
		if bf {
			tmp = getBuf(n)
			defer putBuf(tmp)
		}
		for r := 0; r < rows; r++ {
			row := sc[r*n : (r+1)*n]
			vis := t0 + r + a.off + 1
			a.prepRow(bi, t0+r, row[:vis], nil)
			mx := float32(math.Inf(-1))
			for _, x := range row[:vis] {
				mx = max(mx, x)
			}
			if bf {
				// The statistics come from a copy: P needs the scores again.
				l := float32(float64(mx) + math.Log(expShiftSum(copyTo(tmp, row[:vis]), mx)))
				ls[bh*a.t+t0+r] = l
				bf16Probs(row[:vis], l)
				a.dropRow(bi, h, t0+r, row[:vis])
				clear(row[vis:])
				if inv != nil {
					inv[r] = a.keepScale
				}
				continue
			}
			sum := expShiftSum(row[:vis], mx)
			a.dropRow(bi, h, t0+r, row[:vis])
			clear(row[vis:]) // masked keys
			inv[r] = float32(1/sum) * a.keepScale
			ls[bh*a.t+t0+r] = float32(float64(mx) + math.Log(sum))
		}
		// out = (unnormalised P)·V, then each row scaled by 1/Σ: cheaper
		// than normalising the longer score rows (bfloat16 P is normalised).
		o := os[a.qRow(bi, t0, h):]
		gemm(false, rows, a.d, n, 1, fmat(sc, n, false), fmat(vs[a.kRow(bi, 0, kvh):], ldk, false), 0, o, ldq)
		for r, s := range inv {
			or := o[r*ldq : r*ldq+a.d]
			for j := range or {
				or[j] *= s
			}
		}
	})
	doneO()
	doneL()
}

// AttentionBackward accumulates dq, dk, dv (any may be nil), recomputing
// probabilities as exp(q·k/sqrt(D) − lse) block by block. With BFloat16
// q, k, v, P (for dv) and dS = P ⊙ (dP − Δ) (for dq, dk, computed from the
// unrounded P) are rounded to bfloat16 before their products. It runs in two
// race-free passes built on gemm: one over (head, query block) tasks for
// dq, and one over (kv head, key block) tasks for dk and dv that visit
// every query head of the group and every query that sees those keys.
// Recomputing the scores in both passes costs two extra gemms but needs no
// locks, no per-worker copies of dk and dv, and no [T, S] buffer.
func (b *Backend) AttentionBackward(dq, dk, dv, dout, q, k, v, out, lse *engine.Tensor, opt engine.AttentionOptions) {
	const op = "AttentionBackward"
	if dq == nil && dk == nil && dv == nil {
		return
	}
	a := attnShapes(op, out, lse, q, k, v, opt)
	check(engine.SameShape(dout, q), op, "dout %v must match q %v", dout, q)
	check(dq == nil || engine.SameShape(dq, q), op, "dq %v must match q %v", dq, q)
	check(dk == nil || engine.SameShape(dk, k), op, "dk %v must match k %v", dk, k)
	check(dv == nil || engine.SameShape(dv, v), op, "dv %v must match v %v", dv, v)
	bf := attnBF16(q, k, v)
	qs, ks, vs := read(op, q), read(op, k), read(op, v)
	ds, os, ls := read(op, dout), read(op, out), read(op, lse)
	ldq, ldk := a.hq*a.d, a.hkv*a.d

	// Δ[b, h, t] = dout·out, the softmax-backward row term, laid out like lse.
	delta := make([]float32, a.b*a.hq*a.t)
	parallelFor(len(delta), a.d, func(lo, hi int) {
		for u := lo; u < hi; u++ {
			t, bh := u%a.t, u/a.t
			row := a.qRow(bh/a.hq, t, bh%a.hq)
			delta[u] = dot(ds[row:row+a.d], os[row:row+a.d])
		}
	})

	if dq != nil {
		dqs, done := write(op, dq)
		blocks := (a.t + attnBlock - 1) / attnBlock
		runChunks(a.b*a.hq*blocks, func(task int) {
			blk, bh := task%blocks, task/blocks
			h, bi := bh%a.hq, bh/a.hq
			kvh := h / a.group
			t0 := blk * attnBlock
			rows := min(attnBlock, a.t-t0)
			n := t0 + rows + a.off
			p, dp := getBuf(rows*n), getBuf(rows*n)
			defer putBuf(p)
			defer putBuf(dp)
			var deriv []float32
			if a.opt.SoftCap > 0 {
				deriv = getBuf(n)
				defer putBuf(deriv)
			}
			qo, ko := a.qRow(bi, t0, h), a.kRow(bi, 0, kvh)
			gemm(false, rows, n, a.d, a.scale, fmat(qs[qo:], ldq, false), fmat(ks[ko:], ldk, true), 0, p, n)
			gemm(false, rows, n, a.d, 1, fmat(ds[qo:], ldq, false), fmat(vs[ko:], ldk, true), 0, dp, n)
			for r := 0; r < rows; r++ {
				vis := t0 + r + a.off + 1
				l, dl := ls[bh*a.t+t0+r], delta[bh*a.t+t0+r]
				pr, dr := p[r*n:(r+1)*n], dp[r*n:(r+1)*n]
				a.prepRow(bi, t0+r, pr[:vis], deriv)
				for j := range pr[:vis] {
					pr[j] -= l
				}
				expInPlace(pr[:vis])
				a.dropGrad(bi, h, t0+r, dr[:vis])
				for j := range pr[:vis] {
					pr[j] *= dr[j] - dl // dS
				}
				if deriv != nil {
					for j := range pr[:vis] {
						pr[j] *= deriv[j]
					}
				}
				if bf {
					roundBF16InPlace(pr[:vis])
				}
				clear(pr[vis:])
			}
			gemm(false, rows, a.d, n, a.scale, fmat(p, n, false), fmat(ks[ko:], ldk, false), 1, dqs[qo:], ldq)
		})
		done()
	}
	if dk == nil && dv == nil {
		return
	}

	dks, doneK := write(op, dk)
	dvs, doneV := write(op, dv)
	blocks := (a.s + attnBlock - 1) / attnBlock
	runChunks(a.b*a.hkv*blocks, func(task int) {
		blk, bk := task%blocks, task/blocks
		kvh, bi := bk%a.hkv, bk/a.hkv
		s0 := blk * attnBlock
		rows := min(attnBlock, a.s-s0)
		t0 := max(0, s0-a.off) // first query that sees any key of the block
		n := a.t - t0
		if n <= 0 {
			return // keys no query may see (cannot happen for s < S, kept for safety)
		}
		var colDeriv, colKeep []float32 // one key's cap derivatives and dropout factors
		if a.opt.SoftCap > 0 {
			colDeriv = getBuf(n)
			defer putBuf(colDeriv)
		}
		if a.dropThreshold != 0 {
			colKeep = getBuf(n)
			defer putBuf(colKeep)
		}
		p, dp := getBuf(rows*n), getBuf(rows*n)
		defer putBuf(p)
		defer putBuf(dp)
		ko := a.kRow(bi, s0, kvh)
		for h := kvh * a.group; h < (kvh+1)*a.group; h++ {
			bh := bi*a.hq + h
			qo := a.qRow(bi, t0, h)
			// Transposed blocks: row r is key s0+r, column c is query t0+c.
			gemm(false, rows, n, a.d, a.scale, fmat(ks[ko:], ldk, false), fmat(qs[qo:], ldq, true), 0, p, n)
			if dks != nil {
				gemm(false, rows, n, a.d, 1, fmat(vs[ko:], ldk, false), fmat(ds[qo:], ldq, true), 0, dp, n)
			}
			for r := 0; r < rows; r++ {
				first := max(0, s0+r-a.off-t0) // queries before this see nothing
				pr := p[r*n : (r+1)*n]
				clear(pr[:first])
				var derivs []float32
				if a.opt.SoftCap > 0 {
					derivs = colDeriv
				}
				if colKeep != nil {
					// Dropout's factor for each query of this key: 0 or
					// 1/(1 − p), drawn once for dS and P.
					for c := first; c < n; c++ {
						colKeep[c] = 0
						if a.keep(bi, h, t0+c, s0+r) {
							colKeep[c] = a.keepScale
						}
					}
				}
				if a.opt.SoftCap > 0 || a.masked {
					a.prepColumn(bi, s0+r, t0, first, pr, derivs)
				}
				lr := ls[bh*a.t+t0:][:n]
				for c := first; c < n; c++ {
					pr[c] -= lr[c]
				}
				expInPlace(pr[first:])
				if dks != nil {
					dr := dp[r*n : (r+1)*n]
					for c := first; c < n; c++ {
						g := dr[c] * a.keepScale
						if colKeep != nil {
							g = dr[c] * colKeep[c]
						}
						dr[c] = pr[c] * (g - delta[bh*a.t+t0+c]) // dSᵀ
						if derivs != nil {
							dr[c] *= derivs[c]
						}
					}
					clear(dr[:first])
					if bf {
						roundBF16InPlace(dr[first:])
					}
				}
				if bf {
					roundBF16InPlace(pr[first:])
				}
				for c := first; c < n && colKeep != nil; c++ {
					if colKeep[c] == 0 {
						pr[c] = 0
					}
				}
			}
			if dvs != nil {
				gemm(false, rows, a.d, n, a.keepScale, fmat(p, n, false), fmat(ds[qo:], ldq, false), 1, dvs[ko:], ldk)
			}
			if dks != nil {
				gemm(false, rows, a.d, n, a.scale, fmat(dp, n, false), fmat(qs[qo:], ldq, false), 1, dks[ko:], ldk)
			}
		}
	})
	doneK()
	doneV()
}

// attnBF16 reports whether an attention call is in bfloat16 mode: q, k and
// v all BFloat16 (engine.Backend.Attention documents the rounding points).
func attnBF16(q, k, v *engine.Tensor) bool {
	return q.DType() == engine.BFloat16 && k.DType() == engine.BFloat16 && v.DType() == engine.BFloat16
}

// bf16Probs replaces the scores row by P = bf16(exp(s − lse)): the
// normalised probabilities from the row's final float32 log-sum-exp.
func bf16Probs(row []float32, lse float32) {
	for j := range row {
		row[j] -= lse
	}
	expInPlace(row)
	roundBF16InPlace(row)
}

// copyTo copies src into the front of dst and returns that part.
func copyTo(dst, src []float32) []float32 {
	dst = dst[:len(src)]
	copy(dst, src)
	return dst
}

// dropGrad takes the gradients row[j] of query t's probabilities through
// the dropout mask: dropped ones get 0, kept ones count 1/(1 − p).
func (a *attnDims) dropGrad(b, h, t int, row []float32) {
	if a.dropThreshold == 0 {
		return
	}
	for j := range row {
		if a.keep(b, h, t, j) {
			row[j] *= a.keepScale
		} else {
			row[j] = 0
		}
	}
}

// prepColumn soft-caps and masks the transposed scores col[c] of key j
// for queries t0+c, c >= first, like prepRow, writing the cap derivatives
// into deriv (len(col); soft-capping only).
func (a *attnDims) prepColumn(b, j, t0, first int, col, deriv []float32) {
	if a.opt.SoftCap > 0 {
		for c := first; c < len(col); c++ {
			col[c], deriv[c] = a.capScore(col[c])
		}
	}
	if a.masked {
		for c := first; c < len(col); c++ {
			if a.hidden(b, t0+c, j) {
				col[c] = float32(math.Inf(-1))
			}
		}
	}
}
