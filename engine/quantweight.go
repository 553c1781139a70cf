package engine

import "fmt"

// QuantWeight is a frozen weight matrix [Rows, Cols] (torch layout:
// [out, in]) stored block-quantized, the operand of Backend.QuantGemm.
// Element (r, c) is element i = r·Cols + c of the flat row-major array;
// it has code q_i and block b = i / BlockSize, and stands for
//
//	w_i = Code[q_i] · absmax_b,
//	absmax_b = Absmax[b]                                     (plain), or
//	absmax_b = NestedCode[QAbsmax[b]] · NestedAbsmax[b / NestedBlock] + Offset  (double quantized),
//
// each product and sum in float32. Package engine/quant builds them with
// bitsandbytes' semantics.
type QuantWeight struct {
	Rows, Cols int
	// Bits is 4 (two codes per byte, the even element in the high
	// nibble) or 8 (one byte per element).
	Bits int
	// BlockSize is the number of consecutive elements sharing an absmax.
	BlockSize int
	// Codes holds the code bytes, packed four to an Int32 element in
	// little-endian order (byte j is bits 8·(j%4).. of element j/4).
	Codes *Tensor
	// Code is the Float32 code book [2^Bits].
	Code *Tensor
	// Absmax is Float32 [blocks], or nil when double quantized.
	Absmax *Tensor
	// QAbsmax holds one code byte per block, packed as Codes; NestedCode
	// is its Float32 code book [256], NestedAbsmax one Float32 scale per
	// NestedBlock blocks, Offset the value added back.
	QAbsmax      *Tensor
	NestedCode   *Tensor
	NestedAbsmax *Tensor
	NestedBlock  int
	Offset       float32
}

// Blocks returns the number of absmax blocks.
func (w *QuantWeight) Blocks() int { return (w.Rows*w.Cols + w.BlockSize - 1) / w.BlockSize }

// Nested reports whether the absmax is double quantized.
func (w *QuantWeight) Nested() bool { return w.QAbsmax != nil }

// Tensors returns every tensor the weight holds.
func (w *QuantWeight) Tensors() []*Tensor {
	var out []*Tensor
	for _, t := range []*Tensor{w.Codes, w.Code, w.Absmax, w.QAbsmax, w.NestedCode, w.NestedAbsmax} {
		if t != nil {
			out = append(out, t)
		}
	}
	return out
}

// Bytes returns the bytes of backend storage the weight occupies.
func (w *QuantWeight) Bytes() int {
	n := 0
	for _, t := range w.Tensors() {
		n += t.Len() * t.DType().Size()
	}
	return n
}

// String describes the weight for error messages.
func (w *QuantWeight) String() string {
	return fmt.Sprintf("QuantWeight[%d, %d](%d-bit, blocks of %d, nested %v)", w.Rows, w.Cols, w.Bits, w.BlockSize, w.Nested())
}

// CheckQuantGemm panics (naming op) unless c = a·op(w) agrees in shape,
// and returns M, N, K of the product.
func CheckQuantGemm(op string, c, a *Tensor, w *QuantWeight, transW bool) (m, n, k int) {
	k, n = w.Rows, w.Cols
	if transW {
		k, n = n, k
	}
	m = a.Rows()
	if a.Cols() != k || c.Rows() != m || c.Cols() != n {
		panic(fmt.Sprintf("%s: shapes c %v = a %v · op(%v, trans=%v) do not agree", op, c, a, w, transW))
	}
	if w.Bits != 4 && w.Bits != 8 {
		panic(fmt.Sprintf("%s: %v: bits must be 4 or 8", op, w))
	}
	if w.Codes.Len()*4 < (w.Rows*w.Cols*w.Bits+7)/8 || w.Code.Len() != 1<<w.Bits {
		panic(fmt.Sprintf("%s: %v: codes %v or code book %v too small", op, w, w.Codes, w.Code))
	}
	if w.Nested() {
		if w.QAbsmax.Len()*4 < w.Blocks() || w.NestedCode.Len() != 256 || w.NestedBlock <= 0 ||
			w.NestedAbsmax.Len() < (w.Blocks()+w.NestedBlock-1)/w.NestedBlock {
			panic(fmt.Sprintf("%s: %v: double-quantization state does not cover %d blocks", op, w, w.Blocks()))
		}
	} else if w.Absmax == nil || w.Absmax.Len() < w.Blocks() {
		panic(fmt.Sprintf("%s: %v: absmax %v does not cover %d blocks", op, w, w.Absmax, w.Blocks()))
	}
	return m, n, k
}
