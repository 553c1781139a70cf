package gguf

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
)

// Limits on what Read accepts, so a corrupt or hostile header cannot make
// it allocate without bound.
const (
	maxStringLen = 1 << 24 // bytes in one metadata string (a chat template is ~10 KB)
	maxArrayLen  = 1 << 24 // elements in one metadata array (vocabularies ~260K)
	maxCount     = 1 << 20 // metadata entries or tensors
	maxDims      = 4       // ggml tensors have at most 4 dimensions
)

// TensorInfo describes a tensor stored in a file.
type TensorInfo struct {
	// Name is the tensor's name.
	Name string
	// Shape holds the dimensions outermost first (the file's order
	// reversed).
	Shape []int64
	// Type is the ggml type.
	Type TensorType
	// Offset is the data offset from the start of the data section.
	Offset uint64
}

// Elements returns the number of values.
func (t TensorInfo) Elements() int64 {
	n := int64(1)
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// Header is everything in a GGUF file but the tensor data.
type Header struct {
	// Version is the format version (2 or 3).
	Version uint32
	// KV is the metadata in file order.
	KV []KV
	// Tensors describes the tensors in file order.
	Tensors []TensorInfo
	// DataOffset is where the data section starts in the file.
	DataOffset int64
}

// Get returns the value of a metadata key.
func (h *Header) Get(key string) (any, bool) {
	for _, kv := range h.KV {
		if kv.Key == key {
			return kv.Value, true
		}
	}
	return nil, false
}

// ReadHeader reads the header of the GGUF file at path.
func ReadHeader(path string) (*Header, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("gguf: %w", err)
	}
	defer f.Close()
	h, err := DecodeHeader(f)
	if err != nil {
		return nil, fmt.Errorf("gguf: %s: %w", path, err)
	}
	return h, nil
}

// DecodeHeader reads a GGUF header from r.
func DecodeHeader(r io.Reader) (*Header, error) {
	d := &decoder{r: bufio.NewReader(r)}
	magic := d.bytes(4)
	if d.err == nil && string(magic) != Magic {
		return nil, fmt.Errorf("not a GGUF file (starts with %q, want %q)", magic, Magic)
	}
	h := &Header{Version: d.u32()}
	if d.err == nil && h.Version != 2 && h.Version != 3 {
		return nil, fmt.Errorf("unsupported GGUF version %d (want 2 or 3)", h.Version)
	}
	nt, nkv := d.u64(), d.u64()
	if d.err == nil && (nt > maxCount || nkv > maxCount) {
		return nil, fmt.Errorf("implausible counts: %d tensors, %d metadata entries", nt, nkv)
	}
	for i := uint64(0); i < nkv && d.err == nil; i++ {
		key := d.str()
		v := d.value(ValueType(d.u32()), true)
		if d.err != nil {
			return nil, fmt.Errorf("metadata entry %d (%q): %w", i, key, d.err)
		}
		h.KV = append(h.KV, KV{Key: key, Value: v})
	}
	for i := uint64(0); i < nt && d.err == nil; i++ {
		t, err := d.tensorInfo()
		if err != nil {
			return nil, fmt.Errorf("tensor info %d: %w", i, err)
		}
		h.Tensors = append(h.Tensors, t)
	}
	if d.err != nil {
		return nil, d.err
	}
	align := int64(DefaultAlignment)
	if v, ok := h.Get("general.alignment"); ok {
		if a, ok := v.(uint32); ok && a > 0 {
			align = int64(a)
		}
	}
	h.DataOffset = pad(d.n, align)
	return h, nil
}

// decoder reads little-endian values and remembers the first error.
type decoder struct {
	r   *bufio.Reader
	n   int64
	err error
}

// bytes reads n bytes; after an error it returns zeros, so callers can
// read on and check d.err once.
func (d *decoder) bytes(n int) []byte {
	if d.err != nil {
		return make([]byte, n)
	}
	b := make([]byte, n)
	k, err := io.ReadFull(d.r, b)
	d.n += int64(k)
	if err != nil {
		if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
			err = fmt.Errorf("file ends early, at byte %d", d.n)
		}
		d.err = err
		return make([]byte, n)
	}
	return b
}

