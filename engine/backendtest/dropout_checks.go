package backendtest

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
)

// refDropout is Dropout's reference: element i of x over 1 − p where the
// mask (engine.DropoutKeep, the contract every backend draws from) keeps
// it, else 0.
func refDropout(xv []float64, p float32, seed uint64) []float64 {
	thr := engine.DropoutThreshold(p)
	out := make([]float64, len(xv))
	for i, v := range xv {
		if engine.DropoutKeep(seed, uint64(i), thr) {
			out[i] = v / (1 - float64(p))
		}
	}
	return out
}

// checkDropout covers Dropout: out of place, in place, into BFloat16, a
// size many thread blocks share, and that p = 0 keeps everything.
func checkDropout(h *harness) {
	sizes := append([]int{}, raggedSizes...)
	if !h.short() {
		sizes = append(sizes, 1<<17+5)
	}
	for _, n := range sizes {
		for _, p := range []float32{0, 0.1, 0.5} {
			seed := uint64(n)*0x51ED27 + uint64(math.Float32bits(p))
			x, xv := h.randn("x", 1, n)
			want := refDropout(xv, p, seed)
			out := h.nan("out", n)
			h.b.Dropout(out, x, p, seed)
			h.expect(fmt.Sprintf("Dropout p=%g [%d]", p, n), out, want, h.o.tol())

			h.b.Dropout(x, x, p, seed)
			h.expect(fmt.Sprintf("Dropout p=%g [%d] in place", p, n), x, want, h.o.tol())
			if h.o.SkipBFloat16 {
				continue
			}
			ob := h.alloc("out bf16", engine.BFloat16, n)
			xb, xbv := h.randBF16("x bf16", 1, n)
			h.b.Dropout(ob, xb, p, seed)
			h.expect(fmt.Sprintf("Dropout BF16 p=%g [%d]", p, n), ob, refDropout(xbv, p, seed), bf16Tol)
		}
	}
}
