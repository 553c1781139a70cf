package model

import "github.com/gotune/gotune/engine"

// normStats are the per-row statistics a normalisation saves for its
// backward pass (mean is nil for RMSNorm).
type normStats struct {
	mean, rstd *engine.Tensor
}

// norm is a row-wise normalisation with a learned scale: RMSNorm for the
// LLaMA family, LayerNorm for GPT-2.
type norm interface {
	Module
	forward(out *engine.Tensor, st normStats, x *engine.Tensor)
	// backward accumulates dx (when non-nil) and the trainable parameters'
	// gradients.
	backward(dx, dout, x *engine.Tensor, st normStats)
	// centered reports whether the norm needs a mean buffer (LayerNorm).
	centered() bool
}

// RMSNorm is x / sqrt(mean(x²) + eps) ⊙ weight (LlamaRMSNorm).
type RMSNorm struct {
	// Weight is the [hidden] scale.
	Weight *engine.Param
	// Eps is rms_norm_eps.
	Eps float32
}

// Params returns the scale.
func (n *RMSNorm) Params() []*engine.Param { return []*engine.Param{n.Weight} }

func (n *RMSNorm) forward(out *engine.Tensor, st normStats, x *engine.Tensor) {
	n.Weight.W.Backend().RMSNorm(out, st.rstd, x, n.Weight.W, n.Eps)
}

func (n *RMSNorm) backward(dx, dout, x *engine.Tensor, st normStats) {
	dw := Grad(n.Weight)
	if dx == nil && dw == nil {
		return
	}
	n.Weight.W.Backend().RMSNormBackward(dx, dw, dout, x, n.Weight.W, st.rstd)
}

func (n *RMSNorm) centered() bool { return false }

// OffsetRMSNorm is x / sqrt(mean(x²) + eps) ⊙ (1 + weight): Gemma's
// RMSNorm, whose stored weight is an offset from 1 (transformers
// initialises it to zero). It is the backend's RMSNorm with the scale
// 1 + weight, rebuilt from the weight on every forward pass (two
// [width] operations); the scale's gradient is the weight's.
type OffsetRMSNorm struct {
	// Weight is the [width] offset.
	Weight *engine.Param
	// Eps is rms_norm_eps.
	Eps   float32
	scale *engine.Tensor // 1 + Weight in float32, as transformers computes it
}

// Params returns the offset.
func (n *OffsetRMSNorm) Params() []*engine.Param { return []*engine.Param{n.Weight} }

func (n *OffsetRMSNorm) forward(out *engine.Tensor, st normStats, x *engine.Tensor) {
	be := n.Weight.W.Backend()
	if n.scale == nil {
		n.scale = be.Alloc(engine.Float32, n.Weight.W.Len())
	}
	be.Fill(n.scale, 1)
	be.Add(n.scale, n.scale, n.Weight.W)
	be.RMSNorm(out, st.rstd, x, n.scale, n.Eps)
}

func (n *OffsetRMSNorm) backward(dx, dout, x *engine.Tensor, st normStats) {
	dw := Grad(n.Weight)
	if dx == nil && dw == nil {
		return
	}
	n.Weight.W.Backend().RMSNormBackward(dx, dw, dout, x, n.scale, st.rstd)
}

func (n *OffsetRMSNorm) centered() bool { return false }

// LayerNorm is (x - mean) / sqrt(var + eps) ⊙ weight + bias (torch.nn.LayerNorm).
type LayerNorm struct {
	// Weight is the [hidden] scale.
	Weight *engine.Param
	// Bias is the [hidden] shift.
	Bias *engine.Param
	// Eps is layer_norm_epsilon.
	Eps float32
}

// Params returns the scale and the shift.
func (n *LayerNorm) Params() []*engine.Param { return []*engine.Param{n.Weight, n.Bias} }

func (n *LayerNorm) forward(out *engine.Tensor, st normStats, x *engine.Tensor) {
	n.Weight.W.Backend().LayerNorm(out, st.mean, st.rstd, x, n.Weight.W, n.Bias.W, n.Eps)
}

func (n *LayerNorm) backward(dx, dout, x *engine.Tensor, st normStats) {
	dw, db := Grad(n.Weight), Grad(n.Bias)
	if dx == nil && dw == nil && db == nil {
		return
	}
	n.Weight.W.Backend().LayerNormBackward(dx, dw, db, dout, x, n.Weight.W, st.mean, st.rstd)
}

func (n *LayerNorm) centered() bool { return true }

// Embedding is a lookup table [rows, hidden]: token embeddings, and GPT-2's
// learned position embeddings.
type Embedding struct {
	// Weight is the table.
	Weight *engine.Param
}

// Params returns the table.
func (e *Embedding) Params() []*engine.Param { return []*engine.Param{e.Weight} }
