package engine

import "math"

// FirstNonFinite returns the index of the first NaN or ±Inf in xs and
// false, or -1 and true when every value is finite. Loaders use it to
// refuse damaged weights by name instead of training on them.
func FirstNonFinite(xs []float32) (int, bool) {
	for i, x := range xs {
		// x-x is 0 for every finite x and NaN for NaN and ±Inf.
		if x-x != 0 {
			return i, false
		}
	}
	return -1, true
}

// NonFinite reports whether v is NaN or ±Inf.
func NonFinite(v float64) bool { return math.IsNaN(v) || math.IsInf(v, 0) }
