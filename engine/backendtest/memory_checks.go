package backendtest

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
)

// raggedSizes are element counts that straddle every plausible vector width
// and tile size.
var raggedSizes = []int{1, 3, 17, 33, 65, 257, 1031}

// checkMemory covers Alloc, Upload/Download, the Int32 variants, Fill,
// Copy and Free for Float32 and Int32.
func checkMemory(h *harness) {
	for _, n := range raggedSizes {
		z := h.b.Alloc(engine.Float32, n)
		h.expect(fmt.Sprintf("Alloc F32 [%d] is zero", n), z, make([]float64, n), 0)
		zi := h.b.Alloc(engine.Int32, n)
		for i, v := range h.b.DownloadInt32(zi) {
			if v != 0 {
				h.t.Errorf("Alloc I32 [%d]: element %d = %d, want 0", n, i, v)
				break
			}
		}
		h.b.Free(z)
		h.b.Free(zi)

		x, xv := h.randn("x", 1, n)
		h.expect(fmt.Sprintf("Upload/Download F32 [%d]", n), x, xv, 0) // exact

		ids := make([]int32, n)
		for i := range ids {
			ids[i] = int32(h.rng.Uint32()) // the full int32 range, negatives included
		}
		it := h.ints("ids", ids, n)
		got := h.b.DownloadInt32(it)
		for i := range ids {
			if got[i] != ids[i] {
				h.t.Errorf("Upload/DownloadInt32 [%d]: element %d = %d, want %d", n, i, got[i], ids[i])
				break
			}
		}

		f := h.nan("fill", n)
		h.b.Fill(f, -2.5)
		want := make([]float64, n)
		for i := range want {
			want[i] = -2.5
		}
		h.expect(fmt.Sprintf("Fill F32 [%d]", n), f, want, 0)

		dst := h.nan("copy dst", n)
		h.b.Copy(dst, x)
		h.expect(fmt.Sprintf("Copy F32 [%d]", n), dst, xv, 0)

		idst := h.ints("copy dst I32", make([]int32, n), n)
		h.b.Copy(idst, it)
		got = h.b.DownloadInt32(idst)
		for i := range ids {
			if got[i] != ids[i] {
				h.t.Errorf("Copy I32 [%d]: element %d = %d, want %d", n, i, got[i], ids[i])
				break
			}
		}
	}
	// Copy between different shapes with the same element count.
	x, xv := h.randn("x", 1, 3, 5)
	y := h.nan("y", 15)
	h.b.Copy(y, x)
	h.expect("Copy [3,5] -> [15]", y, xv, 0)
}

// bf16Ref rounds a float32 to bfloat16 (round to nearest, ties to even)
// by comparing the distances to the two neighbouring bfloat16 values in
// float64 — a different method from the usual add-and-truncate trick.
func bf16Ref(f float32) float64 {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return float64(f)
	}
	bits := math.Float32bits(f)
	sign := 1.0
	if bits>>31 != 0 {
		sign = -1
	}
	mag := bits &^ (1 << 31)
	lo := mag &^ 0xffff
	loV := float64(math.Float32frombits(lo))
	var ulp float64
	if hi := lo + 0x10000; hi >= 0x7f800000 {
		ulp = math.Ldexp(1, 120) // the step above the largest finite bf16
	} else {
		ulp = float64(math.Float32frombits(hi)) - loV
	}
	rem := float64(math.Float32frombits(mag)) - loV
	up := rem > ulp/2 || rem == ulp/2 && (lo>>16)&1 == 1
	if !up {
		return sign * loV
	}
	if lo+0x10000 >= 0x7f800000 {
		return sign * math.Inf(1)
	}
	return sign * (loV + ulp)
}

