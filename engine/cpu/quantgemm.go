package cpu

import (
	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/quant"
)

// quantPanel is the number of weight rows dequantized at a time: the
// CPU backend never holds more of a bfloat16 W than this.
const quantPanel = 256

// QuantGemm computes c = alpha·bf16(a)·op(bf16(W)) + beta·c for a
// quantized W (see engine.Backend), dequantizing quantPanel rows of W at
// a time into bfloat16 and multiplying them with the float32 kernel.
func (b *Backend) QuantGemm(c, a *engine.Tensor, w *engine.QuantWeight, transW bool, alpha, beta float32) {
	const op = "QuantGemm"
	m, n, k := engine.CheckQuantGemm(op, c, a, w, transW)
	q := hostQuant(op, w)
	absmax := q.Absmaxes()
	ah := make([]uint16, a.Len())
	if a.DType() == engine.BFloat16 {
		copy(ah, u16s(op, a))
	} else {
		f32ToBF16(ah, f32s(op, a))
	}
	cs, done := write(op, c)
	defer done()
	panel := make([]float32, quantPanel*w.Cols)
	ph := make([]uint16, len(panel))
	for r0 := 0; r0 < w.Rows; r0 += quantPanel {
		r1 := min(r0+quantPanel, w.Rows)
		rows := r1 - r0
		q.DequantizeRange(panel[:rows*w.Cols], r0*w.Cols, absmax)
		f32ToBF16(ph[:rows*w.Cols], panel[:rows*w.Cols])
		wm := mat{h: ph[:rows*w.Cols], ld: w.Cols, trans: transW}
		if transW { // c[:, r0:r1] = alpha·a·W[r0:r1]ᵀ + beta·c[:, r0:r1]
			gemm(true, m, rows, k, alpha, mat{h: ah, ld: k}, wm, beta, cs[r0:], n)
			continue
		}
		// c += alpha·a[:, r0:r1]·W[r0:r1]; beta applies once, with the first panel.
		bt := float32(1)
		if r0 == 0 {
			bt = beta
		}
		gemm(true, m, n, rows, alpha, mat{h: ah[r0:], ld: k}, wm, bt, cs, n)
	}
}

// hostQuant views w's tensors as a quant.Quantized (the code bytes
// unpacked from their Int32 words, the float32 tables read in place).
func hostQuant(op string, w *engine.QuantWeight) *quant.Quantized {
	q := &quant.Quantized{Rows: w.Rows, Cols: w.Cols, BlockSize: w.BlockSize,
		Codes: unpackBytes(i32s(op, w.Codes)), Code: f32s(op, w.Code), NestedBlock: w.NestedBlock, Offset: w.Offset}
	if w.Bits == 8 { // (the 4-bit formats differ only in the code book)
		q.Format = quant.Int8
	}
	if w.Nested() {
		q.QAbsmax = unpackBytes(i32s(op, w.QAbsmax))[:w.Blocks()]
		q.NestedCode, q.NestedAbsmax = f32s(op, w.NestedCode), f32s(op, w.NestedAbsmax)
	} else {
		q.Absmax = f32s(op, w.Absmax)
	}
	return q
}

// unpackBytes returns the little-endian bytes of words.
func unpackBytes(words []int32) []byte {
	out := make([]byte, 4*len(words))
	for i, v := range words {
		u := uint32(v)
		out[4*i], out[4*i+1], out[4*i+2], out[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
	}
	return out
}
