package safetensors

import "math"

// The float16/bfloat16 conversions below are written from the IEEE-754
// definitions. Narrowing conversions round to nearest, ties to even (what
// torch's .half() and .bfloat16() do); NaN stays NaN (quiet), and values too
// large for the target become ±Inf.

// F16ToF32 converts IEEE-754 binary16 bits to a float32 (exactly: every
// binary16 value is representable in binary32).
func F16ToF32(h uint16) float32 {
	sign := uint32(h>>15) << 31
	exp := uint32(h>>10) & 0x1f
	mant := uint32(h) & 0x3ff
	switch {
	case exp == 0x1f: // Inf or NaN; keep the payload bits.
		return math.Float32frombits(sign | 0x7f800000 | mant<<13)
	case exp != 0: // normal: rebias the exponent from 15 to 127.
		return math.Float32frombits(sign | (exp+127-15)<<23 | mant<<13)
	case mant == 0:
		return math.Float32frombits(sign)
	default: // subnormal: mant·2^-24, exact in float32.
		v := float32(mant) * (1.0 / (1 << 24))
		return math.Float32frombits(sign | math.Float32bits(v))
	}
}

// F32ToF16 converts a float32 to IEEE-754 binary16 bits, rounding to
// nearest with ties to even.
func F32ToF16(f float32) uint16 {
	b := math.Float32bits(f)
	sign := uint16(b>>16) & 0x8000
	exp := int32(b>>23) & 0xff
	mant := b & 0x7fffff
	if exp == 0xff {
		if mant == 0 {
			return sign | 0x7c00
		}
		// NaN: the canonical quiet NaN with the sign kept, as torch does
		// (truncating the payload could otherwise turn a NaN into Inf).
		return sign | 0x7e00
	}
	e := exp - 127 + 15 // binary16 biased exponent
	if e >= 0x1f {
		return sign | 0x7c00 // overflow
	}
	if e <= 0 {
		// Result is subnormal (or zero). The value is m·2^(exp-150) with m
		// the 24-bit significand (implicit bit included); in units of the
		// binary16 subnormal step 2^-24 that is m >> (126-exp).
		if e < -10 {
			// Below half the smallest subnormal: rounds to zero. (At exactly
			// e == -10 the value lies in [2^-25, 2^-24) and may round up.)
			return sign
		}
		m := mant | 0x800000
		shift := uint32(14 - e) // = 126 - exp, in 14..24
		half := uint32(1) << (shift - 1)
		q := m >> shift
		rem := m & (1<<shift - 1)
		if rem > half || (rem == half && q&1 == 1) {
			q++ // may carry into the smallest normal, which is correct
		}
		return sign | uint16(q)
	}
	// Normal: drop 13 mantissa bits with round-to-nearest-even. A carry out
	// of the mantissa correctly bumps the exponent (up to Inf).
	v := uint32(e)<<10 | mant>>13
	rem := mant & 0x1fff
	if rem > 0x1000 || (rem == 0x1000 && v&1 == 1) {
		v++
	}
	return sign | uint16(v)
}

// BF16ToF32 converts bfloat16 bits (the top half of a float32) to float32.
func BF16ToF32(h uint16) float32 {
	return math.Float32frombits(uint32(h) << 16)
}

// F32ToBF16 converts a float32 to bfloat16 bits, rounding to nearest with
// ties to even; NaN becomes a quiet NaN of the same sign (never Inf, which
// plain truncation of a low-payload NaN would give).
func F32ToBF16(f float32) uint16 {
	b := math.Float32bits(f)
	if b&0x7fffffff > 0x7f800000 {
		return uint16(b>>16) | 0x0040
	}
	// Adding 0x7fff plus the lowest kept bit rounds half to even; overflow
	// of the largest finite values correctly produces Inf.
	b += 0x7fff + (b>>16)&1
	return uint16(b >> 16)
}
