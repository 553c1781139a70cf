package backendtest

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
)

// checkCrossEntropy covers losses with ignored rows, a separate NaN-filled
// dlogits, no dlogits, and dlogits aliasing logits, without and with a
// soft cap.
func checkCrossEntropy(h *harness) {
	for _, softCap := range []float32{0, 30} {
		for _, s := range [][2]int{{1, 1}, {1, 5}, {3, 17}, {17, 33}, {33, 257}, {5, 1031}} {
			checkCrossEntropyCase(h, s[0], s[1], softCap)
		}
	}
}

func checkCrossEntropyCase(h *harness, n, vocab int, softCap float32) {
	labels := make([]int32, n)
	for i := range labels {
		labels[i] = int32(h.rng.IntN(vocab))
		if i%3 == 1 {
			labels[i] = -100 // ignored
		}
	}
	lt := h.ints("labels", labels, n)
	// Large logits: the log-sum-exp must subtract the row maximum.
	logits, lv := h.randn("logits", 4, n, vocab)
	for _, i := range []int{0, len(lv) - 1} {
		lv[i] += 80
	}
	if softCap > 0 {
		lv = refSoftCap(lv, float64(softCap)) // logits as the caller capped them
	}
	h.b.Upload(logits, toF32(lv))
	lv = h.download(logits)
	const scale = 0.37
	rl, rg := refCrossEntropy(lv, labels, vocab, scale, float64(softCap))
	what := fmt.Sprintf("CrossEntropy N=%d V=%d softCap=%v", n, vocab, softCap)

	losses, dl := h.nan("losses", n), h.nan("dlogits", n, vocab)
	h.b.CrossEntropy(losses, dl, logits, lt, scale, softCap)
	h.expect(what+" losses", losses, rl, h.o.tol())
	h.expect(what+" dlogits", dl, rg, h.o.tol())

	losses = h.nan("losses", n)
	h.b.CrossEntropy(losses, nil, logits, lt, scale, softCap)
	h.expect(what+" losses (no dlogits)", losses, rl, h.o.tol())

	losses = h.nan("losses", n)
	h.b.CrossEntropy(losses, logits, logits, lt, scale, softCap)
	h.expect(what+" losses (in place)", losses, rl, h.o.tol())
	h.expect(what+" dlogits (in place)", logits, rg, h.o.tol())
}

// checkAdamW runs three AdamW steps with weight decay against the float64
// evaluation of torch.optim.AdamW's algorithm.
func checkAdamW(h *harness) {
	for _, n := range []int{1, 17, 1031} {
		hp := engine.AdamWParams{LR: 1e-2, Beta1: 0.9, Beta2: 0.95, Eps: 1e-8, WeightDecay: 0.1}
		p, pv := h.randn("param", 1, n)
		p0 := append([]float64(nil), pv...)
		m, v := h.tensor("m", make([]float64, n), n), h.tensor("v", make([]float64, n), n)
		mv, vv := make([]float64, n), make([]float64, n)
		for step := 1; step <= 3; step++ {
			g, gv := h.randn("grad", 1, n)
			hp.Step = step
			h.b.AdamW(p, g, m, v, hp)
			// The hyper-parameters are float32 in AdamWParams; use exactly
			// those values in the reference.
			refAdamW(pv, gv, mv, vv, float64(hp.LR), float64(hp.Beta1), float64(hp.Beta2), float64(hp.Eps), float64(hp.WeightDecay), step)
			what := fmt.Sprintf("AdamW [%d] step %d", n, step)
			h.expect(what+" m", m, mv, h.o.tol())
			h.expect(what+" v", v, vv, h.o.tol())
			got := h.download(p)
			h.expectVals(what+" param", got, pv, h.o.tol())
			// The update itself is ~1e-2 of the parameter, so float32
			// rounding of p (relative 6e-8) is up to ~1e-5 of the update;
			// hold the update to 1e-4 relative.
			du, dr := make([]float64, n), make([]float64, n)
			for i := range got {
				du[i], dr[i] = got[i]-p0[i], pv[i]-p0[i]
			}
			h.expectVals(what+" update p-p0", du, dr, math.Max(1e-4, h.o.tol()))
		}
	}
}
