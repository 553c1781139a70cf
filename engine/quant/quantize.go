// Package quant quantizes frozen weight matrices the way bitsandbytes
// does for QLoRA and LLM.int8 (see Format), dequantizes them, and puts
// them on a backend as engine.QuantWeight, whose matrix products
// (engine.Backend.QuantGemm) dequantize as they load the weight.
//
// Layout, as bitsandbytes' quantize_4bit (functional.py, kernels.cu
// kQuantizeBlockwise) produces it: the weight [rows, cols] is read as a
// flat row-major array of n = rows·cols values cut into blocks of
// BlockSize (64); each block keeps absmax = max|x| (float32) and each
// value the code of its nearest code-book entry to x·(1/absmax); two
// 4-bit codes share a byte, the first value in the high nibble. Double
// quantization (compress_statistics) subtracts offset = mean(absmax) and
// quantizes the result with DynamicMap in blocks of 256, keeping a byte
// per absmax and a float32 per 256 of them.
package quant

import (
	"fmt"
	"math"
	"strings"
)

// Format is a quantization format.
type Format uint8

const (
	// None leaves weights unquantized.
	None Format = iota
	// NF4 is bitsandbytes' 4-bit NormalFloat (QLoRA).
	NF4
	// FP4 is bitsandbytes' 4-bit float (e2m1).
	FP4
	// Int8 is row-wise absmax int8 (LLM.int8's weight format, without
	// its int8 activations or outlier decomposition; see QuantizeInt8).
	Int8
)

// String names the format as --quantize does.
func (f Format) String() string {
	switch f {
	case None:
		return "none"
	case NF4:
		return "nf4"
	case FP4:
		return "fp4"
	case Int8:
		return "int8"
	}
	return fmt.Sprintf("Format(%d)", uint8(f))
}

// ParseFormat reads a --quantize value.
func ParseFormat(s string) (Format, error) {
	for _, f := range []Format{None, NF4, FP4, Int8} {
		if strings.EqualFold(s, f.String()) {
			return f, nil
		}
	}
	if s == "" {
		return None, nil
	}
	return None, fmt.Errorf("unknown quantization %q (want none, nf4, fp4 or int8)", s)
}

// Bits returns the bits per stored code.
func (f Format) Bits() int {
	if f == Int8 {
		return 8
	}
	return 4
}

// Block sizes of bitsandbytes' defaults.
const (
	// BlockSize4Bit is the values per absmax of nf4/fp4 (bnb_4bit blocksize).
	BlockSize4Bit = 64
	// NestedBlockSize is the absmaxes per float32 scale under double
	// quantization (quantize_blockwise(..., blocksize=256)).
	NestedBlockSize = 256
)

// Options selects a quantization.
type Options struct {
	// Format is NF4, FP4 or Int8.
	Format Format
	// DoubleQuant quantizes the 4-bit formats' absmax too
	// (bnb_4bit_use_double_quant).
	DoubleQuant bool
}

// Quantized is a quantized weight matrix on the host.
type Quantized struct {
	Format     Format
	Rows, Cols int
	// BlockSize is the values per absmax (Cols for Int8: one per row).
	BlockSize int
	// Codes holds the codes: two per byte (first in the high nibble) for
	// 4-bit formats, one signed byte per value for Int8.
	Codes []byte
	// Code is the code book, indexed by code.
	Code []float32
	// Absmax holds one float32 per block; nil under double quantization.
	Absmax []float32
	// Double quantization: the absmax codes (one byte per block), their
	// code book (DynamicMap), one float32 scale per NestedBlock codes,
	// and the offset added back after dequantizing them.
	QAbsmax      []byte
	NestedCode   []float32
	NestedAbsmax []float32
	NestedBlock  int
	Offset       float32
}

// Blocks returns the number of absmax blocks.
func (q *Quantized) Blocks() int { return ceilDiv(q.Rows*q.Cols, q.BlockSize) }

// Nested reports whether the absmax is double-quantized.
func (q *Quantized) Nested() bool { return q.QAbsmax != nil }

// Bytes returns the storage the quantized weight takes: codes, absmax
// (or its codes, scales, code book and offset) and the code book.
func (q *Quantized) Bytes() int {
	n := len(q.Codes) + 4*len(q.Code) + 4*len(q.Absmax)
	if q.Nested() {
		n += len(q.QAbsmax) + 4*len(q.NestedCode) + 4*len(q.NestedAbsmax) + 4
	}
	return n
}

func ceilDiv(a, b int) int { return (a + b - 1) / b }

// Quantize quantizes w [rows, cols] (row-major) with o.
func Quantize(w []float32, rows, cols int, o Options) (*Quantized, error) {
	if len(w) != rows*cols || rows <= 0 || cols <= 0 {
		return nil, fmt.Errorf("quant: %d values for a [%d, %d] weight", len(w), rows, cols)
	}
	switch o.Format {
	case NF4, FP4:
		q := quantize4bit(w, rows, cols, o.Format)
		if o.DoubleQuant {
			q.nest()
		}
		return q, nil
	case Int8:
		if o.DoubleQuant {
			return nil, fmt.Errorf("quant: double quantization applies to nf4 and fp4, not int8")
		}
		return quantizeInt8(w, rows, cols), nil
	}
	return nil, fmt.Errorf("quant: cannot quantize to %v", o.Format)
}

