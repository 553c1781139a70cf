package quant

// Code books and nearest-code searches with bitsandbytes' semantics
// (csrc/kernels.cu: dQuantizeNF4, dQuantizeFP4, dQuantize<0>;
// functional.py: get_4bit_type, create_dynamic_map). Every comparison is
// a float32 comparison against float32 constants, as in the CUDA kernels,
// so the codes chosen are bit-identical to bitsandbytes' on every input.

// NF4Code is the 4-bit NormalFloat code book of the QLoRA paper (Dettmers
// et al. 2023, appendix E), indexed by code: the quantiles of N(0, 1)
// normalised to [-1, 1], with an exact zero.
var NF4Code = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// nf4Thresholds are bitsandbytes' decision thresholds between adjacent
// NF4 codes (the midpoints, as float32 literals): code i+1 is chosen when
// x > nf4Thresholds[i], so a value exactly on a midpoint takes the lower
// code.
var nf4Thresholds = [15]float32{
	-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
	-0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
	0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
	0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
}

// quantizeNF4 returns the NF4 code of a normalised value. A NaN (0/0 in an
// all-zero block) compares false everywhere and gets code 0, as in
// bitsandbytes' decision tree.
func quantizeNF4(x float32) byte {
	var q byte
	for _, t := range nf4Thresholds {
		if x > t {
			q++
		} else {
			break
		}
	}
	return q
}

// fp4Magnitudes are the magnitudes of bitsandbytes' FP4 (e2m1 with a
// subnormal, normalised by its largest value 12) by the code's low three
// bits; bit 3 is the sign.
var fp4Magnitudes = [8]float32{0, 0.0052083333333, 0.66666667, 1.0, 0.33333333, 0.5, 0.16666667, 0.25}

// FP4Code is bitsandbytes' FP4 code book indexed by code (codes 8-15 are
// the negatives of 0-7; code 8 is -0).
var FP4Code = func() [16]float32 {
	var c [16]float32
	for i, m := range fp4Magnitudes {
		c[i], c[i+8] = m, -m
	}
	return c
}()

// fp4Thresholds are bitsandbytes' dQuantizeFP4 pivots on |x| (float32
// literals, the midpoints of adjacent magnitudes in increasing order) and
// fp4ByRank the code of each magnitude rank: the decision tree flattened.
var (
	fp4Thresholds = [7]float32{0.00260417, 0.0859375, 0.20833333, 0.29166667, 0.4166667, 0.583333, 0.8333333}
	fp4ByRank     = [8]byte{0, 1, 6, 7, 4, 5, 2, 3}
)

// quantizeFP4 returns the FP4 code of a normalised value: the sign bit
// from x < 0, then the magnitude's rank among the thresholds (a value on
// a threshold takes the smaller magnitude; NaN ranks 0, as in the tree).
func quantizeFP4(x float32) byte {
	var sign byte
	if x < 0 {
		sign = 8
		x = -x
	}
	rank := 0
	for rank < len(fp4Thresholds) && x > fp4Thresholds[rank] {
		rank++
	}
	return fp4ByRank[rank] + sign
}

// Int8Code is the code book of row-wise absmax int8: code q (a byte read
// as int8) stands for q/127 of the row's absmax.
var Int8Code = func() [256]float32 {
	var c [256]float32
	for q := range c {
		c[q] = float32(int8(uint8(q))) / 127
	}
	return c
}()

// DynamicMap is bitsandbytes' signed dynamic 8-bit map
// (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)),
// the code book of the double-quantised absmax: for each exponent
// 10^(i-6), i = 0..6, the 2^i midpoints of linspace(0.1, 1, 2^i+1) and
// their negatives, plus 0 and 1, sorted.
//
// Each entry is computed in float64 and rounded once to float32.
// bitsandbytes builds the map with float32 torch.linspace, whose last
// bit depends on PyTorch's build (vector width, FMA contraction): on the
// development machine 90 of its 256 entries differ from these by one
// float32 unit (at most 1.2e-7 relative). A checkpoint quantised by
// bitsandbytes carries its own map (nested_quant_map), which is used as
// stored.
func DynamicMap() [256]float32 {
	lo, hi := 0.1, 1.0
	var data []float32
	for i := 0; i < 7; i++ {
		n := (1 << i) + 1
		b := make([]float64, n)
		for j := range b {
			b[j] = lo + float64((hi-lo)*float64(j))/float64(n-1)
		}
		scale := pow10(i - 6)
		for j := 0; j+1 < n; j++ {
			data = append(data, float32(scale*float64((b[j]+b[j+1])/2)))
		}
		for j := 0; j+1 < n; j++ {
			data = append(data, float32(-scale*float64((b[j]+b[j+1])/2)))
		}
	}
	data = append(data, 0, 1)
	var out [256]float32
	copy(out[:], data)
	sortFloat32(out[:])
	return out
}

// pow10 is 10^e for -6 <= e <= 0, as Python's 10.0 ** e gives it.
func pow10(e int) float64 {
	return [...]float64{1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1}[e+6]
}

// sortFloat32 sorts ascending (insertion sort: 256 elements, once).
func sortFloat32(v []float32) {
	for i := 1; i < len(v); i++ {
		for j := i; j > 0 && v[j] < v[j-1]; j-- {
			v[j], v[j-1] = v[j-1], v[j]
		}
	}
}

// quantizeDynamic returns the index of code's nearest entry to x with
// bitsandbytes' dQuantize<0>: a 7-step binary search from index 127, then
// the pivot or its neighbour across the float32 midpoint (ties keep the
// pivot). code must be sorted ascending with 256 entries.
func quantizeDynamic(code *[256]float32, x float32) byte {
	pivot, upperPivot, lowerPivot := 127, 255, 0
	lower, upper := float32(-1), float32(1)
	val := code[pivot]
	for i := 64; i > 0; i >>= 1 {
		if x > val {
			lowerPivot, lower = pivot, val
			pivot += i
		} else {
			upperPivot, upper = pivot, val
			pivot -= i
		}
		val = code[pivot]
	}
	if upperPivot == 255 {
		upper = code[upperPivot]
	}
	if lowerPivot == 0 {
		lower = code[lowerPivot]
	}
	if x > val {
		if x > float32((upper+val)*0.5) {
			return byte(upperPivot)
		}
		return byte(pivot)
	}
	if x < float32((lower+val)*0.5) {
		return byte(lowerPivot)
	}
	return byte(pivot)
}
