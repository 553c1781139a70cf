package backendtest

import (
	"math"

	"github.com/gotune/gotune/engine"
)

// The float64 references below are deliberately naive: plain loops that
// follow the mathematical definition, written without looking at (and
// sharing no code with) any backend. Their backward functions are checked
// against finite differences of their forward functions in ref_test.go.

// refGemm returns op(A)·op(B) for A stored [m,k] (or [k,m] when transA)
// and B stored [k,n] (or [n,k] when transB).
func refGemm(m, n, k int, a []float64, transA bool, b []float64, transB bool) []float64 {
	at := func(i, p int) float64 {
		if transA {
			return a[p*m+i]
		}
		return a[i*k+p]
	}
	bt := func(p, j int) float64 {
		if transB {
			return b[j*k+p]
		}
		return b[p*n+j]
	}
	c := make([]float64, m*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			var s float64
			for p := 0; p < k; p++ {
				s += at(i, p) * bt(p, j)
			}
			c[i*n+j] = s
		}
	}
	return c
}

// refGemmBackward returns the gradients of Σ dc ⊙ op(A)·op(B) with respect
// to A and B in their stored layouts.
func refGemmBackward(m, n, k int, a []float64, transA bool, b []float64, transB bool, dc []float64) (da, db []float64) {
	da = make([]float64, m*k)
	db = make([]float64, k*n)
	for i := 0; i < m; i++ {
		for j := 0; j < n; j++ {
			g := dc[i*n+j]
			for p := 0; p < k; p++ {
				ai, bi := i*k+p, p*n+j
				if transA {
					ai = p*m + i
				}
				if transB {
					bi = j*k + p
				}
				da[ai] += g * b[bi]
				db[bi] += g * a[ai]
			}
		}
	}
	return da, db
}

// refAct returns act(x).
func refAct(act engine.Act, x float64) float64 {
	switch act {
	case engine.ActIdentity:
		return x
	case engine.ActReLU:
		return math.Max(x, 0)
	case engine.ActSiLU:
		return x / (1 + math.Exp(-x))
	case engine.ActGELUTanh:
		return 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x)))
	case engine.ActGELU:
		return x * 0.5 * math.Erfc(-x/math.Sqrt2)
	case engine.ActTanh:
		return math.Tanh(x)
	case engine.ActSigmoid:
		return 1 / (1 + math.Exp(-x))
	}
	panic("backendtest: unknown activation")
}

// refActGrad returns act'(x) (0 for ReLU at 0, PyTorch's convention).
func refActGrad(act engine.Act, x float64) float64 {
	switch act {
	case engine.ActIdentity:
		return 1
	case engine.ActReLU:
		if x > 0 {
			return 1
		}
		return 0
	case engine.ActSiLU:
		e := math.Exp(-x)
		return (1 + e + x*e) / ((1 + e) * (1 + e))
	case engine.ActGELUTanh:
		c := math.Sqrt(2 / math.Pi)
		u := c * (x + 0.044715*x*x*x)
		sech2 := 1 / (math.Cosh(u) * math.Cosh(u))
		return 0.5*(1+math.Tanh(u)) + 0.5*x*sech2*c*(1+3*0.044715*x*x)
	case engine.ActGELU:
		return 0.5*math.Erfc(-x/math.Sqrt2) + x*math.Exp(-x*x/2)/math.Sqrt(2*math.Pi)
	case engine.ActTanh:
		return 1 / (math.Cosh(x) * math.Cosh(x))
	case engine.ActSigmoid:
		e := math.Exp(-x)
		return e / ((1 + e) * (1 + e))
	}
	panic("backendtest: unknown activation")
}

// refGLU returns act(g)·u elementwise (SwiGLU with silu, GeGLU with
// gelu_tanh).
func refGLU(act engine.Act, g, u []float64) []float64 {
	out := make([]float64, len(g))
	for i := range g {
		out[i] = refAct(act, g[i]) * u[i]
	}
	return out
}

