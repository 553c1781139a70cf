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
