package model

import (
	"github.com/gotune/gotune/engine"
)

// Module is any part of a model that owns parameters. Fine-tuning methods
// find modules by their Hugging Face path (see Model.Modules) and freeze,
// wrap or replace them.
type Module interface {
	// Params returns the module's parameters, trainable or not.
	Params() []*engine.Param
}

// Linear is a learned map from In() to Out() features. Every projection of
// the models is one (attention q/k/v/o, the MLP, GPT-2's fused Conv1D
// c_attn, the LM head), so a method such as LoRA can wrap any of them by
// name with Model.ReplaceLinear.
//
// The model owns the activation buffers: it passes the same x to Backward
// that it passed to the preceding Forward and keeps it alive in between, so
// a Linear needs to remember nothing unless it computes extra
// intermediates (which it may keep itself, e.g. a LoRA's x·Aᵀ).
type Linear interface {
	Module
	// In returns the number of input features.
	In() int
	// Out returns the number of output features.
	Out() int
	// Forward overwrites y (Rows(x)×Out) with the map of x (Rows×In).
	// train is true in training passes (dropout applies) and false for
	// evaluation and generation.
	Forward(y, x *engine.Tensor, train bool)
	// Backward accumulates the gradient of every trainable parameter from
	// dy (the gradient of y from the last Forward) and, when dx is non-nil,
	// accumulates dx += ∂y/∂x·dy. Frozen parameters get nothing.
	Backward(dx, dy, x *engine.Tensor)
}

// Dense is the default Linear: y = x·Wᵀ + b with W stored [out, in]
// (torch.nn.Linear), or, for GPT-2's Conv1D, y = x·W + b with W stored
// [in, out]. The weight keeps the layout it has in the checkpoint so that
// saving is exact and no transpose is ever materialised.
type Dense struct {
	// Weight is [Out, In], or [In, Out] when Conv1D.
	Weight *engine.Param
	// Bias is [Out], or nil.
	Bias *engine.Param
	// Conv1D selects GPT-2's transposed [in, out] weight layout.
	Conv1D bool
}

// In returns the number of input features.
func (d *Dense) In() int {
	if d.Conv1D {
		return d.Weight.W.Dim(0)
	}
	return d.Weight.W.Dim(1)
}

// Out returns the number of output features.
func (d *Dense) Out() int {
	if d.Conv1D {
		return d.Weight.W.Dim(1)
	}
	return d.Weight.W.Dim(0)
}

// Params returns the weight and, if present, the bias.
func (d *Dense) Params() []*engine.Param {
	if d.Bias == nil {
		return []*engine.Param{d.Weight}
	}
	return []*engine.Param{d.Weight, d.Bias}
}

// Forward computes y = x·Wᵀ + b (or x·W + b for Conv1D), reading the
// weight's compute copy under mixed precision.
func (d *Dense) Forward(y, x *engine.Tensor, train bool) {
	be := d.Weight.W.Backend()
	be.Gemm(y, x, d.Weight.Compute(), false, !d.Conv1D, 1, 0)
	if d.Bias != nil {
		be.AddBias(y, d.Bias.W)
	}
}

// Backward accumulates dW, db and dx.
func (d *Dense) Backward(dx, dy, x *engine.Tensor) {
	be := d.Weight.W.Backend()
	if g := Grad(d.Weight); g != nil {
		if d.Conv1D {
			be.Gemm(g, x, dy, true, false, 1, 1) // [in,out] += xᵀ·dy
		} else {
			be.Gemm(g, dy, x, true, false, 1, 1) // [out,in] += dyᵀ·x
		}
	}
	if d.Bias != nil {
		if g := Grad(d.Bias); g != nil {
			be.SumRows(g, dy)
		}
	}
	if dx != nil {
		be.Gemm(dx, dy, d.Weight.Compute(), false, d.Conv1D, 1, 1)
	}
}

// Grad returns p's gradient buffer when p is trainable, else nil: the one
// test every backward pass uses to skip frozen parameters.
func Grad(p *engine.Param) *engine.Tensor {
	if p == nil || !p.Trainable {
		return nil
	}
	return p.G
}

// Trainable reports whether any parameter of m is trainable.
func Trainable(m Module) bool {
	if m == nil {
		return false
	}
	for _, p := range m.Params() {
		if p.Trainable {
			return true
		}
	}
	return false
}

// SetTrainable marks p trainable or frozen, allocating a zero gradient
// buffer on p's backend when it becomes trainable and releasing it when
// frozen, so frozen parameters cost no gradient memory.
func SetTrainable(p *engine.Param, on bool) {
	p.Trainable = on
	switch {
	case on && p.G == nil:
		p.G = p.W.Backend().Alloc(engine.Float32, p.W.Shape()...)
	case !on && p.G != nil:
		p.W.Backend().Free(p.G)
		p.G = nil
	}
}