// refGLUBackward returns the gradients of Σ dout ⊙ act(g)·u.
func refGLUBackward(act engine.Act, dout, g, u []float64) (dg, du []float64) {
	dg, du = make([]float64, len(g)), make([]float64, len(g))
	for i := range g {
		dg[i] = dout[i] * u[i] * refActGrad(act, g[i])
		du[i] = dout[i] * refAct(act, g[i])
	}
	return dg, du
}

// refEmbedding gathers rows of table [vocab, dim].
func refEmbedding(table []float64, dim int, ids []int32) []float64 {
	out := make([]float64, 0, len(ids)*dim)
	for _, id := range ids {
		out = append(out, table[int(id)*dim:(int(id)+1)*dim]...)
	}
	return out
}

// refEmbeddingBackward returns the table gradient of Σ dout ⊙ embedding.
func refEmbeddingBackward(dout []float64, vocab, dim int, ids []int32) []float64 {
	dt := make([]float64, vocab*dim)
	for i, id := range ids {
		for j := 0; j < dim; j++ {
			dt[int(id)*dim+j] += dout[i*dim+j]
		}
	}
	return dt
}

// refRMSNorm returns x/sqrt(mean(x²)+eps)·w per row, and 1/sqrt(...).
func refRMSNorm(x, w []float64, rows, cols int, eps float64) (out, rstd []float64) {
	out, rstd = make([]float64, rows*cols), make([]float64, rows)
	for r := 0; r < rows; r++ {
		var ms float64
		for j := 0; j < cols; j++ {
			ms += x[r*cols+j] * x[r*cols+j]
		}
		ms /= float64(cols)
		rstd[r] = 1 / math.Sqrt(ms+eps)
		for j := 0; j < cols; j++ {
			out[r*cols+j] = x[r*cols+j] * rstd[r] * w[j]
		}
	}
	return out, rstd
}

// refRMSNormBackward differentiates y_j = x_j·ρ·w_j with ρ = (Σx²/C+eps)^-½,
// using ∂ρ/∂x_i = −ρ³·x_i/C.
func refRMSNormBackward(dout, x, w []float64, rows, cols int, eps float64) (dx, dw []float64) {
	dx, dw = make([]float64, rows*cols), make([]float64, cols)
	_, rstd := refRMSNorm(x, w, rows, cols, eps)
	for r := 0; r < rows; r++ {
		rho := rstd[r]
		var s float64 // Σ_j dout_j·w_j·x_j
		for j := 0; j < cols; j++ {
			s += dout[r*cols+j] * w[j] * x[r*cols+j]
		}
		for i := 0; i < cols; i++ {
			dx[r*cols+i] = rho*dout[r*cols+i]*w[i] - rho*rho*rho*x[r*cols+i]/float64(cols)*s
			dw[i] += dout[r*cols+i] * x[r*cols+i] * rho
		}
	}
	return dx, dw
}

// refLayerNorm returns (x−μ)/sqrt(var+eps)·w + b per row (b may be nil),
// with the mean and 1/sqrt(var+eps).
func refLayerNorm(x, w, b []float64, rows, cols int, eps float64) (out, mean, rstd []float64) {
	out, mean, rstd = make([]float64, rows*cols), make([]float64, rows), make([]float64, rows)
	for r := 0; r < rows; r++ {
		xr := x[r*cols : (r+1)*cols]
		var mu float64
		for _, v := range xr {
			mu += v
		}
		mu /= float64(cols)
		var vr float64
		for _, v := range xr {
			vr += (v - mu) * (v - mu)
		}
		vr /= float64(cols)
		mean[r], rstd[r] = mu, 1/math.Sqrt(vr+eps)
		for j, v := range xr {
			out[r*cols+j] = (v-mu)*rstd[r]*w[j] + at(b, j)
		}
	}
	return out, mean, rstd
}

// at returns v[i], or 0 for a nil v.
func at(v []float64, i int) float64 {
	if v == nil {
		return 0
	}
	return v[i]
}

