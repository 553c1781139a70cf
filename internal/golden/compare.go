package golden

import (
	"fmt"
	"math"
)

// Tolerances of the golden comparisons (testdata/golden/README.md).
const (
	// TolLoss bounds the relative error of logits and losses.
	TolLoss = 1e-5
	// TolGrad bounds the relative error of gradients, gradient norms and
	// trained weights.
	TolGrad = 1e-4
	// NegligibleGrad is the fraction of the global gradient norm below
	// which an element's reference gradient is negligible (see CompareAfter).
	NegligibleGrad = 1e-6
)

// CompareAfter checks trained weights got against the reference want
// after steps AdamW steps at learning rate lr: relative error at most
// TolGrad over the elements whose first-step reference gradient (grad) is
// at least NegligibleGrad of the first step's global gradient norm; the
// other elements only within the distance AdamW can move a weight in the
// run (3·lr a step). It returns "" when the weights pass, else what is
// wrong, and the number of elements checked by the bound only.
//
// Why: AdamW divides each gradient element by its own running magnitude,
// so an element's update depends on its gradient's relative accuracy, not
// its absolute one. float32 rounding leaves an absolute error of about
// 1e-8 of the gradient norm in every element; on an element whose exact
// gradient is that small (a key bias without RoPE has an exactly zero
// gradient, since softmax ignores a shift shared by all keys; an
// embedding row of a token not in the batch) the float32 run takes steps
// of order lr in a direction set by rounding while the float64 reference
// does not, and no two float32 implementations would agree either. A nil
// grad checks every element strictly.
func CompareAfter(got, want, grad []float32, gradNorm, lr float64, steps int) (string, int) {
	if len(got) != len(want) {
		return fmt.Sprintf("%d values, reference %d", len(got), len(want)), 0
	}
	var g2, w2 []float32
	masked := 0
	for i := range want {
		if grad != nil && math.Abs(float64(grad[i])) < NegligibleGrad*gradNorm {
			masked++
			if d := math.Abs(float64(got[i]) - float64(want[i])); !(d <= 3*lr*float64(steps)) {
				return fmt.Sprintf("element %d (negligible reference gradient) is %.3g from the reference, more than AdamW can move it", i, d), masked
			}
			continue
		}
		g2 = append(g2, got[i])
		w2 = append(w2, want[i])
	}
	if e := RelErr(g2, w2); e > TolGrad {
		return fmt.Sprintf("rel err %.3g > %g (over %d of %d elements)", e, TolGrad, len(g2), len(want)), masked
	}
	return "", masked
}

// Step is one training step's metrics as a run reports them (the
// trainer's history or metrics.jsonl), for CompareSteps.
type Step struct {
	// Loss is the step's mean token loss.
	Loss float64
	// GradNorm is the global gradient norm before clipping.
	GradNorm float64
	// LR is the learning rate of the step's update.
	LR float64
	// Tokens is the number of counted tokens.
	Tokens int
}

// CompareSteps compares a run's per-step metrics with the reference
// run's stored under prefix (Run.Key; "" for a method set) in tensors:
// loss within TolLoss, gradient norm within TolGrad (both relative), the
// counted tokens exactly and the learning rate within 1e-7 relative (the golden lrs are float32 copies of Python
// floats). It returns one message per difference, each naming the step;
// a step count other than the run's is a single message.
func CompareSteps(got []Step, r *Run, tensor func(string) ([]float32, []int)) []string {
	if len(got) != r.Steps {
		return []string{fmt.Sprintf("ran %d steps, want %d", len(got), r.Steps)}
	}
	losses, _ := tensor(r.Key("losses"))
	norms, _ := tensor(r.Key("grad_norms"))
	lrs, _ := tensor(r.Key("lrs"))
	var out []string
	for i, h := range got {
		step := i + 1
		if e := math.Abs(h.Loss-float64(losses[i])) / math.Abs(float64(losses[i])); !(e <= TolLoss) {
			out = append(out, fmt.Sprintf("step %d: loss %.8g, PyTorch %.8g (rel err %.2g > %g)", step, h.Loss, losses[i], e, TolLoss))
		}
		if e := math.Abs(h.GradNorm-float64(norms[i])) / float64(norms[i]); !(e <= TolGrad) {
			out = append(out, fmt.Sprintf("step %d: grad norm %.8g, PyTorch %.8g (rel err %.2g > %g)", step, h.GradNorm, norms[i], e, TolGrad))
		}
		if !(math.Abs(h.LR-float64(lrs[i])) <= 1e-7*math.Abs(float64(lrs[i]))+1e-30) {
			out = append(out, fmt.Sprintf("step %d: lr %g, PyTorch %g", step, h.LR, lrs[i]))
		}
		if h.Tokens != r.CountedTokens[i] {
			out = append(out, fmt.Sprintf("step %d: %d counted tokens, PyTorch %d", step, h.Tokens, r.CountedTokens[i]))
		}
	}
	return out
}