// bf16Inputs returns float32 values that exercise bfloat16 rounding: random
// values at several magnitudes, exact ties both ways, subnormals, the
// overflow boundary, signed zeros, infinities and NaN.
func bf16Inputs(h *harness) []float32 {
	v := []float32{0, float32(math.Copysign(0, -1)), 1, -1, float32(math.Inf(1)), float32(math.Inf(-1)),
		math.MaxFloat32, -math.MaxFloat32, math.SmallestNonzeroFloat32, 1e-40, -3e-39,
		math.Float32frombits(0x3f808000), // tie, even below: rounds down
		math.Float32frombits(0x3f818000), // tie, odd below: rounds up
		math.Float32frombits(0x3f808001), // just above a tie
		math.Float32frombits(0x7f7f8000), // tie at the top: rounds to +Inf
		math.Float32frombits(0x7f7f7fff), // just below: stays finite
		math.Float32frombits(0xbf81ffff),
		math.Float32frombits(0x7f800001), // NaN whose payload is all in the low half
		math.Float32frombits(0xff800100), // negative signalling NaN
		float32(math.NaN()),
	}
	for i := 0; i < 200; i++ {
		v = append(v, float32(h.rng.NormFloat64()*math.Pow(10, float64(h.rng.IntN(20)-10))))
	}
	return v
}

// checkBFloat16 covers BFloat16 Upload/Download, Copy in every direction,
// Fill and CopyBlock round trips.
func checkBFloat16(h *harness) {
	if h.o.SkipBFloat16 {
		h.t.Skip("backend skips BFloat16")
	}
	in := bf16Inputs(h)
	n := len(in)
	want := make([]float64, n)
	for i, f := range in {
		want[i] = bf16Ref(f)
	}
	same := func(what string, got []float32) {
		for i := range want {
			g := float64(got[i])
			if g != want[i] && !(math.IsNaN(g) && math.IsNaN(want[i])) || g == 0 && math.Signbit(g) != math.Signbit(want[i]) {
				h.t.Errorf("%s: element %d (input %g, bits %#08x) = %g, want %g", what, i, in[i], math.Float32bits(in[i]), g, want[i])
				return
			}
		}
	}
	bt := h.alloc("bf16", engine.BFloat16, n)
	h.b.Upload(bt, in)
	same("Upload BF16 / Download", h.b.Download(bt))

	ft := h.alloc("f32", engine.Float32, n)
	h.b.Upload(ft, in)
	bt2 := h.alloc("bf16 copy", engine.BFloat16, n)
	h.b.Copy(bt2, ft)
	same("Copy F32 -> BF16", h.b.Download(bt2))

	back := h.nan("f32 back", n)
	h.b.Copy(back, bt2)
	same("Copy BF16 -> F32", h.b.Download(back))

	bt3 := h.alloc("bf16 copy 2", engine.BFloat16, n)
	h.b.Copy(bt3, bt2)
	same("Copy BF16 -> BF16", h.b.Download(bt3))

	// A block copy F32 -> BF16 and back must round exactly as Upload does.
	bb := h.alloc("bf16 block", engine.BFloat16, n)
	h.b.CopyBlock(bb, 0, 0, ft, 0, 0, 1, n, false)
	same("CopyBlock F32 -> BF16", h.b.Download(bb))

	fl := h.alloc("bf16 fill", engine.BFloat16, 17)
	h.b.Fill(fl, 1.00390625) // = 1 + 2^-8, a tie that rounds to 1
	for i, v := range h.b.Download(fl) {
		if v != 1 {
			h.t.Errorf("Fill BF16 with 1+2^-8: element %d = %v, want 1 (ties to even)", i, v)
			break
		}
	}
}

