// Package params holds the parameter-set bookkeeping every fine-tuning
// method does: marking a set of tensors trainable or frozen, undoing an
// installation that failed half-way, drawing the initial values torch's
// initialisers draw, and comparing a reloaded tensor with saved values.
//
// It is internal to methods so that each method package keeps its own
// readable public API while the mechanics exist once.
package params

import (
	"math"
	"math/rand/v2"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/model"
)

// SetTrainable marks every tensor of ps trainable or frozen (through
// model.SetTrainable, which allocates or releases the gradient buffer).
func SetTrainable(ps []*engine.Param, on bool) {
	for _, p := range ps {
		model.SetTrainable(p, on)
	}
}

// Trainable remembers which parameters of a model were trainable, so
// that a failed installation can put the model back as it was (methods
// freeze the whole model before they know whether every step succeeds).
type Trainable map[*engine.Param]bool

// Snapshot records the trainable flag of every parameter of m.
func Snapshot(m model.Model) Trainable {
	s := Trainable{}
	for _, p := range m.Params() {
		s[p] = p.Trainable
	}
	return s
}

// Restore sets every recorded parameter back to its recorded flag.
func (s Trainable) Restore() {
	for p, on := range s {
		model.SetTrainable(p, on)
	}
}

// Normal returns n values drawn from N(0, std²), as torch's normal_ and
// nn.Embedding's default initialisation.
func Normal(rng *rand.Rand, n int, std float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32(std * rng.NormFloat64())
	}
	return out
}

// Uniform returns n values drawn from U(−bound, bound), as torch's
// uniform_; nn.Linear's default kaiming_uniform_(a=sqrt(5)) is this with
// bound 1/sqrt(fan_in).
func Uniform(rng *rand.Rand, n int, bound float64) []float32 {
	out := make([]float32, n)
	for i := range out {
		out[i] = float32((2*rng.Float64() - 1) * bound)
	}
	return out
}

// RelDiff returns ‖a − b‖ / ‖b‖ (‖a − b‖ when b is zero), and +Inf when
// the lengths differ or any value is NaN, so no "< tol" check passes on
// garbage. Methods use it to check that tensors reloaded from one
// file reproduce values saved in another, which float32 arithmetic
// repeats only approximately.
func RelDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	var num, den float64
	for i := range a {
		d := float64(a[i]) - float64(b[i])
		num += d * d
		den += float64(b[i]) * float64(b[i])
	}
	r := math.Sqrt(num)
	if den != 0 {
		r = math.Sqrt(num / den)
	}
	if math.IsNaN(r) {
		return math.Inf(1)
	}
	return r
}
