package cpu

import "math"

// expf is a float32 exponential for the softmax inner loops of attention,
// about three times cheaper than float64 math.Exp: range reduction
// x = n·ln2 + r with |r| <= ln2/2, a degree-7 Taylor polynomial for e^r
// (truncation error < 1e-8 relative), and 2^n assembled in the exponent
// bits. Its error is a few float32 ulps (see TestExpf). Inputs below
// -87.3 give 0 (results would be subnormal: irrelevant next to the row
// maximum's e^0 = 1), inputs above 88 give +Inf (true values there are
// >= 1.6e38: only a sigmoid of a hugely negative input gets them, where
// 1/(1+Inf) = 0 is the right float32 answer anyway), NaN stays NaN.
func expf(x float32) float32 {
	if !(x >= -87.33654) { // also catches NaN
		if x != x {
			return x
		}
		return 0
	}
	if x > 88 {
		return float32(math.Inf(1))
	}
	const (
		log2e = 1.44269504088896341
		ln2hi = 0.693359375 // ln2 split so n·ln2hi is exact in float32
		ln2lo = -2.12194440e-4
		round = 12582912 // 1.5·2^23: adding and subtracting rounds to an integer
	)
	t := x * log2e
	n := (t + round) - round
	r := x - n*ln2hi - n*ln2lo
	p := 1 + r*(1+r*(0.5+r*(1.0/6+r*(1.0/24+r*(1.0/120+r*(1.0/720+r*(1.0/5040)))))))
	return p * math.Float32frombits(uint32(int32(n)+127)<<23)
}

// expInPlace replaces every x[i] by expf(x[i]); assembly replaces it at
// init on CPUs that support it.
var expInPlace = expInPlaceGo

func expInPlaceGo(x []float32) {
	for i, v := range x {
		x[i] = expf(v)
	}
}

// expShiftSum replaces row[j] by exp(row[j] − shift) and returns the sum of
// the results, accumulated in float64.
func expShiftSum(row []float32, shift float32) float64 {
	for j := range row {
		row[j] -= shift
	}
	expInPlace(row)
	var s0, s1 float64
	j := 0
	for ; j+2 <= len(row); j += 2 {
		s0 += float64(row[j])
		s1 += float64(row[j+1])
	}
	if j < len(row) {
		s0 += float64(row[j])
	}
	return s0 + s1
}
