package cpu

import (
	"math"

	"github.com/gotune/gotune/engine"
)

// AdamW updates param in place with torch.optim.AdamW's formula (PyTorch
// 1.13 single-tensor path, amsgrad off), evaluated in float32 in the same
// order so results match it to the last bit where rounding allows:
//
//	p *= 1 − lr·wd
//	m = β1·m + (1−β1)·g
//	v = β2·v + (1−β2)·g²
//	p −= lr/(1−β1^t) · m / (sqrt(v)/sqrt(1−β2^t) + eps)
//
// The step-dependent scalars are computed in float64 as Python would.
func (b *Backend) AdamW(param, grad, m, v *engine.Tensor, h engine.AdamWParams) {
	const op = "AdamW"
	sameLen(op, param.Len(), grad, m, v)
	check(h.Step >= 1, op, "step %d must be >= 1", h.Step)
	lr, wd := float64(h.LR), float64(h.WeightDecay)
	b1, b2 := float64(h.Beta1), float64(h.Beta2)
	decay := float32(1 - lr*wd)
	bc1 := 1 - math.Pow(b1, float64(h.Step))
	bc2 := 1 - math.Pow(b2, float64(h.Step))
	negStep := float32(-lr / bc1)
	bc2Sqrt := float32(math.Sqrt(bc2))
	beta1, beta2 := h.Beta1, h.Beta2
	oneMinusB1, oneMinusB2 := float32(1-b1), float32(1-b2)
	eps := h.Eps
	gs := read(op, grad)
	ps, doneP := write(op, param)
	ms, doneM := write(op, m)
	vs, doneV := write(op, v)
	parallelFor(len(ps), 8, func(lo, hi int) {
		for i := lo; i < hi; i++ {
			g := gs[i]
			p := ps[i] * decay
			mi := ms[i]*beta1 + oneMinusB1*g
			vi := vs[i]*beta2 + oneMinusB2*g*g
			denom := float32(math.Sqrt(float64(vi)))/bc2Sqrt + eps
			ps[i] = p + negStep*mi/denom
			ms[i], vs[i] = mi, vi
		}
	})
	doneP()
	doneM()
	doneV()
}
