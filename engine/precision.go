package engine

import "fmt"

// Precision is a training run's numeric policy: which dtype activations,
// frozen weights and matrix-product operands use. It is chosen once per
// run (gotune train --precision) and read by the model (activation
// buffers, weight storage) and the trainer (compute copies); no other code
// tests it.
//
// In PrecisionBF16, following torch.autocast(dtype=bfloat16):
//   - every matrix product takes bfloat16 operands and accumulates in
//     float32 (tensor cores on the GPU); its output is bfloat16 unless it is
//     a float32 gradient buffer;
//   - frozen parameters are stored only in bfloat16;
//   - trainable matrices keep a float32 master (W, updated by AdamW with
//     float32 moments and float32 gradients) and a bfloat16 compute copy
//     (C) refreshed after every optimizer step;
//   - the residual stream, normalisation statistics, softmax and the loss
//     stay float32.
type Precision uint8

const (
	// PrecisionFP32 computes everything in float32 (the default, and the
	// only policy whose results match PyTorch's float32 goldens exactly).
	PrecisionFP32 Precision = iota
	// PrecisionBF16 is mixed precision with bfloat16 compute (see Precision).
	PrecisionBF16
)

// String returns the flag spelling: "fp32" or "bf16".
func (p Precision) String() string {
	switch p {
	case PrecisionFP32:
		return "fp32"
	case PrecisionBF16:
		return "bf16"
	default:
		return fmt.Sprintf("Precision(%d)", uint8(p))
	}
}

// ParsePrecision reads a precision name (gotune's --precision). "auto" resolves to bf16 when
// gpu is true and fp32 otherwise (the CPU's float32 path is its reference).
func ParsePrecision(s string, gpu bool) (Precision, error) {
	switch s {
	case "fp32":
		return PrecisionFP32, nil
	case "bf16":
		return PrecisionBF16, nil
	case "auto", "":
		if gpu {
			return PrecisionBF16, nil
		}
		return PrecisionFP32, nil
	}
	return 0, fmt.Errorf("precision %q: want bf16, fp32 or auto", s)
}

// ActDType is the dtype of activations that feed matrix products (and of
// the gradients that do): BFloat16 under PrecisionBF16, else Float32.
func (p Precision) ActDType() DType {
	if p == PrecisionBF16 {
		return BFloat16
	}
	return Float32
}

// PrecisionModel is implemented by models that can run under a Precision.
// SetPrecision must be called after trainability is final (fine-tuning
// methods applied): it stores frozen parameters in the policy's dtype,
// gives trainable matrices their compute copies and reallocates
// activation buffers.
type PrecisionModel interface {
	SetPrecision(p Precision) error
}

// ApplyPrecision converts params to policy p: under PrecisionBF16 frozen
// parameters are stored in bfloat16 (their float32 storage freed) and
// trainable matrices (rank >= 2, the matrix-product operands) get a
// bfloat16 compute copy C; under PrecisionFP32 everything returns to
// float32 storage without copies. Params shared by several modules (tied
// embeddings) appear once.
func ApplyPrecision(be Backend, params []*Param, p Precision) {
	dt := p.ActDType()
	for _, q := range params {
		want := Float32
		if !q.Trainable {
			want = dt
		}
		if q.W.DType() != want {
			w := be.Alloc(want, q.W.Shape()...)
			be.Copy(w, q.W)
			be.Free(q.W)
			q.W = w
		}
		needC := q.Trainable && dt != Float32 && len(q.W.Shape()) >= 2
		switch {
		case needC && q.C == nil:
			q.C = be.Alloc(dt, q.W.Shape()...)
		case !needC && q.C != nil:
			be.Free(q.C)
			q.C = nil
		}
	}
	RefreshCompute(be, params)
}

// RefreshCompute copies every master W into its compute copy C (rounding
// to C's dtype): the trainer calls it after each optimizer step and after
// restoring a checkpoint.
func RefreshCompute(be Backend, params []*Param) {
	for _, q := range params {
		if q.C != nil {
			be.Copy(q.C, q.W)
		}
	}
}
