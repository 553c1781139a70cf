// Package gguf reads and writes GGUF files, the single-file model format
// of llama.cpp (ggml): a header, typed key-value metadata, a table of
// tensor descriptions and the aligned tensor data.
//
// Layout (all little-endian), version 3:
//
//	"GGUF"  uint32 version  uint64 tensor count  uint64 metadata count
//	metadata: string key, uint32 value type, value
//	tensor infos: string name, uint32 n_dims, uint64 dims[n_dims]
//	              (innermost first), uint32 ggml type, uint64 data offset
//	padding to the alignment, then each tensor's data at its offset
//
// Strings are a uint64 byte length and the bytes; arrays are a uint32
// element type, a uint64 count and the elements. This package stores
// F32, F16, BF16 and Q8_0 tensors (Q8_0: blocks of 32 values, one float16
// scale and 32 int8 quants). It knows nothing about models; package
// ggufexport maps a model onto llama.cpp's names and metadata keys.
package gguf

import (
	"fmt"
	"math"
	"reflect"

	"github.com/gotune/gotune/engine/safetensors"
)

// Magic is the first four bytes of every GGUF file.
const Magic = "GGUF"

// Version is the format version this package writes.
const Version = 3

// DefaultAlignment is the data alignment when general.alignment is absent.
const DefaultAlignment = 32

// ValueType is the type tag of a metadata value.
type ValueType uint32

// Metadata value types, as numbered by the format.
const (
	TypeUint8   ValueType = 0
	TypeInt8    ValueType = 1
	TypeUint16  ValueType = 2
	TypeInt16   ValueType = 3
	TypeUint32  ValueType = 4
	TypeInt32   ValueType = 5
	TypeFloat32 ValueType = 6
	TypeBool    ValueType = 7
	TypeString  ValueType = 8
	TypeArray   ValueType = 9
	TypeUint64  ValueType = 10
	TypeInt64   ValueType = 11
	TypeFloat64 ValueType = 12
)

// fixedSizes are the byte sizes of the fixed-width value types.
var fixedSizes = map[ValueType]int{
	TypeUint8: 1, TypeInt8: 1, TypeBool: 1,
	TypeUint16: 2, TypeInt16: 2,
	TypeUint32: 4, TypeInt32: 4, TypeFloat32: 4,
	TypeUint64: 8, TypeInt64: 8, TypeFloat64: 8,
}

// TensorType is a ggml tensor type.
type TensorType uint32

// The ggml tensor types this package writes (ggml's numbering).
const (
	F32  TensorType = 0
	F16  TensorType = 1
	Q8_0 TensorType = 8
	BF16 TensorType = 30
)

// QK8_0 is the number of values in one Q8_0 block.
const QK8_0 = 32

// q8Block is the byte size of one Q8_0 block: float16 scale + 32 int8.
const q8Block = 2 + QK8_0

// typeNames are ggml's names of the types this package knows.
var typeNames = map[TensorType]string{F32: "F32", F16: "F16", Q8_0: "Q8_0", BF16: "BF16"}

// String returns ggml's name of the type, or "type(N)" for others.
func (t TensorType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return fmt.Sprintf("type(%d)", uint32(t))
}

// ParseTensorType turns "F32", "F16", "BF16" or "Q8_0" (any case) into a
// TensorType.
func ParseTensorType(s string) (TensorType, error) {
	for t, n := range typeNames {
		if equalFold(n, s) {
			return t, nil
		}
	}
	return 0, fmt.Errorf("unknown GGUF tensor type %q (want F32, F16, BF16 or Q8_0)", s)
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'a' <= x && x <= 'z' {
			x -= 'a' - 'A'
		}
		if 'a' <= y && y <= 'z' {
			y -= 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// DataSize returns the bytes of n values of type t, or an error when t is
// not one this package knows or n does not fill whole Q8_0 blocks.
func DataSize(t TensorType, n int64) (int64, error) {
	switch t {
	case F32:
		return 4 * n, nil
	case F16, BF16:
		return 2 * n, nil
	case Q8_0:
		if n%QK8_0 != 0 {
			return 0, fmt.Errorf("Q8_0 needs a multiple of %d values per row, got %d", QK8_0, n)
		}
		return n / QK8_0 * q8Block, nil
	}
	return 0, fmt.Errorf("unsupported tensor type %s", t)
}

// KV is one metadata entry. Value holds a Go value of the entry's type:
// uint8, int8, uint16, int16, uint32, int32, float32, bool, string, uint64,
// int64, float64, or an Array.
type KV struct {
	Key   string
	Value any
}

// Array is an array metadata value: Values is a slice of the Go type of
// Type ([]string, []float32, []int32, ...). Nested arrays are not written.
type Array struct {
	Type   ValueType
	Values any
}

// Len returns the number of elements.
func (a Array) Len() int {
	v := reflect.ValueOf(a.Values)
	if v.Kind() != reflect.Slice {
		return 0
	}
	return v.Len()
}

// Strings, Float32s and Int32s build the arrays tokenizer metadata uses.
func Strings(v []string) Array { return Array{Type: TypeString, Values: v} }

// Float32s is an array of float32.
func Float32s(v []float32) Array { return Array{Type: TypeFloat32, Values: v} }

// Int32s is an array of int32.
func Int32s(v []int32) Array { return Array{Type: TypeInt32, Values: v} }

// quantizeQ8_0 appends the Q8_0 blocks of x (len a multiple of 32) to dst:
// per block the scale d = max|x|/127 as float16, then round(x/d) as int8
// (all zero for an all-zero block), as ggml's reference quantizer does.
func quantizeQ8_0(dst []byte, x []float32) []byte {
	for b := 0; b+QK8_0 <= len(x); b += QK8_0 {
		blk := x[b : b+QK8_0]
		var amax float32
		for _, v := range blk {
			amax = max(amax, float32(math.Abs(float64(v))))
		}
		d := amax / 127
		var inv float32
		if d != 0 {
			inv = 1 / d
		}
		h := safetensors.F32ToF16(d)
		dst = append(dst, byte(h), byte(h>>8))
		for _, v := range blk {
			dst = append(dst, byte(int8(math.Round(float64(v*inv)))))
		}
	}
	return dst
}

// dequantizeQ8_0 is the inverse of quantizeQ8_0 (up to its rounding).
func dequantizeQ8_0(src []byte) []float32 {
	out := make([]float32, 0, len(src)/q8Block*QK8_0)
	for b := 0; b+q8Block <= len(src); b += q8Block {
		d := safetensors.F16ToF32(uint16(src[b]) | uint16(src[b+1])<<8)
		for _, q := range src[b+2 : b+q8Block] {
			out = append(out, d*float32(int8(q)))
		}
	}
	return out
}