// blockAbsmax returns max|x| over each block of size values of w.
func blockAbsmax(w []float32, size int) []float32 {
	out := make([]float32, ceilDiv(len(w), size))
	for b := range out {
		var m float32
		for _, x := range w[b*size : min((b+1)*size, len(w))] {
			m = max(m, float32(math.Abs(float64(x))))
		}
		out[b] = m
	}
	return out
}

// quantize4bit is bitsandbytes' kQuantizeBlockwise for NF4/FP4: each
// value is multiplied by the float32 reciprocal of its block's absmax
// and coded by the format's decision tree.
func quantize4bit(w []float32, rows, cols int, f Format) *Quantized {
	n := len(w)
	q := &Quantized{Format: f, Rows: rows, Cols: cols, BlockSize: BlockSize4Bit,
		Codes: make([]byte, ceilDiv(n, 2)), Absmax: blockAbsmax(w, BlockSize4Bit)}
	code, coder := NF4Code, quantizeNF4
	if f == FP4 {
		code, coder = FP4Code, quantizeFP4
	}
	q.Code = code[:]
	for i, x := range w {
		inv := 1 / q.Absmax[i/BlockSize4Bit]
		c := coder(float32(x * inv))
		if i%2 == 0 {
			q.Codes[i/2] = c << 4
		} else {
			q.Codes[i/2] |= c
		}
	}
	return q
}

// nest double-quantizes q's absmax as bitsandbytes' quantize_4bit with
// compress_statistics: offset = mean(absmax) (float32), then
// quantize_blockwise(absmax − offset, blocksize=256) with DynamicMap.
func (q *Quantized) nest() {
	var sum float64
	for _, a := range q.Absmax {
		sum += float64(a)
	}
	q.Offset = float32(sum / float64(len(q.Absmax)))
	centred := make([]float32, len(q.Absmax))
	for i, a := range q.Absmax {
		centred[i] = a - q.Offset
	}
	m := DynamicMap()
	q.NestedCode = m[:]
	q.NestedBlock = NestedBlockSize
	q.NestedAbsmax = blockAbsmax(centred, NestedBlockSize)
	q.QAbsmax = make([]byte, len(centred))
	for i, x := range centred {
		inv := 1 / q.NestedAbsmax[i/NestedBlockSize]
		q.QAbsmax[i] = quantizeDynamic(&m, float32(x*inv))
	}
	q.Absmax = nil
}

// quantizeInt8 is bitsandbytes' int8_vectorwise_quant without outlier
// columns (threshold 0): per row absmax = max|x| and
// code = round_half_even(x·(127/absmax)). An all-zero row codes to 0.
//
// LLM.int8 (bitsandbytes' Linear8bitLt, threshold 6.0) also quantizes
// the activations row-wise to int8 for an int8×int8 product and keeps
// activation columns with an |x| above the threshold in 16 bits; here
// the activations stay bfloat16 and the product is
// bf16(x)·bf16(dequantized W)ᵀ, as in bitsandbytes' own input-gradient
// product.
func quantizeInt8(w []float32, rows, cols int) *Quantized {
	q := &Quantized{Format: Int8, Rows: rows, Cols: cols, BlockSize: cols,
		Codes: make([]byte, len(w)), Absmax: blockAbsmax(w, cols), Code: Int8Code[:]}
	for r := 0; r < rows; r++ {
		a := q.Absmax[r]
		if a == 0 {
			continue
		}
		s := 127 / a
		for c := 0; c < cols; c++ {
			v := math.RoundToEven(float64(float32(w[r*cols+c] * s)))
			q.Codes[r*cols+c] = byte(int8(max(-127, min(127, v))))
		}
	}
	return q
}

// Absmaxes returns every block's absmax, dequantizing a nested one as
// bitsandbytes' dequantize_4bit does: NestedCode[q]·NestedAbsmax[b/256],
// then + offset, in float32.
func (q *Quantized) Absmaxes() []float32 {
	if !q.Nested() {
		return q.Absmax
	}
	out := make([]float32, len(q.QAbsmax))
	for i, c := range q.QAbsmax {
		out[i] = float32(q.NestedCode[c]*q.NestedAbsmax[i/q.NestedBlock]) + q.Offset
	}
	return out
}

// CodeAt returns the code of flat element i.
func (q *Quantized) CodeAt(i int) byte {
	if q.Format == Int8 {
		return q.Codes[i]
	}
	b := q.Codes[i/2]
	if i%2 == 0 {
		return b >> 4
	}
	return b & 0x0f
}

// Dequantize returns the weight's float32 values Code[q]·absmax
// (bitsandbytes' kDequantizeBlockwise in float32; QuantGemm rounds them
// to bfloat16, the compute dtype).
func (q *Quantized) Dequantize() []float32 {
	out := make([]float32, q.Rows*q.Cols)
	q.DequantizeRange(out, 0, q.Absmaxes())
	return out
}

// DequantizeRange writes the float32 values of flat elements
// [lo, lo+len(dst)) into dst, with absmax as Absmaxes returns it.
func (q *Quantized) DequantizeRange(dst []float32, lo int, absmax []float32) {
	for j := range dst {
		i := lo + j
		dst[j] = q.Code[q.CodeAt(i)] * absmax[i/q.BlockSize]
	}
}
