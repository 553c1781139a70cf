package engine_test

import (
	"math"
	"testing"

	"gorgonia.org/tensor"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
)

func TestDenseRoundTrip(t *testing.T) {
	b := cpu.New()
	cases := []struct {
		name  string
		shape []int
	}{
		{"vector", []int{5}},
		{"matrix", []int{3, 4}},
		{"rank3", []int{2, 3, 5}},
		{"one", []int{1}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			n := engine.Numel(c.shape)
			vals := make([]float32, n)
			for i := range vals {
				vals[i] = float32(i)*0.5 - 3
			}
			x := b.Alloc(engine.Float32, c.shape...)
			b.Upload(x, vals)
			d := engine.ToDense(x)
			if !d.Shape().Eq(tensor.Shape(c.shape)) {
				t.Fatalf("ToDense shape %v, want %v", d.Shape(), c.shape)
			}
			got := d.Data().([]float32)
			for i := range vals {
				if got[i] != vals[i] {
					t.Fatalf("ToDense element %d = %v, want %v", i, got[i], vals[i])
				}
			}
			y, err := engine.FromDense(b, d)
			if err != nil {
				t.Fatal(err)
			}
			if !equalInts(y.Shape(), c.shape) {
				t.Fatalf("FromDense shape %v, want %v", y.Shape(), c.shape)
			}
			for i, v := range b.Download(y) {
				if v != vals[i] {
					t.Fatalf("FromDense element %d = %v, want %v", i, v, vals[i])
				}
			}
		})
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestFromDenseLayouts(t *testing.T) {
	b := cpu.New()
	base := []float64{1, 2, 3, 4, 5, 6} // [[1 2 3] [4 5 6]]
	tests := []struct {
		name  string
		make  func() *tensor.Dense
		shape []int
		want  []float32
	}{
		{"float64", func() *tensor.Dense {
			return tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(append([]float64(nil), base...)))
		}, []int{2, 3}, []float32{1, 2, 3, 4, 5, 6}},
		{"transposed view", func() *tensor.Dense {
			d := tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(append([]float64(nil), base...)))
			if err := d.T(); err != nil {
				t.Fatal(err)
			}
			return d
		}, []int{3, 2}, []float32{1, 4, 2, 5, 3, 6}},
		{"column slice view", func() *tensor.Dense {
			d := tensor.New(tensor.WithShape(2, 3), tensor.WithBacking(append([]float64(nil), base...)))
			v, err := d.Slice(nil, tensor.S(1, 3))
			if err != nil {
				t.Fatal(err)
			}
			return v.(*tensor.Dense)
		}, []int{2, 2}, []float32{2, 3, 5, 6}},
		{"float32 scalar", func() *tensor.Dense { return tensor.New(tensor.FromScalar(float32(2.5))) }, nil, []float32{2.5}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			x, err := engine.FromDense(b, tc.make())
			if err != nil {
				t.Fatal(err)
			}
			if !equalInts(x.Shape(), tc.shape) {
				t.Fatalf("shape %v, want %v", x.Shape(), tc.shape)
			}
			got := b.Download(x)
			for i := range tc.want {
				if got[i] != tc.want[i] {
					t.Fatalf("element %d = %v, want %v (all %v)", i, got[i], tc.want[i], got)
				}
			}
		})
	}
}

func TestFromDenseRejectsOtherDtypes(t *testing.T) {
	b := cpu.New()
	for _, d := range []*tensor.Dense{
		tensor.New(tensor.WithShape(2), tensor.WithBacking([]int{1, 2})),
		tensor.New(tensor.WithShape(2), tensor.WithBacking([]bool{true, false})),
		nil,
	} {
		if _, err := engine.FromDense(b, d); err == nil {
			t.Errorf("FromDense(%v) succeeded, want an error", d)
		}
	}
}

func TestToDenseOtherDtypes(t *testing.T) {
	b := cpu.New()
	ids := b.Alloc(engine.Int32, 3)
	b.UploadInt32(ids, []int32{7, -1, 3})
	if got := engine.ToDense(ids).Data().([]int32); got[0] != 7 || got[1] != -1 || got[2] != 3 {
		t.Errorf("ToDense Int32 = %v", got)
	}
	h := b.Alloc(engine.BFloat16, 2)
	b.Upload(h, []float32{1.5, float32(math.Inf(-1))})
	if got := engine.ToDense(h).Data().([]float32); got[0] != 1.5 || !math.IsInf(float64(got[1]), -1) {
		t.Errorf("ToDense BFloat16 = %v", got)
	}
	s := b.Alloc(engine.Float32)
	b.Upload(s, []float32{4})
	if d := engine.ToDense(s); !d.IsScalar() || d.ScalarValue().(float32) != 4 {
		t.Errorf("ToDense of a scalar = %v", d)
	}
}
