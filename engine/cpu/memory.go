package cpu

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// Upload copies host values into a Float32 or BFloat16 tensor, rounding to
// nearest even for BFloat16.
func (b *Backend) Upload(dst *engine.Tensor, src []float32) {
	check(len(src) == dst.Len(), "Upload", "%d values for tensor %v of %d elements", len(src), dst, dst.Len())
	switch dst.DType() {
	case engine.Float32:
		copy(f32s("Upload", dst), src)
	case engine.BFloat16:
		f32ToBF16(u16s("Upload", dst), src)
	default:
		panic(fmt.Sprintf("cpu.Upload: tensor %v is not F32 or BF16 (use UploadInt32)", dst))
	}
}

// UploadInt32 copies host values into an Int32 tensor.
func (b *Backend) UploadInt32(dst *engine.Tensor, src []int32) {
	check(len(src) == dst.Len(), "UploadInt32", "%d values for tensor %v of %d elements", len(src), dst, dst.Len())
	copy(i32s("UploadInt32", dst), src)
}

// Download returns a fresh copy of a Float32 or BFloat16 tensor's values.
func (b *Backend) Download(src *engine.Tensor) []float32 {
	out := make([]float32, src.Len())
	switch src.DType() {
	case engine.Float32:
		copy(out, f32s("Download", src))
	case engine.BFloat16:
		bf16ToF32(out, u16s("Download", src))
	default:
		panic(fmt.Sprintf("cpu.Download: tensor %v is not F32 or BF16 (use DownloadInt32)", src))
	}
	return out
}

// DownloadInt32 returns a fresh copy of an Int32 tensor's values.
func (b *Backend) DownloadInt32(src *engine.Tensor) []int32 {
	return append([]int32(nil), i32s("DownloadInt32", src)...)
}

// Copy copies src into dst (same element count), converting between
// Float32 and BFloat16. Int32 copies only to Int32.
func (b *Backend) Copy(dst, src *engine.Tensor) {
	check(dst.Len() == src.Len(), "Copy", "dst %v and src %v differ in element count", dst, src)
	switch {
	case dst.DType() == engine.Int32 || src.DType() == engine.Int32:
		check(dst.DType() == src.DType(), "Copy", "cannot convert %v to %v", src, dst)
		copy(i32s("Copy", dst), i32s("Copy", src))
	case dst.DType() == engine.Float32 && src.DType() == engine.Float32:
		copy(f32s("Copy", dst), f32s("Copy", src))
	case dst.DType() == engine.BFloat16 && src.DType() == engine.BFloat16:
		copy(u16s("Copy", dst), u16s("Copy", src))
	case dst.DType() == engine.BFloat16:
		f32ToBF16(u16s("Copy", dst), f32s("Copy", src))
	default:
		bf16ToF32(f32s("Copy", dst), u16s("Copy", src))
	}
}

// Fill sets every element to v (truncated toward zero for Int32).
func (b *Backend) Fill(t *engine.Tensor, v float32) {
	switch t.DType() {
	case engine.Float32:
		d := f32s("Fill", t)
		parallelFor(len(d), 1, func(lo, hi int) {
			s := d[lo:hi]
			for i := range s {
				s[i] = v
			}
		})
	case engine.BFloat16:
		d := u16s("Fill", t)
		h := f32ToBF16Bits(v)
		for i := range d {
			d[i] = h
		}
	case engine.Int32:
		d := i32s("Fill", t)
		for i := range d {
			d[i] = int32(v)
		}
	default:
		panic(fmt.Sprintf("cpu.Fill: unsupported tensor %v", t))
	}
}

// CopyBlock copies (or, with accumulate, adds) a rows×cols block between
// two tensors seen as flat arrays; see engine.Backend. Float32 and BFloat16
// may be mixed; Int32 pairs only with Int32.
func (b *Backend) CopyBlock(dst *engine.Tensor, dstOff, dstStride int, src *engine.Tensor, srcOff, srcStride int, rows, cols int, accumulate bool) {
	const op = "CopyBlock"
	if rows <= 0 || cols <= 0 {
		check(rows >= 0 && cols >= 0, op, "negative block %dx%d", rows, cols)
		return
	}
	// Source rows may overlap (stride 0 broadcasts one row); destination
	// rows may not, or the result would depend on the order of writes.
	inBounds := func(t *engine.Tensor, off, stride int, isDst bool) bool {
		last := off + (rows-1)*stride + cols - 1
		return off >= 0 && stride >= 0 && (!isDst || rows == 1 || stride >= cols) && last < t.Len()
	}
	check(inBounds(dst, dstOff, dstStride, true), op, "block %dx%d at offset %d stride %d outside dst %v", rows, cols, dstOff, dstStride, dst)
	check(inBounds(src, srcOff, srcStride, false), op, "block %dx%d at offset %d stride %d outside src %v", rows, cols, srcOff, srcStride, src)
	dt, st := dst.DType(), src.DType()
	switch {
	case dt == engine.Int32 || st == engine.Int32:
		check(dt == st, op, "cannot copy %v into %v", src, dst)
		d, s := i32s(op, dst), i32s(op, src)
		for r := 0; r < rows; r++ {
			dr := d[dstOff+r*dstStride : dstOff+r*dstStride+cols]
			sr := s[srcOff+r*srcStride : srcOff+r*srcStride+cols]
			if accumulate {
				for j := range dr {
					dr[j] += sr[j]
				}
			} else {
				copy(dr, sr)
			}
		}
	case dt == engine.Float32 && st == engine.Float32:
		d, s := f32s(op, dst), f32s(op, src)
		parallelFor(rows, cols, func(lo, hi int) {
			for r := lo; r < hi; r++ {
				dr := d[dstOff+r*dstStride : dstOff+r*dstStride+cols]
				sr := s[srcOff+r*srcStride : srcOff+r*srcStride+cols]
				if accumulate {
					for j, v := range sr {
						dr[j] += v
					}
				} else {
					copy(dr, sr)
				}
			}
		})
	case dt == engine.BFloat16 && st == engine.BFloat16 && !accumulate:
		d, s := u16s(op, dst), u16s(op, src)
		for r := 0; r < rows; r++ {
			copy(d[dstOff+r*dstStride:dstOff+r*dstStride+cols], s[srcOff+r*srcStride:srcOff+r*srcStride+cols])
		}
	default:
		// Mixed or accumulating BFloat16: go through float32 one row at a
		// time so only the touched elements are converted.
		if dt != engine.Float32 && dt != engine.BFloat16 || st != engine.Float32 && st != engine.BFloat16 {
			panic(fmt.Sprintf("cpu.%s: unsupported dtypes %v <- %v", op, dst, src))
		}
		row := make([]float32, cols)
		for r := 0; r < rows; r++ {
			so, do := srcOff+r*srcStride, dstOff+r*dstStride
			if st == engine.Float32 {
				copy(row, f32s(op, src)[so:so+cols])
			} else {
				bf16ToF32(row, u16s(op, src)[so:so+cols])
			}
			if dt == engine.Float32 {
				dr := f32s(op, dst)[do : do+cols]
				for j, v := range row {
					if accumulate {
						dr[j] += v
					} else {
						dr[j] = v
					}
				}
				continue
			}
			dr := u16s(op, dst)[do : do+cols]
			for j, v := range row {
				if accumulate {
					v += bf16BitsToF32(dr[j])
				}
				dr[j] = f32ToBF16Bits(v)
			}
		}
	}
}
