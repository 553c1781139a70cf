package continual

import "math"

// Scores are the standard summaries of an accuracy matrix acc[i][j]
// (accuracy on task j after training task i, T×T). Entries that are NaN
// (tasks scored by loss, without answers) are left out of every mean; a
// summary with nothing to average is NaN.
type Scores struct {
	// AvgAcc is the mean of the last row: accuracy on every task at the end.
	AvgAcc float64
	// BWT (backward transfer) is the mean over j < T−1 of
	// acc[T−1][j] − acc[j][j]: negative when learning later tasks made
	// earlier ones worse.
	BWT float64
	// Forgetting is the mean over j < T−1 of the best accuracy on task j
	// before the last task (max over i < T−1 of acc[i][j], Chaudhry et
	// al. 2018) minus the final acc[T−1][j].
	Forgetting float64
}

// Score computes the summaries of a square accuracy matrix.
func Score(acc [][]float64) Scores {
	t := len(acc)
	if t == 0 {
		return Scores{AvgAcc: math.NaN(), BWT: math.NaN(), Forgetting: math.NaN()}
	}
	last := acc[t-1]
	var avg, bwt, forget mean
	for j := range last {
		avg.add(last[j])
	}
	for j := 0; j < t-1; j++ {
		bwt.add(last[j] - acc[j][j])
		best := math.NaN()
		for i := 0; i < t-1; i++ {
			if !math.IsNaN(acc[i][j]) && (math.IsNaN(best) || acc[i][j] > best) {
				best = acc[i][j]
			}
		}
		forget.add(best - last[j])
	}
	return Scores{AvgAcc: avg.value(), BWT: bwt.value(), Forgetting: forget.value()}
}

// mean averages the finite values it is given.
type mean struct {
	sum float64
	n   int
}

func (m *mean) add(v float64) {
	if !math.IsNaN(v) {
		m.sum += v
		m.n++
	}
}

func (m *mean) value() float64 {
	if m.n == 0 {
		return math.NaN()
	}
	return m.sum / float64(m.n)
}