// refLayerNormBackward differentiates the layer norm with ∂μ/∂x_i = 1/C and
// ∂ρ/∂x_i = −ρ³(x_i−μ)/C.
func refLayerNormBackward(dout, x, w []float64, rows, cols int, eps float64) (dx, dw, db []float64) {
	dx, dw, db = make([]float64, rows*cols), make([]float64, cols), make([]float64, cols)
	_, mean, rstd := refLayerNorm(x, w, nil, rows, cols, eps)
	c := float64(cols)
	for r := 0; r < rows; r++ {
		mu, rho := mean[r], rstd[r]
		var sg, sgx float64 // Σ g_j and Σ g_j·(x_j−μ) with g = dout⊙w
		for j := 0; j < cols; j++ {
			g := dout[r*cols+j] * w[j]
			sg += g
			sgx += g * (x[r*cols+j] - mu)
		}
		for i := 0; i < cols; i++ {
			g := dout[r*cols+i] * w[i]
			xm := x[r*cols+i] - mu
			dx[r*cols+i] = rho*(g-sg/c) - rho*rho*rho*xm*sgx/c
			dw[i] += dout[r*cols+i] * xm * rho
			db[i] += dout[r*cols+i]
		}
	}
	return dx, dw, db
}

// refRoPE rotates each pair of x [B, T, H, D] by the angle whose cosine and
// sine are tables [maxPos, D/2] at position posOffset+t (negated angle when
// inverse). It returns a new slice.
func refRoPE(x []float64, bsz, seq, heads, dim int, cos, sin []float64, posOffset int, layout engine.RopeLayout, inverse bool) []float64 {
	out := append([]float64(nil), x...)
	half := dim / 2
	for b := 0; b < bsz; b++ {
		for t := 0; t < seq; t++ {
			pos := posOffset + t
			for h := 0; h < heads; h++ {
				base := ((b*seq+t)*heads + h) * dim
				for i := 0; i < half; i++ {
					i1, i2 := base+i, base+i+half
					if layout == engine.RopeInterleaved {
						i1, i2 = base+2*i, base+2*i+1
					}
					c, s := cos[pos*half+i], sin[pos*half+i]
					if inverse {
						s = -s
					}
					out[i1] = x[i1]*c - x[i2]*s
					out[i2] = x[i1]*s + x[i2]*c
				}
			}
		}
	}
	return out
}

// attnCase is the geometry and the options of one attention check.
type attnCase struct {
	B, T, S, Hq, Hkv, D int
	opt                 attnRefOptions
}

// attnRefOptions are engine.AttentionOptions as the reference reads them:
// segment ids as a slice instead of a tensor.
type attnRefOptions struct {
	scale, softCap float64
	window         int
	segments       []int32 // [B, T] example ids; nil when not packed
	dropout        float64
	seed           uint64
}

// scaleFor returns the score multiplier.
func (o attnRefOptions) scaleFor(d int) float64 {
	if o.scale != 0 {
		return o.scale
	}
	return 1 / math.Sqrt(float64(d))
}

// visible reports whether query t sees key j, written out from the
// documented rules rather than shared with a backend.
func (c attnCase) visible(b, t, j int) bool {
	qi := t + c.S - c.T
	if j > qi || (c.opt.window > 0 && qi-j >= c.opt.window) {
		return false
	}
	seg := c.opt.segments
	return seg == nil || j < c.S-c.T || seg[b*c.T+t] == seg[b*c.T+j-(c.S-c.T)]
}

// keepScale is the factor dropout gives probability (b, h, t, j): 0 when
// dropped, 1/(1 − p) when kept.
func (c attnCase) keepScale(b, h, t, j int) float64 {
	if c.opt.dropout == 0 {
		return 1
	}
	thr := engine.DropoutThreshold(float32(c.opt.dropout))
	if !engine.DropoutKeep(c.opt.seed, engine.AttentionDropoutCounter(b, h, t, j, c.Hq, c.T, c.S), thr) {
		return 0
	}
	return 1 / (1 - float64(float32(c.opt.dropout)))
}

