package model

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
)

// ropeTables holds the host-computed cos/sin tables [positions, rotDim/2]
// on the backend. They are built once and grown only when a sequence runs
// past them, so no RoPE scaling variant needs a kernel of its own.
type ropeTables struct {
	be     engine.Backend
	layout engine.RopeLayout
	// rotDim is how many leading elements of each head rotate (all of
	// them unless the config has a partial_rotary_factor).
	rotDim int
	short  ropeTable
	// long, for longrope, replaces short in passes whose last position
	// is past origMax (transformers picks the factors by the largest
	// position id of each forward call).
	long    *ropeTable
	origMax int
}

// ropeTable is one set of rotary frequencies and its cos/sin tables.
type ropeTable struct {
	invFreq []float32
	// scale multiplies cos and sin (longrope's attention factor; 1
	// otherwise).
	scale    float64
	n        int
	cos, sin *engine.Tensor
}

// newRopeTables builds the tables of a rotary model from d (its config's
// rope_theta, rope_scaling and rotary dimension) for n positions.
func newRopeTables(be engine.Backend, d *dims, n int) (*ropeTables, error) {
	layout := d.ropeLayout
	if d.fam.InterleavedRotary {
		layout = engine.RopeInterleaved
	}
	r := &ropeTables{be: be, layout: layout, rotDim: d.rotDim}
	inv, err := ropeInvFreq(d.rotDim, d.ropeTheta, d.ropeScaling)
	if err != nil {
		return nil, err
	}
	r.short = ropeTable{invFreq: inv, scale: 1}
	if rs := d.ropeScaling; rs != nil && rs.Type == "longrope" {
		scale := rs.LongRopeAttentionFactor()
		r.short = ropeTable{invFreq: longRopeInvFreq(d.rotDim, d.ropeTheta, rs.ShortFactor), scale: scale}
		r.long = &ropeTable{invFreq: longRopeInvFreq(d.rotDim, d.ropeTheta, rs.LongFactor), scale: scale}
		r.origMax = rs.OriginalMaxPos
	}
	r.short.ensure(be, n)
	return r, nil
}

// ropeInvFreq returns the rotary inverse frequencies of dim rotated
// elements as transformers computes them (in float32: 1 /
// theta^(2i/dim)), rescaled as scaling says (longrope: the base
// frequencies, see longRopeInvFreq).
func ropeInvFreq(dim int, theta float64, rs *hfconfig.RopeScaling) ([]float32, error) {
	inv := baseInvFreq(dim, theta)
	var s hfconfig.RopeScaling
	if rs != nil {
		s = *rs
	}
	switch s.Type {
	case "", "default", "longrope":
	case "linear":
		if s.Factor <= 0 {
			return nil, fmt.Errorf("rope_scaling linear: factor %v must be positive", s.Factor)
		}
		for i := range inv {
			inv[i] = float32(float64(inv[i]) / s.Factor)
		}
	case "llama3":
		if s.Factor <= 0 || s.OriginalMaxPos <= 0 || s.HighFreqFactor <= s.LowFreqFactor || s.LowFreqFactor <= 0 {
			return nil, fmt.Errorf("rope_scaling llama3: need factor > 0, original_max_position_embeddings > 0 and high_freq_factor > low_freq_factor > 0 (got %+v)", s)
		}
		old := float64(s.OriginalMaxPos)
		lowWave, highWave := old/s.LowFreqFactor, old/s.HighFreqFactor
		for i, f32 := range inv {
			f := float64(f32)
			wave := 2 * math.Pi / f
			switch {
			case wave > lowWave: // low frequencies: fully interpolated
				f /= s.Factor
			case wave >= highWave: // medium: blend between the two
				smooth := (old/wave - s.LowFreqFactor) / (s.HighFreqFactor - s.LowFreqFactor)
				f = (1-smooth)*f/s.Factor + smooth*f
			}
			inv[i] = float32(f)
		}
	default:
		return nil, fmt.Errorf("rope_scaling type %q is not supported (supported: linear, llama3, longrope)", s.Type)
	}
	return inv, nil
}

// ropeBase returns theta^(2i/dim) for each rotated pair i, in float32
// as torch evaluates base ** (arange(0, dim, 2).float() / dim).
func ropeBase(dim int, theta float64) []float32 {
	out := make([]float32, dim/2)
	for i := range out {
		e := float32(2*i) / float32(dim)
		out[i] = float32(math.Pow(float64(float32(theta)), float64(e)))
	}
	return out
}