// checkCopyBlock covers CopyBlock with offsets, strides (including a
// broadcast stride of 0) and accumulation; elements outside the block must
// keep their old values.
func checkCopyBlock(h *harness) {
	cases := []struct {
		rows, cols                           int
		srcOff, srcStride, dstOff, dstStride int
	}{
		{1, 1, 0, 1, 0, 1},
		{3, 5, 2, 7, 1, 5},
		{17, 33, 5, 40, 3, 65},
		{4, 16, 0, 0, 2, 19}, // broadcast one source row
		{65, 3, 1, 3, 0, 9},
	}
	for _, c := range cases {
		for _, acc := range []bool{false, true} {
			srcLen := c.srcOff + (c.rows-1)*c.srcStride + c.cols + 2
			dstLen := c.dstOff + (c.rows-1)*c.dstStride + c.cols + 3
			src, sv := h.randn("src", 1, srcLen)
			dst, dv := h.randn("dst", 1, dstLen)
			h.b.CopyBlock(dst, c.dstOff, c.dstStride, src, c.srcOff, c.srcStride, c.rows, c.cols, acc)
			h.expect(fmt.Sprintf("CopyBlock %+v accumulate=%v", c, acc), dst, refCopyBlock(dv, sv, c, acc), h.o.tol())

			if c.srcStride < c.cols && c.rows > 1 {
				continue // a broadcast's backward would need overlapping destination rows
			}
			// Backward: the same block copied back with accumulate.
			dout, dov := h.randn("dout", 1, dstLen)
			dsrc, ds0 := h.randn("dsrc", 1, srcLen)
			h.b.CopyBlock(dsrc, c.srcOff, c.srcStride, dout, c.dstOff, c.dstStride, c.rows, c.cols, true)
			rds, _ := refCopyBlockBackward(dov, srcLen, c, acc)
			h.expect(fmt.Sprintf("CopyBlock %+v accumulate=%v backward", c, acc), dsrc, addTo(ds0, rds), h.o.tol())
		}
	}
}

// checkMemoryCounters checks engine.MemoryReporter, when b implements it:
// an allocation raises InUse and the peak by its size (at most 12.5% more,
// for size classes), Free lowers InUse by as much, ResetPeakMemory brings
// the peak down to InUse. Memory released concurrently (by the garbage
// collector) only lowers InUse, so every bound holds regardless.
func checkMemoryCounters(h *harness) {
	mr, ok := h.b.(engine.MemoryReporter)
	if !ok {
		return
	}
	const n = 1 << 16
	size := uint64(4 * n)
	mr.ResetPeakMemory()
	before := mr.MemoryStats()
	if before.Peak < before.InUse || before.Reserved < before.InUse {
		h.t.Errorf("after ResetPeakMemory: %+v, want Peak and Reserved >= InUse", before)
	}
	// An allocation must raise InUse by its size; a tensor the garbage
	// collector releases at the same moment can hide that, so a failure
	// is only one when it repeats.
	var x *engine.Tensor
	var held engine.MemoryStats
	for try := 1; ; try++ {
		x = h.b.Alloc(engine.Float32, n)
		held = mr.MemoryStats()
		grown := held.InUse - before.InUse
		if held.InUse >= before.InUse+size && grown <= size+size/8 {
			break
		}
		if try == 3 {
			h.t.Errorf("Alloc of %d bytes: InUse %d -> %d", size, before.InUse, held.InUse)
			break
		}
		h.b.Free(x)
		before = mr.MemoryStats()
	}
	if held.Peak < held.InUse || held.Peak < size || held.Reserved < held.InUse {
		h.t.Errorf("after an Alloc of %d bytes: %+v, want Peak >= InUse >= %d and Reserved >= InUse", size, held, size)
	}
	h.b.Free(x)
	after := mr.MemoryStats()
	if after.InUse+size > held.InUse {
		h.t.Errorf("Free of %d bytes: InUse %d -> %d", size, held.InUse, after.InUse)
	}
	if after.Peak < held.InUse {
		h.t.Errorf("Free lowered the peak to %d below the %d in use before it", after.Peak, held.InUse)
	}
	mr.ResetPeakMemory()
	if s := mr.MemoryStats(); s.Peak > after.InUse {
		h.t.Errorf("ResetPeakMemory left the peak at %d, above the %d in use", s.Peak, after.InUse)
	}
}
