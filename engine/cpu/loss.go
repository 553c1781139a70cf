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
// depends only on the logit at the same place.
func (b *Backend) CrossEntropy(losses, dlogits, logits, labels *engine.Tensor, gradScale float32) {
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
			ls[r] = float32(lse - float64(xr[label]))
			if g == nil {
				continue
			}
			// softmax = exp(x − max)/Σ, reusing the exponentials.
			gr := g[r*vocab : (r+1)*vocab]
			scale := float64(gradScale) / sum
			for j, p := range e {
				gr[j] = float32(scale * float64(p))
			}
			gr[label] -= gradScale
		}
	})
	doneL()
	doneG()
}
