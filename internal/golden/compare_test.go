package golden

import (
	"strings"
	"testing"
)

func TestCompareAfter(t *testing.T) {
	const lr, steps, norm = 0.01, 3, 1.0
	want := []float32{1, 2, 3, 4}
	grad := []float32{0.5, 0.5, 1e-9, 0.5} // element 2 is negligible
	for _, tc := range []struct {
		name   string
		got    []float32
		grad   []float32
		bad    string // substring of the failure, "" to pass
		masked int
	}{
		{name: "equal", got: []float32{1, 2, 3, 4}, grad: grad, masked: 1},
		{name: "within tolerance", got: []float32{1, 2, 3, 4.0001}, grad: grad, masked: 1},
		{name: "off", got: []float32{1, 2.01, 3, 4}, grad: grad, bad: "rel err"},
		{name: "negligible within bound", got: []float32{1, 2, 3.05, 4}, grad: grad, masked: 1},
		{name: "negligible beyond bound", got: []float32{1, 2, 3.2, 4}, grad: grad, bad: "element 2"},
		{name: "strict without grad", got: []float32{1, 2, 3.05, 4}, bad: "rel err"},
		{name: "length", got: []float32{1, 2, 3}, grad: grad, bad: "3 values"},
		{name: "nan", got: []float32{1, 2, 3, nan()}, grad: grad, bad: "rel err"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msg, masked := CompareAfter(tc.got, want, tc.grad, norm, lr, steps)
			if tc.bad == "" {
				if msg != "" || masked != tc.masked {
					t.Errorf("got %q, %d masked; want a pass with %d masked", msg, masked, tc.masked)
				}
				return
			}
			if !strings.Contains(msg, tc.bad) {
				t.Errorf("got %q, want a failure mentioning %q", msg, tc.bad)
			}
		})
	}
}

func nan() float32 {
	var z float32
	return z / z
}

func TestCompareSteps(t *testing.T) {
	r := &Run{Steps: 2, CountedTokens: []int{10, 12}}
	ref := map[string][]float32{"losses": {2, 1.5}, "grad_norms": {3, 2}, "lrs": {1e-3, 5e-4}}
	tensor := func(n string) ([]float32, []int) { return ref[n], nil }
	good := func() []Step {
		return []Step{{Loss: 2, GradNorm: 3, LR: float64(float32(1e-3)), Tokens: 10}, {Loss: 1.5, GradNorm: 2, LR: float64(float32(5e-4)), Tokens: 12}}
	}
	for _, tc := range []struct {
		name string
		edit func(s []Step) []Step
		bad  string // substring of the only message, "" to pass
	}{
		{"equal", func(s []Step) []Step { return s }, ""},
		{"loss within tolerance", func(s []Step) []Step { s[1].Loss *= 1 + 1e-6; return s }, ""},
		{"loss off", func(s []Step) []Step { s[1].Loss *= 1 + 1e-4; return s }, "step 2: loss"},
		{"loss NaN", func(s []Step) []Step { s[0].Loss = float64(nan()); return s }, "step 1: loss"},
		{"norm off", func(s []Step) []Step { s[0].GradNorm *= 1.001; return s }, "step 1: grad norm"},
		{"lr off", func(s []Step) []Step { s[1].LR = 6e-4; return s }, "step 2: lr"},
		{"tokens", func(s []Step) []Step { s[0].Tokens = 11; return s }, "step 1: 11 counted tokens, PyTorch 10"},
		{"step count", func(s []Step) []Step { return s[:1] }, "ran 1 steps, want 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			msgs := CompareSteps(tc.edit(good()), r, tensor)
			if tc.bad == "" {
				if len(msgs) != 0 {
					t.Errorf("got %q, want a pass", msgs)
				}
				return
			}
			if len(msgs) != 1 || !strings.Contains(msgs[0], tc.bad) {
				t.Errorf("got %q, want one failure mentioning %q", msgs, tc.bad)
			}
		})
	}
}
