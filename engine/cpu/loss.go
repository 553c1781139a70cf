package cpu

import (
	"math"

	"github.com/gotune/gotune/engine"
)

// CrossEntropy computes per-row softmax cross-entropy and, when dlogits is
// non-nil, overwrites it with gradScale·(softmax − onehot); see
// engine.Backend. Each row's log-sum-exp subtracts the row maximum and sums
// in float64. dlogits may alias logits: a row is read completely (loss
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
		if dlogits == logits || (dlogits.Storage() == logits.Storage() && dlogits.Offset() == logits.Offset() && logits.DType() == engine.Float32) {
			g = xs // in place: the same window
		} else {
			g, doneG = write(op, dlogits)
		}
	}
	parallelFor(rows, vocab*transcendentalCost/2, func(lo, hi int) {
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
			var sum float64
			for _, v := range xr {
				sum += math.Exp(float64(v - mx))
			}
			lse := float64(mx) + math.Log(sum)
			ls[r] = float32(lse - float64(xr[label]))
			if g == nil {
				continue
			}
			gr := g[r*vocab : (r+1)*vocab]
			scale := float64(gradScale)
			for j, v := range xr {
				gr[j] = float32(scale * math.Exp(float64(v)-lse))
			}
			gr[label] -= gradScale
		}
	})
	doneL()
	doneG()
}
