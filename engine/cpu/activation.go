package cpu

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
)

// The activations run in float32 on a vectorised exponential (a few ulps
// from exact, far inside training tolerances and comparable to PyTorch's
// own vectorised float32 math), because on small models the float64 math
// package's tanh/exp took a quarter of a training step. Exact-erf GELU
// keeps float64 math.Erf, which has no cheap float32 equivalent here.

const (
	geluC      = 0.7978845608028654 // sqrt(2/π)
	geluA      = 0.044715
	invSqrt2   = 0.7071067811865476
	invSqrt2Pi = 0.3989422804014327 // 1/sqrt(2π)
)

// sigmoidf returns 1/(1+e^-x); expf's overflow to +Inf gives exactly 0.
func sigmoidf(x float32) float32 { return 1 / (1 + expf(-x)) }

// tanhFromExp returns tanh(x) given e = exp(−2|x|): an odd Taylor polynomial
// near 0 (where (1−e)/(1+e) would cancel), (1−e)/(1+e) with x's sign
// elsewhere. e never overflows, and is 0 far out where tanh = ±1.
func tanhFromExp(x, e float32) float32 {
	if x > -0.25 && x < 0.25 {
		x2 := x * x
		return x * (1 + x2*(-1.0/3+x2*(2.0/15+x2*(-17.0/315+x2*(62.0/2835)))))
	}
	t := (1 - e) / (1 + e)
	if x < 0 {
		return -t
	}
	return t
}

// tanhf returns tanh(x) in float32.
func tanhf(x float32) float32 {
	if x != x {
		return x
	}
	return tanhFromExp(x, expf(-2*abs32(x)))
}

// abs32 returns |x| by clearing the sign bit: no branch, since signs of
// activations are unpredictable and a mispredicted branch costs more than
// the arithmetic around it.
func abs32(x float32) float32 { return math.Float32frombits(math.Float32bits(x) &^ (1 << 31)) }

// copySign32 returns |mag| with sign's sign, without branching.
func copySign32(mag, sign float32) float32 {
	return math.Float32frombits(math.Float32bits(mag)&^(1<<31) | math.Float32bits(sign)&(1<<31))
}

// geluTanh returns tanh(u) for GELU-tanh given e = exp(−2|u|), branch-free.
// Near u = 0, (1−e)/(1+e) loses relative accuracy, but GELU only uses
// 1 + tanh(u) and 1 − tanh²(u), whose absolute error stays ~1e-7.
func geluTanh(u, e float32) float32 { return copySign32((1-e)/(1+e), u) }

// geluU returns the tanh argument of GELU-tanh, √(2/π)(x+0.044715x³).
func geluU(x float32) float32 { return geluC * (x + geluA*x*x*x) }

// checkAct panics on an activation this backend does not know.
func checkAct(op string, act engine.Act) {
	if act > engine.ActSigmoid {
		panic(fmt.Sprintf("cpu.%s: unknown activation %d", op, act))
	}
}

// actChunk is how many elements share one scratch buffer of exponentials:
// the vector exp runs over the buffer, the rest is plain float32 loops.
const actChunk = 256

// expNeg fills e[i] = exp(−x[i]) (for sigmoids).
func expNeg(e, x []float32) {
	x = x[:len(e)]
	for i, v := range x {
		e[i] = -v
	}
	expInPlace(e)
}

// expTanh fills e[i] = exp(−2|x[i]|) (for tanh).
func expTanh(e, x []float32) {
	x = x[:len(e)]
	for i, v := range x {
		e[i] = -2 * abs32(v)
	}
	expInPlace(e)
}

// expGELU fills e[i] = exp(−2|u(x[i])|) with u GELU-tanh's tanh argument.
func expGELU(e, x []float32) {
	x = x[:len(e)]
	for i, v := range x {
		e[i] = -2 * abs32(geluU(v))
	}
	expInPlace(e)
}

// geluForward fills o[i] = gelu_tanh(x[i]); assembly replaces it at init on
// CPUs that support it.
var geluForward = geluForwardGo

// geluBackward accumulates d[i] += g[i]·gelu_tanh'(x[i]); assembly replaces
// it at init on CPUs that support it.
var geluBackward = geluBackwardGo

func geluForwardGo(o, x []float32) {
	var buf [actChunk]float32
	for lo := 0; lo < len(o); lo += actChunk {
		hi := min(lo+actChunk, len(o))
		xs, os, e := x[lo:hi], o[lo:hi], buf[:hi-lo]
		expGELU(e, xs)
		for i, v := range xs {
			os[i] = 0.5 * v * (1 + geluTanh(geluU(v), e[i]))
		}
	}
}

