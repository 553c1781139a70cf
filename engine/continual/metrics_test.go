package continual

import (
	"math"
	"testing"

	"github.com/stretchr/testify/assert"
)

func TestScore(t *testing.T) {
	nan := math.NaN()
	tests := []struct {
		name string
		acc  [][]float64
		want Scores
	}{
		{
			// avg (0.4+0.6+0.7)/3; bwt ((0.4−0.8)+(0.6−0.9))/2;
			// forgetting ((0.8−0.4)+(0.9−0.6))/2.
			name: "three tasks",
			acc:  [][]float64{{0.8, 0.1, 0}, {0.5, 0.9, 0.2}, {0.4, 0.6, 0.7}},
			want: Scores{AvgAcc: 1.7 / 3, BWT: -0.35, Forgetting: 0.35},
		},
		{
			// The best earlier accuracy is not the diagonal one: task 0
			// improves after task 1 (positive transfer), then drops.
			name: "best before the end",
			acc:  [][]float64{{0.5, 0, 0}, {0.9, 0.6, 0}, {0.7, 0.7, 0.3}},
			want: Scores{AvgAcc: 1.7 / 3, BWT: (0.2 + 0.1) / 2, Forgetting: (0.2 + -0.1) / 2},
		},
		{
			name: "a loss-only task is left out",
			acc:  [][]float64{{0.6, nan}, {0.2, nan}},
			want: Scores{AvgAcc: 0.2, BWT: -0.4, Forgetting: 0.4},
		},
		{
			name: "one task has no transfer",
			acc:  [][]float64{{0.75}},
			want: Scores{AvgAcc: 0.75, BWT: nan, Forgetting: nan},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got := Score(tc.acc)
			for _, c := range []struct {
				what      string
				got, want float64
			}{{"avg_acc", got.AvgAcc, tc.want.AvgAcc}, {"bwt", got.BWT, tc.want.BWT}, {"forgetting", got.Forgetting, tc.want.Forgetting}} {
				if math.IsNaN(c.want) {
					assert.True(t, math.IsNaN(c.got), "%s = %v, want NaN", c.what, c.got)
				} else {
					assert.InDelta(t, c.want, c.got, 1e-12, c.what)
				}
			}
		})
	}
}
