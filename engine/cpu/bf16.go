package cpu

import "math"

// f32ToBF16Bits rounds a float32 to bfloat16 with round-to-nearest-even.
// NaNs stay NaNs (the quiet bit is forced so truncating the mantissa cannot
// turn a NaN into an infinity); infinities and overflow round to ±Inf as
// IEEE rounding demands.
func f32ToBF16Bits(f float32) uint16 {
	bits := math.Float32bits(f)
	if bits&0x7fffffff > 0x7f800000 {
		return uint16(bits>>16) | 0x0040
	}
	bias := uint32(0x7fff) + (bits>>16)&1
	return uint16((bits + bias) >> 16)
}

// bf16BitsToF32 widens a bfloat16 exactly.
func bf16BitsToF32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// f32ToBF16 converts src into dst (same length), in parallel for big inputs.
func f32ToBF16(dst []uint16, src []float32) {
	parallelFor(len(src), 1, func(lo, hi int) {
		d, s := dst[lo:hi], src[lo:hi]
		for i, f := range s {
			d[i] = f32ToBF16Bits(f)
		}
	})
}

// bf16ToF32 converts src into dst (same length), in parallel for big inputs.
func bf16ToF32(dst []float32, src []uint16) {
	parallelFor(len(src), 1, func(lo, hi int) {
		d, s := dst[lo:hi], src[lo:hi]
		for i, h := range s {
			d[i] = bf16BitsToF32(h)
		}
	})
}

// bf16ToF32Serial converts src into dst on the calling goroutine (for use
// inside parallel loops).
func bf16ToF32Serial(dst []float32, src []uint16) {
	dst = dst[:len(src)]
	for i, h := range src {
		dst[i] = bf16BitsToF32(h)
	}
}

// roundBF16InPlace rounds every element of x to the nearest bfloat16 (kept
// as float32): the rounding points of bfloat16 attention.
func roundBF16InPlace(x []float32) {
	for i, f := range x {
		x[i] = bf16BitsToF32(f32ToBF16Bits(f))
	}
}