func geluBackwardGo(d, g, x []float32) {
	var buf [actChunk]float32
	for lo := 0; lo < len(d); lo += actChunk {
		hi := min(lo+actChunk, len(d))
		xs, gs, ds, e := x[lo:hi], g[lo:hi], d[lo:hi], buf[:hi-lo]
		expGELU(e, xs)
		for i, v := range xs {
			t := geluTanh(geluU(v), e[i])
			ds[i] += gs[i] * (0.5*(1+t) + 0.5*v*(1-t*t)*geluC*(1+3*geluA*v*v))
		}
	}
}

// actForward fills o[i] = act(x[i]) (o may alias x).
func actForward(act engine.Act, o, x []float32) {
	x = x[:len(o)]
	switch act {
	case engine.ActIdentity:
		copy(o, x)
		return
	case engine.ActReLU:
		for i, v := range x {
			o[i] = max(v, 0)
		}
		return
	case engine.ActGELU:
		for i, v := range x {
			xv := float64(v)
			o[i] = float32(0.5 * xv * (1 + math.Erf(xv*invSqrt2)))
		}
		return
	case engine.ActGELUTanh:
		geluForward(o, x)
		return
	}
	var buf [actChunk]float32
	for lo := 0; lo < len(o); lo += actChunk {
		hi := min(lo+actChunk, len(o))
		xs, os, e := x[lo:hi], o[lo:hi], buf[:hi-lo]
		switch act {
		case engine.ActSiLU:
			expNeg(e, xs)
			for i, v := range xs {
				os[i] = v / (1 + e[i])
			}
		case engine.ActSigmoid:
			expNeg(e, xs)
			for i := range xs {
				os[i] = 1 / (1 + e[i])
			}
		case engine.ActTanh:
			expTanh(e, xs)
			for i, v := range xs {
				os[i] = tanhFromExp(v, e[i])
			}
		}
	}
}

// actBackward accumulates d[i] += g[i]·act'(x[i]).
func actBackward(act engine.Act, d, g, x []float32) {
	g, x = g[:len(d)], x[:len(d)]
	switch act {
	case engine.ActIdentity:
		for i, v := range g {
			d[i] += v
		}
		return
	case engine.ActReLU:
		for i, v := range x {
			if v > 0 { // PyTorch's convention: the derivative at 0 is 0
				d[i] += g[i]
			}
		}
		return
	case engine.ActGELU:
		for i, v := range x {
			xv := float64(v)
			dv := 0.5*(1+math.Erf(xv*invSqrt2)) + xv*invSqrt2Pi*math.Exp(-0.5*xv*xv)
			d[i] += float32(float64(g[i]) * dv)
		}
		return
	case engine.ActGELUTanh:
		geluBackward(d, g, x)
		return
	}
	var buf [actChunk]float32
	for lo := 0; lo < len(d); lo += actChunk {
		hi := min(lo+actChunk, len(d))
		xs, gs, ds, e := x[lo:hi], g[lo:hi], d[lo:hi], buf[:hi-lo]
		switch act {
		case engine.ActSiLU:
			expNeg(e, xs)
			for i, v := range xs {
				s := 1 / (1 + e[i])
				ds[i] += gs[i] * (s * (1 + v*(1-s)))
			}
		case engine.ActSigmoid:
			expNeg(e, xs)
			for i := range xs {
				s := 1 / (1 + e[i])
				ds[i] += gs[i] * (s * (1 - s))
			}
		case engine.ActTanh:
			expTanh(e, xs)
			for i, v := range xs {
				t := tanhFromExp(v, e[i])
				ds[i] += gs[i] * (1 - t*t)
			}
		}
	}
}

// transcendentalCost is the parallelFor cost of one element of an op that
// evaluates an exponential.
const transcendentalCost = 8

// Activation computes out = act(x) (out may alias x).
func (b *Backend) Activation(out, x *engine.Tensor, act engine.Act) {
	checkAct("Activation", act)
	sameLen("Activation", x.Len(), out)
	xs := read("Activation", x)
	o, done := write("Activation", out)
	parallelForAligned(len(o), transcendentalCost, 8, func(lo, hi int) {
		actForward(act, o[lo:hi], xs[lo:hi])
	})
	done()
}

