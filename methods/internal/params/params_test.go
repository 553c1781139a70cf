package params

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/methods/internal/methodtest"
)

// TestRelDiff checks ‖a − b‖ / ‖b‖ on values worked out by hand, and
// the absolute distance when b is zero.
func TestRelDiff(t *testing.T) {
	tests := []struct {
		a, b []float32
		want float64
	}{
		{[]float32{1, 2}, []float32{1, 2}, 0},
		{[]float32{3, 4}, []float32{0, 0}, 5},            // ‖(3, 4)‖
		{[]float32{1, 0}, []float32{0, 1}, math.Sqrt(2)}, // √2 / 1
		{[]float32{6, 8}, []float32{3, 4}, 1},            // 5 / 5
		{[]float32{2, 2, 1}, []float32{2, 0, 1}, 2 / math.Sqrt(5)},
	}
	for _, tc := range tests {
		if got := RelDiff(tc.a, tc.b); math.Abs(got-tc.want) > 1e-12 {
			t.Errorf("RelDiff(%v, %v) = %v, want %v", tc.a, tc.b, got, tc.want)
		}
	}
}

// TestInitialValues checks that Uniform stays within its bound and that
// both draws have roughly the moments they promise (U(±b): variance
// b²/3; N(0, s²): variance s²), with a sample large enough that a wrong
// scale fails by far.
func TestInitialValues(t *testing.T) {
	const n = 20000
	rng := rand.New(rand.NewPCG(1, 2))
	moments := func(x []float32) (mean, variance float64) {
		for _, v := range x {
			mean += float64(v)
		}
		mean /= float64(len(x))
		for _, v := range x {
			variance += (float64(v) - mean) * (float64(v) - mean)
		}
		return mean, variance / float64(len(x))
	}
	u := Uniform(rng, n, 0.5)
	for i, v := range u {
		if v < -0.5 || v > 0.5 {
			t.Fatalf("Uniform(0.5)[%d] = %v", i, v)
		}
	}
	if m, v := moments(u); math.Abs(m) > 0.02 || math.Abs(v-0.25/3)/(0.25/3) > 0.05 {
		t.Errorf("Uniform(0.5): mean %v, variance %v, want 0 and %v", m, v, 0.25/3)
	}
	if m, v := moments(Normal(rng, n, 2)); math.Abs(m) > 0.1 || math.Abs(v-4)/4 > 0.05 {
		t.Errorf("Normal(2): mean %v, variance %v, want 0 and 4", m, v)
	}
}

// TestSnapshotRestore checks that Restore puts back the flags (and
// gradient buffers) that freezing a whole model changed, as a failed
// installation must.
func TestSnapshotRestore(t *testing.T) {
	m := methodtest.Tiny(t, hfconfig.ArchLlama, 1)
	ps := m.Params()
	SetTrainable(ps[1:], false) // a mixed state: only the first trains
	s := Snapshot(m)
	SetTrainable(ps, false)
	if ps[0].Trainable || ps[0].G != nil {
		t.Fatal("SetTrainable(false) left a parameter trainable or with a gradient")
	}
	s.Restore()
	for i, p := range ps {
		if want := i == 0; p.Trainable != want || (p.G != nil) != want {
			t.Errorf("%s: trainable %v with gradient %v after Restore, want %v", p.Name, p.Trainable, p.G != nil, want)
		}
	}
}