func (c attnCase) qLen() int   { return c.B * c.T * c.Hq * c.D }
func (c attnCase) kLen() int   { return c.B * c.S * c.Hkv * c.D }
func (c attnCase) lseLen() int { return c.B * c.Hq * c.T }

// refAttentionProbs returns, for batch b and query head h, the [T, S]
// softmax matrix (zeros where masked), each row's log-sum-exp, and the
// soft cap's derivative at each score (1 without soft-capping).
func refAttentionProbs(c attnCase, q, k []float64, b, h int) (p [][]float64, lse []float64, capDeriv [][]float64) {
	kh := h / (c.Hq / c.Hkv)
	scale := c.opt.scaleFor(c.D)
	p, capDeriv = make([][]float64, c.T), make([][]float64, c.T)
	lse = make([]float64, c.T)
	for t := 0; t < c.T; t++ {
		p[t], capDeriv[t] = make([]float64, c.S), make([]float64, c.S)
		mx := math.Inf(-1)
		for s := 0; s < c.S; s++ {
			capDeriv[t][s] = 1
			if !c.visible(b, t, s) {
				continue
			}
			var dotp float64
			for d := 0; d < c.D; d++ {
				dotp += q[((b*c.T+t)*c.Hq+h)*c.D+d] * k[((b*c.S+s)*c.Hkv+kh)*c.D+d]
			}
			p[t][s] = dotp * scale
			if cp := c.opt.softCap; cp > 0 {
				th := math.Tanh(p[t][s] / cp)
				p[t][s], capDeriv[t][s] = cp*th, 1-th*th
			}
			mx = math.Max(mx, p[t][s])
		}
		var sum float64
		for s := 0; s < c.S; s++ {
			if c.visible(b, t, s) {
				p[t][s] = math.Exp(p[t][s] - mx)
				sum += p[t][s]
			}
		}
		for s := 0; s < c.S; s++ {
			p[t][s] /= sum
		}
		lse[t] = mx + math.Log(sum)
	}
	return p, lse, capDeriv
}

// refAttention returns causal GQA attention output [B, T, Hq, D] and lse
// [B, Hq, T].
func refAttention(c attnCase, q, k, v []float64) (out, lse []float64) {
	return refAttentionRounded(c, q, k, v, noRound)
}

// noRound is the identity: float32 attention rounds no intermediate.
func noRound(x float64) float64 { return x }

// bf16Round rounds to bfloat16 (through float32, as the backends hold it).
func bf16Round(x float64) float64 { return bf16Ref(float32(x)) }

// refAttentionBF16 is refAttention with bfloat16 q, k, v: out = Σ bf16(P)·v
// with P the exact normalised probabilities (engine.Backend's contract).
func refAttentionBF16(c attnCase, q, k, v []float64) (out, lse []float64) {
	return refAttentionRounded(c, q, k, v, bf16Round)
}

// refAttentionRounded is refAttention with P rounded by round before P·V.
func refAttentionRounded(c attnCase, q, k, v []float64, round func(float64) float64) (out, lse []float64) {
	out, lse = make([]float64, c.qLen()), make([]float64, c.lseLen())
	for b := 0; b < c.B; b++ {
		for h := 0; h < c.Hq; h++ {
			kh := h / (c.Hq / c.Hkv)
			p, l, _ := refAttentionProbs(c, q, k, b, h)
			copy(lse[(b*c.Hq+h)*c.T:], l)
			for t := 0; t < c.T; t++ {
				for d := 0; d < c.D; d++ {
					var s float64
					for j := 0; j < c.S; j++ {
						s += round(p[t][j]) * c.keepScale(b, h, t, j) * v[((b*c.S+j)*c.Hkv+kh)*c.D+d]
					}
					out[((b*c.T+t)*c.Hq+h)*c.D+d] = s
				}
			}
		}
	}
	return out, lse
}

