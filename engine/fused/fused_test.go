package fused_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/fused"
)

// upload returns a tensor of the given shape holding vals.
func upload(be engine.Backend, vals []float32, shape ...int) *engine.Tensor {
	t := be.Alloc(engine.Float32, shape...)
	be.Upload(t, vals)
	return t
}

// ExampleLoRAForward computes a LoRA projection over a GPT-2 Conv1D base
// weight (stored [in, out]) on the CPU, where the recipe is composed from
// Backend operations: y = x·W + s·(x·Aᵀ)·Bᵀ.
func ExampleLoRAForward() {
	be := cpu.New()
	x := upload(be, []float32{1, 2}, 1, 2)
	l := fused.LoRA{
		W:      upload(be, []float32{1, 0, 0, 1}, 2, 2), // identity, [in, out]
		Layout: fused.InOut,
		A:      upload(be, []float32{1, 1}, 1, 2),
		B:      upload(be, []float32{1, 0}, 2, 1),
		Scale:  0.5,
	}
	y, xa := be.Alloc(engine.Float32, 1, 2), be.Alloc(engine.Float32, 1, 1)
	fused.LoRAForward(be, y, xa, x, nil, l)
	fmt.Println(be.Download(y), be.Download(xa))
	// Output: [2.5 2] [1.5]
}

// TestShapeChecks checks that operands which do not fit panic with a
// message naming the operation and the tensor.
func TestShapeChecks(t *testing.T) {
	be := cpu.New()
	m := func(r, c int) *engine.Tensor { return be.Alloc(engine.Float32, r, c) }
	lora := func(w *engine.Tensor, layout fused.Layout) fused.LoRA {
		return fused.LoRA{W: w, Layout: layout, A: m(2, 4), B: m(3, 2), Scale: 1}
	}
	adapter := fused.Bottleneck{Down: m(2, 4), Up: m(4, 2), Scale: 1}
	for _, tc := range []struct {
		name, want string
		call       func()
	}{
		{"torch layout given [in, out]", "does not take the 4 features", func() {
			fused.LoRAForward(be, m(5, 3), m(5, 2), m(5, 4), nil, lora(m(4, 3), fused.OutIn))
		}},
		{"Conv1D layout given [out, in]", "does not take the 4 features", func() {
			fused.LoRAForward(be, m(5, 3), m(5, 2), m(5, 4), nil, lora(m(3, 4), fused.InOut))
		}},
		{"unknown layout", "unknown weight layout", func() {
			fused.LoRAForward(be, m(5, 3), m(5, 2), m(5, 4), nil, lora(m(3, 4), fused.Layout(7)))
		}},
		{"dxl of the wrong shape", "must be [5, 4]", func() {
			fused.LoRABackward(be, nil, m(5, 3), nil, nil, m(5, 3), m(5, 4), m(5, 2), lora(m(3, 4), fused.OutIn))
		}},
		{"residual of the wrong shape", "must be [5, 4]", func() {
			fused.AdapterForward(be, m(5, 4), m(5, 2), m(5, 2), m(5, 4), m(4, 5), adapter)
		}},
		{"adapter without saved activations", "must be [5, 2]", func() {
			fused.AdapterBackward(be, nil, m(5, 4), nil, nil, nil, nil, m(5, 4), m(5, 4), nil, m(5, 2), adapter)
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			defer func() {
				msg := fmt.Sprint(recover())
				require.Contains(t, msg, "fused.")
				require.Contains(t, msg, tc.want)
			}()
			tc.call()
		})
	}
}
