package cpu

import (
	"math"
	"testing"
)

// TestExpf bounds expf's relative error against math.Exp over the range
// softmax uses, plus the special cases.
func TestExpf(t *testing.T) {
	worst := 0.0
	for x := float32(-87); x <= 88; x += 0.001 {
		want := math.Exp(float64(x))
		got := float64(expf(x))
		if rel := math.Abs(got-want) / want; rel > worst {
			worst = rel
		}
	}
	if worst > 5e-7 {
		t.Errorf("expf worst relative error %.3g > 5e-7", worst)
	}
	cases := []struct{ in, want float32 }{
		{0, 1}, {-100, 0}, {float32(math.Inf(-1)), 0}, {float32(math.Inf(1)), float32(math.Inf(1))},
	}
	for _, c := range cases {
		if got := expf(c.in); got != c.want {
			t.Errorf("expf(%v) = %v, want %v", c.in, got, c.want)
		}
	}
	if got := expf(float32(math.NaN())); got == got {
		t.Errorf("expf(NaN) = %v, want NaN", got)
	}
}