// baseInvFreq returns 1 / theta^(2i/dim) in float32.
func baseInvFreq(dim int, theta float64) []float32 {
	inv := ropeBase(dim, theta)
	for i, p := range inv {
		inv[i] = 1 / p
	}
	return inv
}

// longRopeInvFreq returns longrope's frequencies for one factor list:
// 1 / (factor_i · theta^(2i/dim)) in float32.
func longRopeInvFreq(dim int, theta float64, factors []float64) []float32 {
	inv := ropeBase(dim, theta)
	for i, p := range inv {
		inv[i] = 1 / (float32(factors[i]) * p)
	}
	return inv
}

// ensure grows the table to cover positions [0, n).
func (t *ropeTable) ensure(be engine.Backend, n int) {
	if n <= t.n {
		return
	}
	if t.n > 0 && n < 2*t.n {
		n = 2 * t.n
	}
	half := len(t.invFreq)
	cos := make([]float32, n*half)
	sin := make([]float32, n*half)
	for p := 0; p < n; p++ {
		for i, f := range t.invFreq {
			// float32 product then cos/sin, as torch does in float32.
			a := float64(float32(p) * f)
			cos[p*half+i] = float32(math.Cos(a) * t.scale)
			sin[p*half+i] = float32(math.Sin(a) * t.scale)
		}
	}
	t.free(be)
	t.cos = be.Alloc(engine.Float32, n, half)
	t.sin = be.Alloc(engine.Float32, n, half)
	be.Upload(t.cos, cos)
	be.Upload(t.sin, sin)
	t.n = n
}

func (t *ropeTable) free(be engine.Backend) {
	if t.cos != nil {
		be.Free(t.cos)
		be.Free(t.sin)
		t.cos, t.sin, t.n = nil, nil, 0
	}
}

// free releases the tables.
func (r *ropeTables) free() {
	r.short.free(r.be)
	if r.long != nil {
		r.long.free(r.be)
	}
}

// partial reports whether only part of each head of width headDim
// rotates.
func (r *ropeTables) partial(headDim int) bool { return r.rotDim < headDim }

// table returns the cos/sin table of a pass over positions [pos,
// pos+n), grown to cover them: with longrope, the long factors' when its
// last position is past the original context.
func (r *ropeTables) table(pos, n int) *ropeTable {
	t := &r.short
	if r.useLong(pos, n) {
		t = r.long
	}
	t.ensure(r.be, pos+n)
	return t
}

// useLong reports whether a pass over positions [pos, pos+n) uses
// longrope's long factors.
func (r *ropeTables) useLong(pos, n int) bool {
	return r.long != nil && pos+n > r.origMax
}

// apply rotates x [B, T, H, D] whose first token sits at position pos.
// With longrope, a pass whose last position is past the original context
// uses the long factors. inverse rotates back (the backward pass; cos
// and sin scaled by an attention factor make it the transpose, which is
// the gradient).
func (r *ropeTables) apply(x *engine.Tensor, pos int, inverse bool, scratch *engine.Tensor) {
	t := r.table(pos, x.Dim(1))
	r.rotate(x, t.cos, t.sin, pos, inverse, scratch)
}

// rotate rotates x [B, T, H, D] by the rows pos.. of cos and sin. With
// partial rotary only the first rotDim elements of each head rotate:
// they are copied into scratch (at least B·T·H·rotDim elements of x's
// dtype), rotated there and copied back.
func (r *ropeTables) rotate(x, cos, sin *engine.Tensor, pos int, inverse bool, scratch *engine.Tensor) {
	D := x.Dim(3)
	if r.rotDim == D {
		r.be.RoPE(x, cos, sin, pos, r.layout, inverse)
		return
	}
	rows := x.Len() / D
	sub := scratch.Reshape(-1, r.rotDim).Slice(0, rows)
	r.be.CopyBlock(sub, 0, r.rotDim, x, 0, D, rows, r.rotDim, false)
	r.be.RoPE(sub.Reshape(x.Dim(0), x.Dim(1), x.Dim(2), r.rotDim), cos, sin, pos, r.layout, inverse)
	r.be.CopyBlock(x, 0, D, sub, 0, r.rotDim, rows, r.rotDim, false)
}

// gather writes into cos and sin ([N, rotDim/2]) the rows of positions
// pos + ids[i] (ids Int32 [N], each below n) of the table of a pass over
// positions [pos, pos+n).
func (r *ropeTables) gather(cos, sin, ids *engine.Tensor, pos, n int) {
	t := r.table(pos, n)
	r.be.Embedding(cos, t.cos.Slice(pos, t.n), ids)
	r.be.Embedding(sin, t.sin.Slice(pos, t.n), ids)
}
