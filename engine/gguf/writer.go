package gguf

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"reflect"

	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/engine/safetensors"
)

// Tensor is a tensor to write: float32 values converted to Type on write.
type Tensor struct {
	// Name is the tensor's GGUF name, e.g. "blk.0.attn_q.weight".
	Name string
	// Shape holds the dimensions outermost first (row-major, as in
	// safetensors); the file stores them innermost first.
	Shape []int
	// Type is the stored type: F32, F16, BF16 or Q8_0 (Q8_0 needs an
	// innermost dimension that is a multiple of 32).
	Type TensorType
	// Data holds the row-major float32 values.
	Data []float32
}

// File is a GGUF file to write.
type File struct {
	// KV is the metadata, written in order.
	KV []KV
	// Tensors are written in order.
	Tensors []Tensor
}

// WriteFile writes f to path atomically (see fsutil.WriteFileAtomic).
func WriteFile(path string, f *File) error {
	if err := f.validate(); err != nil {
		return fmt.Errorf("gguf: %s: %w", path, err)
	}
	err := fsutil.WriteFileAtomic(path, 0o644, func(w io.Writer) error { return f.Encode(w) })
	if err != nil {
		return fmt.Errorf("gguf: %w", err)
	}
	return nil
}

// validate checks every tensor's shape, data length and type.
func (f *File) validate() error {
	seen := map[string]bool{}
	for _, t := range f.Tensors {
		if seen[t.Name] {
			return fmt.Errorf("tensor %q appears twice", t.Name)
		}
		seen[t.Name] = true
		n := int64(1)
		for _, d := range t.Shape {
			if d <= 0 {
				return fmt.Errorf("tensor %q: shape %v has a non-positive dimension", t.Name, t.Shape)
			}
			n *= int64(d)
		}
		if len(t.Shape) == 0 || int64(len(t.Data)) != n {
			return fmt.Errorf("tensor %q: shape %v needs %d values, got %d", t.Name, t.Shape, n, len(t.Data))
		}
		if _, err := DataSize(t.Type, int64(t.Shape[len(t.Shape)-1])); err != nil {
			return fmt.Errorf("tensor %q: %w", t.Name, err)
		}
	}
	return nil
}

// alignment returns general.alignment when f sets it, else the default.
func (f *File) alignment() int64 {
	for _, kv := range f.KV {
		if kv.Key == "general.alignment" {
			if a, ok := kv.Value.(uint32); ok && a > 0 {
				return int64(a)
			}
		}
	}
	return DefaultAlignment
}

func pad(n, align int64) int64 { return (n + align - 1) / align * align }

// Encode writes f in GGUF format to w.
func (f *File) Encode(w io.Writer) error {
	if err := f.validate(); err != nil {
		return err
	}
	e := &encoder{w: bufio.NewWriterSize(w, 1<<20)}
	e.raw([]byte(Magic))
	e.u32(Version)
	e.u64(uint64(len(f.Tensors)))
	e.u64(uint64(len(f.KV)))
	for _, kv := range f.KV {
		e.str(kv.Key)
		if err := e.value(kv.Value); err != nil {
			return fmt.Errorf("metadata %q: %w", kv.Key, err)
		}
	}
	align := f.alignment()
	var offset int64
	for _, t := range f.Tensors {
		e.str(t.Name)
		e.u32(uint32(len(t.Shape)))
		for i := len(t.Shape) - 1; i >= 0; i-- {
			e.u64(uint64(t.Shape[i]))
		}
		e.u32(uint32(t.Type))
		e.u64(uint64(offset))
		size, _ := DataSize(t.Type, int64(len(t.Data)))
		offset = pad(offset+size, align)
	}
	e.zeros(pad(e.n, align) - e.n)
	start := e.n
	for _, t := range f.Tensors {
		e.raw(encodeData(t))
		e.zeros(pad(e.n-start, align) - (e.n - start))
	}
	if e.err != nil {
		return e.err
	}
	return e.w.Flush()
}

