package cpu

import (
	"math"

	"github.com/gotune/gotune/engine"
)

// CrossEntropy computes per-row softmax cross-entropy and, when dlogits is
// non-nil, overwrites it with gradScale·(softmax − onehot); see
// engine.Backend. Each row's log-sum-exp subtracts the row maximum and sums
// the (vectorised float32) exponentials in float64; the gradient reuses
// them. dlogits may alias logits: a row is read completely (loss
// included) before any of it is overwritten, and each gradient element
// depends only on the logit at the same place. With softCap the gradient
// is multiplied by the cap's derivative 1 − (y/softCap)², read from the
// same logit before it is overwritten.
func (b *Backend) CrossEntropy(losses, dlogits, logits, labels *engine.Tensor, gradScale, softCap float32) {
	const op = "CrossEntropy"
	rows, vocab := logits.Rows(), logits.Cols()
	check(labels.Len() == rows, op, "labels %v do not match the %d rows of %v", labels, rows, logits)
	check(losses.Len() == rows, op, "losses %v do not match the %d rows of %v", losses, rows, logits)
	sameLen(op, logits.Len(), dlogits)
	lab := i32s(op, labels)
	for i, l := range lab {
		check(int(l) < vocab, op, "labels[%d] = %d outside the %d classes", i, l, vocab)
	}
	xs := read(op, logits)
	ls, doneL := write(op, losses)
	var g []float32
	doneG := func() {}
	if dlogits != nil {
		if logits.DType() == engine.Float32 && dlogits.DType() == engine.Float32 &&
			dlogits.Storage() == logits.Storage() && dlogits.Offset() == logits.Offset() {
			g = xs // in place: the same window
		} else {
			g, doneG = write(op, dlogits)
		}
	}
	parallelFor(rows, vocab*transcendentalCost, func(lo, hi int) {
		e := make([]float32, vocab) // exp(x − max) of one row
		for r := lo; r < hi; r++ {
			xr := xs[r*vocab : (r+1)*vocab]
			label := int(lab[r])
			if label < 0 {
				ls[r] = 0
				if g != nil {
					clear(g[r*vocab : (r+1)*vocab])
				}
				continue
			}
			mx := float32(math.Inf(-1))
			for _, v := range xr {
				mx = max(mx, v)
			}
			sum := expShiftSum(append(e[:0], xr...), mx)
			lse := float64(mx) + math.Log(sum)
			target := xr[label]
			ls[r] = float32(lse - float64(target))
			if g == nil {
				continue
			}
			// softmax = exp(x − max)/Σ, reusing the exponentials.
			gr := g[r*vocab : (r+1)*vocab]
			scale := float64(gradScale) / sum
			if softCap <= 0 {
				for j, p := range e {
					gr[j] = float32(scale * float64(p))
				}
				gr[label] -= gradScale
				continue
			}
			for j, p := range e {
				gr[j] = float32(scale * float64(p) * capSlope(xr[j], softCap))
			}
			gr[label] -= float32(float64(gradScale) * capSlope(target, softCap))
		}
	})
	doneL()
	doneG()
}

// capSlope is the derivative of softCap·tanh(x/softCap) at the x whose
// capped value is y: 1 − (y/softCap)².
func capSlope(y, softCap float32) float64 {
	t := float64(y) / float64(softCap)
	return 1 - t*t
}
