package engine

import (
	"fmt"

	"gorgonia.org/tensor"
)

// ToDense downloads t (waiting for pending work on its backend) into a new
// gorgonia.org/tensor Dense of the same shape: float32 for Float32 and
// BFloat16 tensors, int32 for Int32. A zero-rank tensor becomes a scalar
// Dense.
func ToDense(t *Tensor) *tensor.Dense {
	b := t.Backend()
	var backing any
	if t.DType() == Int32 {
		v := b.DownloadInt32(t)
		backing = v
		if len(t.Shape()) == 0 {
			return tensor.New(tensor.FromScalar(v[0]))
		}
	} else {
		v := b.Download(t)
		backing = v
		if len(t.Shape()) == 0 {
			return tensor.New(tensor.FromScalar(v[0]))
		}
	}
	return tensor.New(tensor.WithShape(append([]int(nil), t.Shape()...)...), tensor.WithBacking(backing))
}

// FromDense uploads a float32 or float64 Dense into a new Float32 tensor
// on backend b (float64 values are rounded to float32). Views, transposes
// and column-major Denses are read in logical row-major order. Any other
// dtype is an error.
func FromDense(b Backend, d *tensor.Dense) (*Tensor, error) {
	if d == nil {
		return nil, fmt.Errorf("engine.FromDense: nil Dense")
	}
	dt := d.Dtype()
	if dt != tensor.Float32 && dt != tensor.Float64 {
		return nil, fmt.Errorf("engine.FromDense: Dense of dtype %v (shape %v) not supported: want float32 or float64", dt, d.Shape())
	}
	shape := []int(d.Shape().Clone())
	if d.IsScalar() {
		shape = nil
	}
	n := Numel(shape)
	for _, s := range shape {
		if s < 0 {
			return nil, fmt.Errorf("engine.FromDense: negative dimension in shape %v", shape)
		}
	}
	vals := make([]float32, n)
	if err := denseValues(d, shape, vals); err != nil {
		return nil, err
	}
	t := b.Alloc(Float32, shape...)
	b.Upload(t, vals)
	return t, nil
}

// denseValues writes d's elements into dst in logical row-major order.
// Plain contiguous row-major Denses are copied directly; anything with
// strides of its own (views, transposes, column-major) is read element by
// element through At, which honours every layout.
func denseValues(d *tensor.Dense, shape []int, dst []float32) error {
	if d.IsScalar() {
		v, ok := asFloat32(d.ScalarValue())
		if !ok {
			return fmt.Errorf("engine.FromDense: scalar of type %T", d.ScalarValue())
		}
		dst[0] = v
		return nil
	}
	if !d.IsMaterializable() && !d.RequiresIterator() && d.DataOrder().IsRowMajor() {
		switch data := d.Data().(type) {
		case []float32:
			if len(data) >= len(dst) {
				copy(dst, data[:len(dst)])
				return nil
			}
		case []float64:
			if len(data) >= len(dst) {
				for i := range dst {
					dst[i] = float32(data[i])
				}
				return nil
			}
		}
	}
	coord := make([]int, len(shape))
	for i := range dst {
		v, err := d.At(coord...)
		if err != nil {
			return fmt.Errorf("engine.FromDense: reading element %v of shape %v: %w", coord, shape, err)
		}
		f, ok := asFloat32(v)
		if !ok {
			return fmt.Errorf("engine.FromDense: element %v has type %T", coord, v)
		}
		dst[i] = f
		for ax := len(coord) - 1; ax >= 0; ax-- { // advance the row-major odometer
			coord[ax]++
			if coord[ax] < shape[ax] {
				break
			}
			coord[ax] = 0
		}
	}
	return nil
}

func asFloat32(v any) (float32, bool) {
	switch x := v.(type) {
	case float32:
		return x, true
	case float64:
		return float32(x), true
	}
	return 0, false
}
