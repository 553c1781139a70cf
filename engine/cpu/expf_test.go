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
	if worst > 2e-7 {
		t.Errorf("expf worst relative error %.3g > 2e-7", worst)
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

// TestTanhfSigmoidf bounds the float32 tanh and sigmoid against float64
// math over a dense grid, including the switch-over points.
func TestTanhfSigmoidf(t *testing.T) {
	var worstT, worstS float64
	for x := float32(-12); x <= 12; x += 0.0007 {
		want := math.Tanh(float64(x))
		if d := math.Abs(float64(tanhf(x))-want) / math.Max(math.Abs(want), 1e-30); d > worstT {
			worstT = d
		}
		ws := 1 / (1 + math.Exp(-float64(x)))
		if d := math.Abs(float64(sigmoidf(x))-ws) / ws; d > worstS {
			worstS = d
		}
	}
	if worstT > 5e-7 {
		t.Errorf("tanhf worst relative error %.3g > 5e-7", worstT)
	}
	if worstS > 3e-7 {
		t.Errorf("sigmoidf worst relative error %.3g > 3e-7", worstS)
	}
	for _, x := range []float32{-200, 200} {
		if s := sigmoidf(x); s != 0 && s != 1 {
			t.Errorf("sigmoidf(%v) = %v, want 0 or 1", x, s)
		}
	}
	if tanhf(1e-20) != 1e-20 || tanhf(-50) != -1 {
		t.Errorf("tanhf edge values wrong: %v %v", tanhf(1e-20), tanhf(-50))
	}
}

// TestExpInPlace checks the active vector exponential (assembly where
// available) against math.Exp and against expf's contract for special
// values, at lengths that leave every possible tail.
func TestExpInPlace(t *testing.T) {
	special := []float32{0, -100, 100, 88.5, -87.4, float32(math.Inf(1)), float32(math.Inf(-1)), float32(math.NaN()), -87.3, 87.9}
	for n := 0; n <= len(special)+9; n++ {
		x := make([]float32, n)
		for i := range x {
			x[i] = special[i%len(special)]
		}
		y := append([]float32(nil), x...)
		expInPlace(y)
		for i := range x {
			want := expf(x[i])
			if y[i] != want && !(y[i] != y[i] && want != want) {
				if rel := math.Abs(float64(y[i]-want)) / float64(want); !(rel <= 2e-7) {
					t.Errorf("n=%d: exp(%v) = %v, scalar expf gives %v", n, x[i], y[i], want)
				}
			}
		}
	}
	var grid []float32
	for x := float32(-87); x <= 88; x += 0.0013 {
		grid = append(grid, x)
	}
	y := append([]float32(nil), grid...)
	expInPlace(y)
	worst := 0.0
	for i, x := range grid {
		want := math.Exp(float64(x))
		if rel := math.Abs(float64(y[i])-want) / want; rel > worst {
			worst = rel
		}
	}
	if worst > 2e-7 {
		t.Errorf("expInPlace worst relative error %.3g > 2e-7", worst)
	}
}