// refAttentionBackward returns the gradients of Σ dout ⊙ attention(q,k,v)
// by matrix calculus on the materialised probabilities: dV = Pᵀ·dO,
// dP = dO·Vᵀ, dS = P ⊙ (dP − rowsum(P ⊙ dP)), dQ = dS·K/√D, dK = dSᵀ·Q/√D.
func refAttentionBackward(c attnCase, q, k, v, dout []float64) (dq, dk, dv []float64) {
	return refAttentionBackwardRounded(c, q, k, v, dout, nil, noRound)
}

// refAttentionBackwardBF16 is the bfloat16 contract's backward pass:
// dV = bf16(P)ᵀ·dO, dS = P ⊙ (dP − Δ) with Δ = rowsum(dO ⊙ out) from the
// stored forward output out, dQ = bf16(dS)·K/√D, dK = bf16(dS)ᵀ·Q/√D.
func refAttentionBackwardBF16(c attnCase, q, k, v, dout, out []float64) (dq, dk, dv []float64) {
	return refAttentionBackwardRounded(c, q, k, v, dout, out, bf16Round)
}

// refAttentionBackwardRounded computes the gradients with P (for dV) and
// dS (for dQ, dK) rounded by round; Δ = rowsum(P ⊙ dP) when out is nil,
// else rowsum(dO ⊙ out).
func refAttentionBackwardRounded(c attnCase, q, k, v, dout, out []float64, round func(float64) float64) (dq, dk, dv []float64) {
	dq, dk, dv = make([]float64, c.qLen()), make([]float64, c.kLen()), make([]float64, c.kLen())
	scale := c.opt.scaleFor(c.D)
	qi := func(b, t, h, d int) int { return ((b*c.T+t)*c.Hq+h)*c.D + d }
	ki := func(b, s, h, d int) int { return ((b*c.S+s)*c.Hkv+h)*c.D + d }
	for b := 0; b < c.B; b++ {
		for h := 0; h < c.Hq; h++ {
			kh := h / (c.Hq / c.Hkv)
			p, _, capDeriv := refAttentionProbs(c, q, k, b, h)
			for t := 0; t < c.T; t++ {
				dp := make([]float64, c.S) // through dropout: ∂loss/∂P
				var rs float64
				for s := 0; s < c.S; s++ {
					for d := 0; d < c.D; d++ {
						dp[s] += dout[qi(b, t, h, d)] * v[ki(b, s, kh, d)]
					}
					dp[s] *= c.keepScale(b, h, t, s)
					rs += p[t][s] * dp[s]
				}
				if out != nil {
					rs = 0
					for d := 0; d < c.D; d++ {
						rs += dout[qi(b, t, h, d)] * out[qi(b, t, h, d)]
					}
				}
				for s := 0; s < c.S; s++ {
					ds := round(p[t][s] * (dp[s] - rs) * capDeriv[t][s])
					ps := round(p[t][s]) * c.keepScale(b, h, t, s)
					for d := 0; d < c.D; d++ {
						dv[ki(b, s, kh, d)] += ps * dout[qi(b, t, h, d)]
						dq[qi(b, t, h, d)] += ds * k[ki(b, s, kh, d)] * scale
						dk[ki(b, s, kh, d)] += ds * q[qi(b, t, h, d)] * scale
					}
				}
			}
		}
	}
	return dq, dk, dv
}