func (d *decoder) u32() uint32 { return binary.LittleEndian.Uint32(d.bytes(4)) }
func (d *decoder) u64() uint64 { return binary.LittleEndian.Uint64(d.bytes(8)) }

func (d *decoder) str() string {
	n := d.u64()
	if d.err == nil && n > maxStringLen {
		d.err = fmt.Errorf("string of %d bytes at byte %d is implausibly long", n, d.n)
	}
	if d.err != nil {
		return ""
	}
	return string(d.bytes(int(n)))
}

// value reads a value of type t; arrays only when top is set (GGUF allows
// nested arrays, llama.cpp writes none).
func (d *decoder) value(t ValueType, top bool) any {
	if d.err != nil {
		return nil
	}
	switch t {
	case TypeString:
		return d.str()
	case TypeArray:
		if !top {
			d.err = fmt.Errorf("nested arrays are not supported")
			return nil
		}
		return d.array()
	}
	size, ok := fixedSizes[t]
	if !ok {
		d.err = fmt.Errorf("unknown value type %d", t)
		return nil
	}
	b := d.bytes(size)
	switch t {
	case TypeUint8:
		return b[0]
	case TypeInt8:
		return int8(b[0])
	case TypeBool:
		return b[0] != 0
	case TypeUint16:
		return binary.LittleEndian.Uint16(b)
	case TypeInt16:
		return int16(binary.LittleEndian.Uint16(b))
	case TypeUint32:
		return binary.LittleEndian.Uint32(b)
	case TypeInt32:
		return int32(binary.LittleEndian.Uint32(b))
	case TypeFloat32:
		return math.Float32frombits(binary.LittleEndian.Uint32(b))
	case TypeUint64:
		return binary.LittleEndian.Uint64(b)
	case TypeInt64:
		return int64(binary.LittleEndian.Uint64(b))
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b))
}

// array reads an array into a slice of its element's Go type.
func (d *decoder) array() any {
	et := ValueType(d.u32())
	n := d.u64()
	if d.err == nil && n > maxArrayLen {
		d.err = fmt.Errorf("array of %d elements is implausibly long", n)
	}
	if d.err != nil {
		return nil
	}
	switch et {
	case TypeString:
		return readSlice(d, n, et, func(v any) string { return v.(string) })
	case TypeFloat32:
		return readSlice(d, n, et, func(v any) float32 { return v.(float32) })
	case TypeInt32:
		return readSlice(d, n, et, func(v any) int32 { return v.(int32) })
	}
	return readSlice(d, n, et, func(v any) any { return v })
}

func readSlice[T any](d *decoder, n uint64, et ValueType, conv func(any) T) Array {
	out := make([]T, 0, min(n, 1<<16))
	for i := uint64(0); i < n && d.err == nil; i++ {
		v := d.value(et, false)
		if d.err != nil {
			break
		}
		out = append(out, conv(v))
	}
	return Array{Type: et, Values: out}
}

func (d *decoder) tensorInfo() (TensorInfo, error) {
	t := TensorInfo{Name: d.str()}
	nd := d.u32()
	if d.err == nil && (nd == 0 || nd > maxDims) {
		return t, fmt.Errorf("tensor %q has %d dimensions (want 1 to %d)", t.Name, nd, maxDims)
	}
	t.Shape = make([]int64, nd)
	for i := int(nd) - 1; i >= 0 && d.err == nil; i-- {
		v := d.u64()
		if d.err != nil {
			break
		}
		if v == 0 || v > 1<<40 {
			return t, fmt.Errorf("tensor %q: implausible dimension %d", t.Name, v)
		}
		t.Shape[i] = int64(v)
	}
	t.Type = TensorType(d.u32())
	t.Offset = d.u64()
	return t, d.err
}
