package model

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
)

// ropeTables holds the host-computed cos/sin tables [positions, headDim/2]
// on the backend. They are built once and grown only when a sequence runs
// past them, so no RoPE scaling variant needs a kernel of its own.
type ropeTables struct {
	be       engine.Backend
	invFreq  []float32
	n        int
	cos, sin *engine.Tensor
	layout   engine.RopeLayout
}

// ropeInvFreq returns the rotary inverse frequencies as transformers
// computes them (in float32: 1 / theta^(2i/dim)), rescaled as scaling says.
func ropeInvFreq(headDim int, theta float64, rs *hfconfig.RopeScaling) ([]float32, error) {
	half := headDim / 2
	inv := make([]float32, half)
	for i := range inv {
		e := float32(2*i) / float32(headDim)
		p := float32(math.Pow(float64(float32(theta)), float64(e)))
		inv[i] = 1 / p
	}
	var s hfconfig.RopeScaling
	if rs != nil {
		s = *rs
	}
	switch s.Type {
	case "", "default":
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
		return nil, fmt.Errorf("rope_scaling type %q is not supported (supported: linear, llama3)", s.Type)
	}
	return inv, nil
}

func newRopeTables(be engine.Backend, invFreq []float32, layout engine.RopeLayout, n int) *ropeTables {
	r := &ropeTables{be: be, invFreq: invFreq, layout: layout}
	r.ensure(n)
	return r
}

// ensure grows the tables to cover positions [0, n).
func (r *ropeTables) ensure(n int) {
	if n <= r.n {
		return
	}
	if r.n > 0 && n < 2*r.n {
		n = 2 * r.n
	}
	half := len(r.invFreq)
	cos := make([]float32, n*half)
	sin := make([]float32, n*half)
	for p := 0; p < n; p++ {
		for i, f := range r.invFreq {
			// float32 product then cos/sin, as torch does in float32.
			a := float64(float32(p) * f)
			cos[p*half+i] = float32(math.Cos(a))
			sin[p*half+i] = float32(math.Sin(a))
		}
	}
	if r.cos != nil {
		r.be.Free(r.cos)
		r.be.Free(r.sin)
	}
	r.cos = r.be.Alloc(engine.Float32, n, half)
	r.sin = r.be.Alloc(engine.Float32, n, half)
	r.be.Upload(r.cos, cos)
	r.be.Upload(r.sin, sin)
	r.n = n
}

// apply rotates x [B, T, H, D] whose first token sits at position pos.
func (r *ropeTables) apply(x *engine.Tensor, pos int, inverse bool) {
	r.ensure(pos + x.Dim(1))
	r.be.RoPE(x, r.cos, r.sin, pos, r.layout, inverse)
}

// gather writes into cos and sin ([N, headDim/2]) the table rows of
// positions pos + ids[i] (ids Int32 [N], each below n).
func (r *ropeTables) gather(cos, sin, ids *engine.Tensor, pos, n int) {
	r.ensure(pos + n)
	r.be.Embedding(cos, r.cos.Slice(pos, r.n), ids)
	r.be.Embedding(sin, r.sin.Slice(pos, r.n), ids)
}
