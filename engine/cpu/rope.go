package cpu

import "github.com/gotune/gotune/engine"

// RoPE rotates x [B, T, H, D] in place; see engine.Backend. Each pair
// (x1, x2) becomes (x1·cos − x2·sin, x2·cos + x1·sin), with sin negated
// when inverse (the transpose of a rotation is its inverse, so the same
// routine is its own backward).
func (b *Backend) RoPE(x, cos, sin *engine.Tensor, posOffset int, layout engine.RopeLayout, inverse bool) {
	const op = "RoPE"
	shape := x.Shape()
	check(len(shape) == 4, op, "x %v must be [B, T, H, D]", x)
	bsz, seq, heads, dim := shape[0], shape[1], shape[2], shape[3]
	half := dim / 2
	check(dim%2 == 0, op, "head dim %d of %v is odd", dim, x)
	check(cos.Cols() == half && sin.Cols() == half && cos.Rows() == sin.Rows(), op, "cos %v and sin %v must both be [maxPos, %d]", cos, sin, half)
	check(posOffset >= 0 && posOffset+seq <= cos.Rows(), op, "positions [%d, %d) outside the %d-row tables", posOffset, posOffset+seq, cos.Rows())
	check(layout == engine.RopeHalf || layout == engine.RopeInterleaved, op, "unknown layout %d", layout)
	cs, ss := read(op, cos), read(op, sin)
	xs, done := write(op, x)
	sign := float32(1)
	if inverse {
		sign = -1
	}
	parallelFor(bsz*seq, heads*dim*2, func(lo, hi int) {
		for bt := lo; bt < hi; bt++ {
			pos := posOffset + bt%seq
			c, s := cs[pos*half:(pos+1)*half], ss[pos*half:(pos+1)*half]
			for h := 0; h < heads; h++ {
				v := xs[(bt*heads+h)*dim : (bt*heads+h+1)*dim]
				if layout == engine.RopeHalf {
					v1, v2 := v[:half], v[half:]
					for i := range half {
						a, bb, ci, si := v1[i], v2[i], c[i], sign*s[i]
						v1[i] = a*ci - bb*si
						v2[i] = bb*ci + a*si
					}
				} else {
					for i := range half {
						a, bb, ci, si := v[2*i], v[2*i+1], c[i], sign*s[i]
						v[2*i] = a*ci - bb*si
						v[2*i+1] = bb*ci + a*si
					}
				}
			}
		}
	})
	done()
}
