// Package safetensors reads and writes the safetensors tensor file format
// used by Hugging Face checkpoints.
//
// A file is an 8-byte little-endian header length N, N bytes of JSON header
// and a data section. The header maps each tensor name to its dtype, shape
// and data_offsets (a [begin, end) byte range relative to the start of the
// data section); the optional key "__metadata__" holds a string→string map.
// Tensor data is little-endian and row-major.
//
// Reading is lazy: Open parses and validates only the header and keeps the
// file open; tensor bytes are read with ReadAt when asked for, so a loader
// never holds more than the tensor it is converting. Validation is strict
// (see Open) because a checkpoint is user input.
//
// Writing mirrors the reference implementation (huggingface/safetensors) byte
// for byte: compact JSON, tensors ordered by descending dtype alignment and
// then by name, data laid out in header order, header padded with spaces to
// a multiple of 8 bytes so every tensor's data stays 8-byte aligned.
//
// A checkpoint directory holds either one model.safetensors or shards
// listed in model.safetensors.index.json: OpenDir reads either, and
// WriteSharded writes either the way transformers' save_pretrained does.
package safetensors

import (
	"fmt"
	"sort"
	"strings"
)

// Dtype names as they appear in a safetensors header.
const (
	BOOL   = "BOOL"
	U8     = "U8"
	I8     = "I8"
	F8E5M2 = "F8_E5M2"
	F8E4M3 = "F8_E4M3"
	I16    = "I16"
	U16    = "U16"
	F16    = "F16"
	BF16   = "BF16"
	I32    = "I32"
	U32    = "U32"
	F32    = "F32"
	F64    = "F64"
	I64    = "I64"
	U64    = "U64"
)

// dtypeInfo describes one dtype: its element size and its rank in the
// reference implementation's Dtype enum, which orders dtypes by increasing
// alignment and decides the order tensors are written in.
type dtypeInfo struct {
	size int
	rank int
}

var dtypes = map[string]dtypeInfo{
	BOOL:   {1, 0},
	U8:     {1, 1},
	I8:     {1, 2},
	F8E5M2: {1, 3},
	F8E4M3: {1, 4},
	I16:    {2, 5},
	U16:    {2, 6},
	F16:    {2, 7},
	BF16:   {2, 8},
	I32:    {4, 9},
	U32:    {4, 10},
	F32:    {4, 11},
	F64:    {8, 12},
	I64:    {8, 13},
	U64:    {8, 14},
}

// DTypeSize returns the size in bytes of one element of dtype, and false for
// a dtype this package does not know.
func DTypeSize(dtype string) (int, bool) {
	d, ok := dtypes[dtype]
	return d.size, ok
}

// IsFloat reports whether dtype can be converted to float32 by Float32
// (F32, F16, BF16, F64).
func IsFloat(dtype string) bool {
	switch dtype {
	case F32, F16, BF16, F64:
		return true
	}
	return false
}

// IsInteger reports whether dtype can be read as int64 by Int64s (the
// signed and unsigned integer types and BOOL).
func IsInteger(dtype string) bool {
	switch dtype {
	case BOOL, U8, I8, I16, U16, I32, U32, I64, U64:
		return true
	}
	return false
}

// knownDTypes lists the known dtypes for error messages.
func knownDTypes() string {
	names := make([]string, 0, len(dtypes))
	for n := range dtypes {
		names = append(names, n)
	}
	sort.Slice(names, func(i, j int) bool { return dtypes[names[i]].rank < dtypes[names[j]].rank })
	return strings.Join(names, ", ")
}

// numelBytes returns the element count of shape and its size in bytes for
// an element size, or an error when a dimension is negative or the product
// overflows int64 (possible with a hostile header).
func numelBytes(shape []int, elemSize int) (numel, nbytes int64, err error) {
	const maxBytes = 1 << 62
	numel = 1
	for _, d := range shape {
		if d < 0 {
			return 0, 0, fmt.Errorf("shape %v has a negative dimension", shape)
		}
		if d != 0 && numel > maxBytes/int64(d) {
			return 0, 0, fmt.Errorf("shape %v is too large", shape)
		}
		numel *= int64(d)
	}
	if numel > maxBytes/int64(elemSize) {
		return 0, 0, fmt.Errorf("shape %v is too large", shape)
	}
	return numel, numel * int64(elemSize), nil
}