// ActivationBackward accumulates dx += dout ⊙ act'(x).
func (b *Backend) ActivationBackward(dx, dout, x *engine.Tensor, act engine.Act) {
	checkAct("ActivationBackward", act)
	if dx == nil {
		return
	}
	sameLen("ActivationBackward", x.Len(), dx, dout)
	xs, dos := read("ActivationBackward", x), read("ActivationBackward", dout)
	d, done := write("ActivationBackward", dx)
	parallelForAligned(len(d), transcendentalCost, 8, func(lo, hi int) {
		actBackward(act, d[lo:hi], dos[lo:hi], xs[lo:hi])
	})
	done()
}

// SwiGLU computes out = silu(gate) ⊙ up.
func (b *Backend) SwiGLU(out, gate, up *engine.Tensor) {
	sameLen("SwiGLU", out.Len(), gate, up)
	gs, us := read("SwiGLU", gate), read("SwiGLU", up)
	o, done := write("SwiGLU", out)
	parallelForAligned(len(o), transcendentalCost, 8, func(lo, hi int) {
		var buf [actChunk]float32
		for c := lo; c < hi; c += actChunk {
			ce := min(c+actChunk, hi)
			e := buf[:ce-c]
			expNeg(e, gs[c:ce])
			for i, g := range gs[c:ce] {
				o[c+i] = g / (1 + e[i]) * us[c+i]
			}
		}
	})
	done()
}

// SwiGLUBackward accumulates dgate += dout·up·silu'(gate) and
// dup += dout·silu(gate); either output may be nil.
func (b *Backend) SwiGLUBackward(dgate, dup, dout, gate, up *engine.Tensor) {
	gluBackward("SwiGLUBackward", dgate, dup, dout, gate, up, func(f, fp, g []float32) {
		expNeg(fp, g)
		for i, v := range g {
			s := 1 / (1 + fp[i])
			f[i], fp[i] = v*s, s*(1+v*(1-s))
		}
	})
}

// gluBackward accumulates dgate += dout·up·act'(gate) and dup +=
// dout·act(gate) (either may be nil); act fills f = act(g) and fp =
// act'(g) for a chunk of at most actChunk gate values (one call per
// chunk, so the per-element math stays inlined).
func gluBackward(op string, dgate, dup, dout, gate, up *engine.Tensor, act func(f, fp, g []float32)) {
	if dgate == nil && dup == nil {
		return
	}
	sameLen(op, dout.Len(), dgate, dup, gate, up)
	gs, us, ds := read(op, gate), read(op, up), read(op, dout)
	dg, doneG := write(op, dgate)
	du, doneU := write(op, dup)
	parallelForAligned(len(ds), transcendentalCost, 8, func(lo, hi int) {
		var fb, fpb [actChunk]float32
		for c := lo; c < hi; c += actChunk {
			ce := min(c+actChunk, hi)
			f, fp := fb[:ce-c], fpb[:ce-c]
			act(f, fp, gs[c:ce])
			for j := range f {
				i := c + j
				if dg != nil {
					dg[i] += ds[i] * us[i] * fp[j]
				}
				if du != nil {
					du[i] += ds[i] * f[j]
				}
			}
		}
	})
	doneG()
	doneU()
}

// GeGLU computes out = gelu_tanh(gate) ⊙ up.
func (b *Backend) GeGLU(out, gate, up *engine.Tensor) {
	sameLen("GeGLU", out.Len(), gate, up)
	gs, us := read("GeGLU", gate), read("GeGLU", up)
	o, done := write("GeGLU", out)
	parallelForAligned(len(o), transcendentalCost, 8, func(lo, hi int) {
		geluForward(o[lo:hi], gs[lo:hi])
		for i := lo; i < hi; i++ {
			o[i] *= us[i]
		}
	})
	done()
}

// GeGLUBackward accumulates dgate += dout·up·gelu_tanh'(gate) and
// dup += dout·gelu_tanh(gate); either output may be nil.
func (b *Backend) GeGLUBackward(dgate, dup, dout, gate, up *engine.Tensor) {
	gluBackward("GeGLUBackward", dgate, dup, dout, gate, up, func(f, fp, g []float32) {
		expGELU(fp, g)
		for i, v := range g {
			t := geluTanh(geluU(v), fp[i])
			f[i], fp[i] = 0.5*v*(1+t), 0.5*(1+t)+0.5*v*(1-t*t)*geluC*(1+3*geluA*v*v)
		}
	})
}
