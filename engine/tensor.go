// Package engine holds gotune's core: tensors, the Backend interface through
// which all arithmetic goes, and the pieces of a training step built on it.
//
// A Tensor is a shape, a dtype and a view into storage owned by a Backend.
// Go code never touches tensor elements directly: it asks the backend to
// compute, and moves data in and out with Backend.Upload / Backend.Download.
// That keeps model and method code identical whether the numbers live in Go
// slices (the CPU backend) or in GPU memory (the CUDA backend).
package engine

import (
	"fmt"
	"strings"
)

// DType is the element type of a tensor's storage.
type DType uint8

const (
	// Float32 is IEEE-754 binary32, the type all arithmetic accumulates in.
	Float32 DType = iota
	// BFloat16 is the upper half of a float32 (storage only; math in float32).
	BFloat16
	// Int32 holds token ids and labels.
	Int32
)

// Size returns the number of bytes one element occupies.
func (d DType) Size() int {
	switch d {
	case BFloat16:
		return 2
	default:
		return 4
	}
}

// String names the dtype as safetensors does.
func (d DType) String() string {
	switch d {
	case Float32:
		return "F32"
	case BFloat16:
		return "BF16"
	case Int32:
		return "I32"
	default:
		return fmt.Sprintf("DType(%d)", uint8(d))
	}
}

// Storage is a backend-owned buffer. Only the backend that made it can read
// or write it; everyone else passes it around opaquely.
type Storage interface {
	// Backend returns the backend that owns this storage.
	Backend() Backend
	// Len returns the capacity in elements.
	Len() int
}

// Tensor is a dense, row-major view of Len() elements of a Storage,
// starting Offset elements in. Tensors are cheap headers: Reshape and
// Slice share storage with the original.
type Tensor struct {
	shape  []int
	dtype  DType
	store  Storage
	offset int
}

// NewTensor wraps storage in a tensor header. Backends call it from Alloc;
// other code should use Backend.Alloc.
func NewTensor(store Storage, dtype DType, offset int, shape ...int) *Tensor {
	t := &Tensor{shape: append([]int(nil), shape...), dtype: dtype, store: store, offset: offset}
	if offset < 0 || offset+t.Len() > store.Len() {
		panic(fmt.Sprintf("engine: tensor view [%d, %d) outside storage of %d elements", offset, offset+t.Len(), store.Len()))
	}
	return t
}

// Shape returns the dimensions (the slice must not be modified).
func (t *Tensor) Shape() []int { return t.shape }

// Dim returns dimension i; negative i counts from the end.
func (t *Tensor) Dim(i int) int {
	if i < 0 {
		i += len(t.shape)
	}
	return t.shape[i]
}

// DType returns the element type.
func (t *Tensor) DType() DType { return t.dtype }

// Storage returns the underlying backend storage.
func (t *Tensor) Storage() Storage { return t.store }

// Offset returns the element offset of this view into its storage.
func (t *Tensor) Offset() int { return t.offset }

// Backend returns the backend owning the storage.
func (t *Tensor) Backend() Backend { return t.store.Backend() }

// Len returns the number of elements.
func (t *Tensor) Len() int { return Numel(t.shape) }

// Rows returns the product of all dimensions but the last: the number of
// rows when the tensor is seen as a matrix [Rows, Cols].
func (t *Tensor) Rows() int {
	if len(t.shape) == 0 {
		return 1
	}
	return Numel(t.shape[:len(t.shape)-1])
}

// Cols returns the last dimension (1 for a scalar).
func (t *Tensor) Cols() int {
	if len(t.shape) == 0 {
		return 1
	}
	return t.shape[len(t.shape)-1]
}

// Reshape returns a view with a new shape and the same number of elements.
// One dimension may be -1 and is then inferred.
func (t *Tensor) Reshape(shape ...int) *Tensor {
	shape = append([]int(nil), shape...)
	infer := -1
	known := 1
	for i, d := range shape {
		if d == -1 {
			if infer >= 0 {
				panic("engine: Reshape with two -1 dimensions")
			}
			infer = i
			continue
		}
		known *= d
	}
	if infer >= 0 {
		if known == 0 || t.Len()%known != 0 {
			panic(fmt.Sprintf("engine: cannot reshape %v to %v", t.shape, shape))
		}
		shape[infer] = t.Len() / known
	}
	if Numel(shape) != t.Len() {
		panic(fmt.Sprintf("engine: cannot reshape %v (%d elements) to %v", t.shape, t.Len(), shape))
	}
	return &Tensor{shape: shape, dtype: t.dtype, store: t.store, offset: t.offset}
}

// Slice returns the view of rows [start, end) along the first dimension.
func (t *Tensor) Slice(start, end int) *Tensor {
	if len(t.shape) == 0 || start < 0 || end > t.shape[0] || start > end {
		panic(fmt.Sprintf("engine: Slice(%d, %d) of shape %v", start, end, t.shape))
	}
	inner := Numel(t.shape[1:])
	shape := append([]int{end - start}, t.shape[1:]...)
	return &Tensor{shape: shape, dtype: t.dtype, store: t.store, offset: t.offset + start*inner}
}

// String describes the header (not the data, which may live on a device).
func (t *Tensor) String() string {
	dims := make([]string, len(t.shape))
	for i, d := range t.shape {
		dims[i] = fmt.Sprint(d)
	}
	return fmt.Sprintf("Tensor[%s](%s)", t.dtype, strings.Join(dims, "x"))
}

// Numel returns the product of the dimensions (1 for an empty shape).
func Numel(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// SameShape reports whether a and b have identical shapes.
func SameShape(a, b *Tensor) bool {
	if len(a.shape) != len(b.shape) {
		return false
	}
	for i := range a.shape {
		if a.shape[i] != b.shape[i] {
			return false
		}
	}
	return true
}
