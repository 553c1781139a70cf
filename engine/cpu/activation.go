package cpu

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
)

// Transcendentals are evaluated in float64 (Go's math package has no
// float32 versions); the rounding to float32 happens once, at the store.

const (
	geluC      = 0.7978845608028654 // sqrt(2/π)
	geluA      = 0.044715
	invSqrt2   = 0.7071067811865476
	invSqrt2Pi = 0.3989422804014327 // 1/sqrt(2π)
)

func sigmoid64(x float64) float64 { return 1 / (1 + math.Exp(-x)) }

// actFn returns f(x) for one activation.
func actFn(act engine.Act) func(x float64) float64 {
	switch act {
	case engine.ActIdentity:
		return func(x float64) float64 { return x }
	case engine.ActReLU:
		return func(x float64) float64 { return max(x, 0) }
	case engine.ActSiLU:
		return func(x float64) float64 { return x * sigmoid64(x) }
	case engine.ActGELUTanh:
		return func(x float64) float64 { return 0.5 * x * (1 + math.Tanh(geluC*(x+geluA*x*x*x))) }
	case engine.ActGELU:
		return func(x float64) float64 { return 0.5 * x * (1 + math.Erf(x*invSqrt2)) }
	case engine.ActTanh:
		return math.Tanh
	case engine.ActSigmoid:
		return sigmoid64
	}
	panic(fmt.Sprintf("cpu: unknown activation %d", act))
}

// actGrad returns f'(x) for one activation.
func actGrad(act engine.Act) func(x float64) float64 {
	switch act {
	case engine.ActIdentity:
		return func(float64) float64 { return 1 }
	case engine.ActReLU:
		// PyTorch's convention: the derivative at 0 is 0.
		return func(x float64) float64 {
			if x > 0 {
				return 1
			}
			return 0
		}
	case engine.ActSiLU:
		return siluGrad64
	case engine.ActGELUTanh:
		return func(x float64) float64 {
			t := math.Tanh(geluC * (x + geluA*x*x*x))
			return 0.5*(1+t) + 0.5*x*(1-t*t)*geluC*(1+3*geluA*x*x)
		}
	case engine.ActGELU:
		return func(x float64) float64 {
			return 0.5*(1+math.Erf(x*invSqrt2)) + x*invSqrt2Pi*math.Exp(-0.5*x*x)
		}
	case engine.ActTanh:
		return func(x float64) float64 {
			t := math.Tanh(x)
			return 1 - t*t
		}
	case engine.ActSigmoid:
		return func(x float64) float64 {
			s := sigmoid64(x)
			return s * (1 - s)
		}
	}
	panic(fmt.Sprintf("cpu: unknown activation %d", act))
}

func siluGrad64(x float64) float64 {
	s := sigmoid64(x)
	return s * (1 + x*(1-s))
}

// transcendentalCost is the parallelFor cost of one element of an op that
// calls exp/tanh/erf.
const transcendentalCost = 16

// Activation computes out = act(x) (out may alias x).
func (b *Backend) Activation(out, x *engine.Tensor, act engine.Act) {
	sameLen("Activation", x.Len(), out)
	f := actFn(act)
	xs := read("Activation", x)
	o, done := write("Activation", out)
	parallelFor(len(o), transcendentalCost, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			o[i] = float32(f(float64(xs[i])))
		}
	})
	done()
}

// ActivationBackward accumulates dx += dout ⊙ act'(x).
func (b *Backend) ActivationBackward(dx, dout, x *engine.Tensor, act engine.Act) {
	if dx == nil {
		return
	}
	sameLen("ActivationBackward", x.Len(), dx, dout)
	g := actGrad(act)
	xs, dos := read("ActivationBackward", x), read("ActivationBackward", dout)
	d, done := write("ActivationBackward", dx)
	parallelFor(len(d), transcendentalCost, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			d[i] += float32(float64(dos[i]) * g(float64(xs[i])))
		}
	})
	done()
}

// SwiGLU computes out = silu(gate) ⊙ up.
func (b *Backend) SwiGLU(out, gate, up *engine.Tensor) {
	sameLen("SwiGLU", out.Len(), gate, up)
	gs, us := read("SwiGLU", gate), read("SwiGLU", up)
	o, done := write("SwiGLU", out)
	parallelFor(len(o), transcendentalCost, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := float64(gs[i])
			o[i] = float32(g * sigmoid64(g) * float64(us[i]))
		}
	})
	done()
}

// SwiGLUBackward accumulates dgate += dout·up·silu'(gate) and
// dup += dout·silu(gate); either output may be nil.
func (b *Backend) SwiGLUBackward(dgate, dup, dout, gate, up *engine.Tensor) {
	if dgate == nil && dup == nil {
		return
	}
	sameLen("SwiGLUBackward", dout.Len(), dgate, dup, gate, up)
	gs, us, ds := read("SwiGLUBackward", gate), read("SwiGLUBackward", up), read("SwiGLUBackward", dout)
	dg, doneG := write("SwiGLUBackward", dgate)
	du, doneU := write("SwiGLUBackward", dup)
	parallelFor(len(ds), transcendentalCost, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g, d := float64(gs[i]), float64(ds[i])
			s := sigmoid64(g)
			if dg != nil {
				dg[i] += float32(d * float64(us[i]) * s * (1 + g*(1-s)))
			}
			if du != nil {
				du[i] += float32(d * g * s)
			}
		}
	})
	doneG()
	doneU()
}