// refCrossEntropy returns per-row losses log Σ exp(y) − y[label] (0 where
// label < 0) of the logits y and the gradient scale·(softmax − onehot)
// (zero rows where ignored). With softCap > 0 the logits are soft-capped
// values y = softCap·tanh(x/softCap) and the gradient is with respect to
// x: each element times 1 − (y/softCap)².
func refCrossEntropy(logits []float64, labels []int32, vocab int, scale, softCap float64) (losses, grad []float64) {
	rows := len(labels)
	losses, grad = make([]float64, rows), make([]float64, rows*vocab)
	for r := 0; r < rows; r++ {
		if labels[r] < 0 {
			continue
		}
		x := logits[r*vocab : (r+1)*vocab]
		mx := math.Inf(-1)
		for _, v := range x {
			mx = math.Max(mx, v)
		}
		var sum float64
		for _, v := range x {
			sum += math.Exp(v - mx)
		}
		lse := mx + math.Log(sum)
		losses[r] = lse - x[labels[r]]
		for j, v := range x {
			grad[r*vocab+j] = scale * math.Exp(v-lse)
		}
		grad[r*vocab+int(labels[r])] -= scale
		if softCap > 0 {
			for j, v := range x {
				grad[r*vocab+j] *= 1 - (v/softCap)*(v/softCap)
			}
		}
	}
	return losses, grad
}

// refSoftCap returns softCap·tanh(x/softCap) elementwise.
func refSoftCap(x []float64, softCap float64) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = softCap * math.Tanh(v/softCap)
	}
	return out
}

// refAdamW applies one torch.optim.AdamW step (amsgrad off) in float64,
// written out from the PyTorch documentation's algorithm.
func refAdamW(p, g, m, v []float64, lr, b1, b2, eps, wd float64, step int) {
	for i := range p {
		p[i] -= lr * wd * p[i]
		m[i] = b1*m[i] + (1-b1)*g[i]
		v[i] = b2*v[i] + (1-b2)*g[i]*g[i]
		mhat := m[i] / (1 - math.Pow(b1, float64(step)))
		vhat := v[i] / (1 - math.Pow(b2, float64(step)))
		p[i] -= lr * mhat / (math.Sqrt(vhat) + eps)
	}
}

// refMulCols returns x[r, j]·v[j].
func refMulCols(x, v []float64) []float64 {
	out := make([]float64, len(x))
	for i := range x {
		out[i] = x[i] * v[i%len(v)]
	}
	return out
}

// refMulColsBackward returns the gradients of Σ dout ⊙ mulcols(x, v).
func refMulColsBackward(dout, x, v []float64) (dx, dv []float64) {
	dx, dv = make([]float64, len(x)), make([]float64, len(v))
	for i := range x {
		dx[i] = dout[i] * v[i%len(v)]
		dv[i%len(v)] += dout[i] * x[i]
	}
	return dx, dv
}

// blockSpec is one CopyBlock geometry.
type blockSpec struct {
	rows, cols                           int
	srcOff, srcStride, dstOff, dstStride int
}

// refCopyBlock returns dst with the block of src copied (or added) in.
func refCopyBlock(dst, src []float64, s blockSpec, accumulate bool) []float64 {
	out := append([]float64(nil), dst...)
	for r := 0; r < s.rows; r++ {
		for j := 0; j < s.cols; j++ {
			d, i := s.dstOff+r*s.dstStride+j, s.srcOff+r*s.srcStride+j
			if accumulate {
				out[d] += src[i]
			} else {
				out[d] = src[i]
			}
		}
	}
	return out
}

// refCopyBlockBackward returns the gradients of Σ dout ⊙ copyblock(dst,
// src) with respect to src and to the old dst: the source gradient
// gathers dout over the block (summing where a stride-0 source is read
// repeatedly), and the old dst passes dout through except where it was
// overwritten.
func refCopyBlockBackward(dout []float64, srcLen int, s blockSpec, accumulate bool) (dsrc, ddst []float64) {
	dsrc = make([]float64, srcLen)
	ddst = append([]float64(nil), dout...)
	for r := 0; r < s.rows; r++ {
		for j := 0; j < s.cols; j++ {
			d, i := s.dstOff+r*s.dstStride+j, s.srcOff+r*s.srcStride+j
			dsrc[i] += dout[d]
			if !accumulate {
				ddst[d] = 0
			}
		}
	}
	return dsrc, ddst
}
