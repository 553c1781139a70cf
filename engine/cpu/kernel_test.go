package cpu

import (
	"math"
	"testing"

	"github.com/gotune/gotune/engine/backendtest"
)

// TestPortableKernel runs the conformance suite with the pure-Go gemm
// micro-kernel, dot and axpy forced, so the fallbacks stay correct on
// machines whose CPUs select the assembly versions (TestConformance covers
// whichever is active).
func TestPortableKernel(t *testing.T) {
	if activeKernel.mr == goKernel.mr && activeKernel.nr == goKernel.nr {
		t.Skip("the portable kernels are already the active ones (TestConformance covers them)")
	}
	savedK, savedDot, savedAxpy, savedExp := activeKernel, dot, axpy, expInPlace
	savedGF, savedGB := geluForward, geluBackward
	activeKernel, dot, axpy, expInPlace = goKernel, dotGo, axpyGo, expInPlaceGo
	geluForward, geluBackward = geluForwardGo, geluBackwardGo
	defer func() {
		activeKernel, dot, axpy, expInPlace = savedK, savedDot, savedAxpy, savedExp
		geluForward, geluBackward = savedGF, savedGB
	}()
	backendtest.Run(t, New(), backendtest.Options{Short: true})
}

// TestVectorKernels compares the active dot/axpy (assembly where
// available) with the portable versions at every tail length.
func TestVectorKernels(t *testing.T) {
	for n := 0; n <= 70; n++ {
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i] = float32(i%7) - 2.5
			b[i] = float32(i%5)*0.25 + 1
		}
		if got, want := dot(a, b), dotGo(a, b); math.Abs(float64(got-want)) > 1e-4*(1+math.Abs(float64(want))) {
			t.Errorf("dot n=%d: %v, portable %v", n, got, want)
		}
		y1, y2 := append([]float32(nil), b...), append([]float32(nil), b...)
		axpy(y1, a, -1.5)
		axpyGo(y2, a, -1.5)
		for i := range y1 {
			if y1[i] != y2[i] {
				t.Errorf("axpy n=%d element %d: %v, portable %v", n, i, y1[i], y2[i])
				break
			}
		}
	}
}