// encodeData converts a tensor's values to its stored bytes.
func encodeData(t Tensor) []byte {
	switch t.Type {
	case F32:
		out := make([]byte, 4*len(t.Data))
		for i, v := range t.Data {
			binary.LittleEndian.PutUint32(out[4*i:], math.Float32bits(v))
		}
		return out
	case F16, BF16:
		conv := safetensors.F32ToF16
		if t.Type == BF16 {
			conv = safetensors.F32ToBF16
		}
		out := make([]byte, 2*len(t.Data))
		for i, v := range t.Data {
			binary.LittleEndian.PutUint16(out[2*i:], conv(v))
		}
		return out
	}
	return quantizeQ8_0(make([]byte, 0, len(t.Data)/QK8_0*q8Block), t.Data)
}

// encoder writes little-endian values and remembers the first error.
type encoder struct {
	w   *bufio.Writer
	n   int64
	err error
	buf [8]byte
}

func (e *encoder) raw(b []byte) {
	if e.err != nil {
		return
	}
	var k int
	k, e.err = e.w.Write(b)
	e.n += int64(k)
}

func (e *encoder) zeros(n int64) {
	for ; n > 0; n-- {
		e.raw([]byte{0})
	}
}

func (e *encoder) u32(v uint32) {
	binary.LittleEndian.PutUint32(e.buf[:4], v)
	e.raw(e.buf[:4])
}

func (e *encoder) u64(v uint64) {
	binary.LittleEndian.PutUint64(e.buf[:8], v)
	e.raw(e.buf[:8])
}

func (e *encoder) str(s string) {
	e.u64(uint64(len(s)))
	e.raw([]byte(s))
}

// value writes a type tag and a metadata value.
func (e *encoder) value(v any) error {
	if a, ok := v.(Array); ok {
		e.u32(uint32(TypeArray))
		e.u32(uint32(a.Type))
		e.u64(uint64(a.Len()))
		return e.arrayElems(a)
	}
	t, ok := typeOf(v)
	if !ok {
		return fmt.Errorf("unsupported metadata value of Go type %T", v)
	}
	e.u32(uint32(t))
	e.scalar(v)
	return nil
}

// typeOf returns the GGUF type of a scalar Go value.
func typeOf(v any) (ValueType, bool) {
	switch v.(type) {
	case uint8:
		return TypeUint8, true
	case int8:
		return TypeInt8, true
	case uint16:
		return TypeUint16, true
	case int16:
		return TypeInt16, true
	case uint32:
		return TypeUint32, true
	case int32:
		return TypeInt32, true
	case float32:
		return TypeFloat32, true
	case bool:
		return TypeBool, true
	case string:
		return TypeString, true
	case uint64:
		return TypeUint64, true
	case int64:
		return TypeInt64, true
	case float64:
		return TypeFloat64, true
	}
	return 0, false
}

// scalar writes a scalar value without its tag.
func (e *encoder) scalar(v any) {
	switch x := v.(type) {
	case string:
		e.str(x)
	case bool:
		b := byte(0)
		if x {
			b = 1
		}
		e.raw([]byte{b})
	case float32:
		e.u32(math.Float32bits(x))
	case float64:
		e.u64(math.Float64bits(x))
	default:
		if e.err == nil {
			e.err = binary.Write(e.w, binary.LittleEndian, x)
			size, _ := typeOf(x)
			e.n += int64(fixedSizes[size])
		}
	}
}

// arrayElems writes an array's elements, checking they match its type.
func (e *encoder) arrayElems(a Array) error {
	v := reflect.ValueOf(a.Values)
	if v.Kind() != reflect.Slice {
		return fmt.Errorf("array values must be a slice, got %T", a.Values)
	}
	for i := 0; i < v.Len(); i++ {
		x := v.Index(i).Interface()
		if t, ok := typeOf(x); !ok || t != a.Type || t == TypeArray {
			return fmt.Errorf("array of type %d holds a %T", a.Type, x)
		}
		e.scalar(x)
	}
	return nil
}
