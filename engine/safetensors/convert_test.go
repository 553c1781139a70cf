package safetensors

import (
	"math"
	"testing"
)

// f16Value decodes binary16 bits from the IEEE-754 definition in float64,
// independently of F16ToF32's bit manipulation.
func f16Value(h uint16) float64 {
	sign := 1.0
	if h&0x8000 != 0 {
		sign = -1
	}
	exp := int(h>>10) & 0x1f
	mant := float64(h & 0x3ff)
	switch exp {
	case 0x1f:
		if mant != 0 {
			return math.NaN()
		}
		return math.Inf(int(sign))
	case 0:
		return sign * math.Ldexp(mant, -24)
	default:
		return sign * math.Ldexp(1024+mant, exp-25)
	}
}

func TestF16ToF32Exhaustive(t *testing.T) {
	for i := 0; i < 1<<16; i++ {
		h := uint16(i)
		got := F16ToF32(h)
		want := f16Value(h)
		if math.IsNaN(want) {
			if !math.IsNaN(float64(got)) {
				t.Fatalf("F16ToF32(%#04x) = %v, want NaN", h, got)
			}
			continue
		}
		if float64(got) != want || math.Signbit(float64(got)) != (h&0x8000 != 0) {
			t.Fatalf("F16ToF32(%#04x) = %v, want %v", h, got, want)
		}
	}
}

// checkRounding verifies a narrowing conversion against the definition of
// round-to-nearest-even: for every pair of adjacent finite values a < b of
// the narrow type, the exact midpoint goes to the one with an even
// significand, and the float32 values just below and above it go to a and
// b. decode must be exact; inf is the narrow type's +Inf bits.
func checkRounding(t *testing.T, name string, narrow func(float32) uint16, decode func(uint16) float32, inf uint16) {
	t.Helper()
	for h := uint16(0); h < inf; h++ {
		for _, sign := range []uint16{0, 0x8000} {
			a, b := h|sign, (h+1)|sign
			fa, fb := decode(a), decode(b)
			if got := narrow(fa); got != a {
				t.Fatalf("%s(%v) = %#04x, want %#04x (exact value)", name, fa, got, a)
			}
			var mid float32
			if h+1 == inf { // the midpoint between max finite and the next power
				m := float64(fa) + (float64(fa)-float64(decode(h-1|sign)))/2
				mid = float32(m)
			} else {
				mid = float32((float64(fa) + float64(fb)) / 2)
			}
			even := a
			if h&1 == 1 {
				even = b
			}
			if got := narrow(mid); got != even {
				t.Fatalf("%s(midpoint %v of %#04x,%#04x) = %#04x, want even %#04x", name, mid, a, b, got, even)
			}
			toZero := float32(math.Nextafter32(mid, 0))
			away := float32(math.Nextafter32(mid, mid*2))
			if got := narrow(toZero); got != a {
				t.Fatalf("%s(%v, just below midpoint) = %#04x, want %#04x", name, toZero, got, a)
			}
			if got := narrow(away); got != b {
				t.Fatalf("%s(%v, just above midpoint) = %#04x, want %#04x", name, away, got, b)
			}
		}
	}
	for _, f := range []float32{float32(math.Inf(1)), math.MaxFloat32} {
		if got := narrow(f); got != inf {
			t.Errorf("%s(%v) = %#04x, want +Inf %#04x", name, f, got, inf)
		}
		if got := narrow(-f); got != inf|0x8000 {
			t.Errorf("%s(%v) = %#04x, want -Inf", name, -f, got)
		}
	}
	for _, bits := range []uint32{0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff} {
		nan := math.Float32frombits(bits)
		got := narrow(nan)
		if v := decode(got); !math.IsNaN(float64(v)) {
			t.Errorf("%s(NaN %#08x) = %#04x, not a NaN", name, bits, got)
		}
		if got>>15 != uint16(bits>>31) {
			t.Errorf("%s(NaN %#08x) = %#04x lost the sign", name, bits, got)
		}
	}
}

func TestF32ToF16Rounding(t *testing.T) {
	checkRounding(t, "F32ToF16", F32ToF16, F16ToF32, 0x7c00)
	// Below half the smallest subnormal everything goes to (signed) zero.
	for _, f := range []float32{1e-10, math.SmallestNonzeroFloat32, 1e-38} {
		if got := F32ToF16(f); got != 0 {
			t.Errorf("F32ToF16(%v) = %#04x, want 0", f, got)
		}
		if got := F32ToF16(-f); got != 0x8000 {
			t.Errorf("F32ToF16(%v) = %#04x, want -0", -f, got)
		}
	}
}

func TestF32ToBF16Rounding(t *testing.T) {
	checkRounding(t, "F32ToBF16", F32ToBF16, BF16ToF32, 0x7f80)
}
