package model

import "github.com/gotune/gotune/engine"

// SetPrecision switches the model to precision policy p (see
// engine.Precision): frozen parameters are stored in p's dtype, trainable
// matrices get compute copies, and activation buffers are reallocated in
// p's activation dtype on the next pass. Call it once trainability is
// final (after a fine-tuning method is applied); the trainer does.
// Parameters loaded into bfloat16 (Options.Storage) that p keeps in
// float32 are re-read from their checkpoint, so an F32 or F16 source
// gives exact float32 masters.
func (m *Transformer) SetPrecision(p engine.Precision) error {
	m.ReleaseActivations()
	if err := m.loadMasters(p); err != nil {
		return err
	}
	engine.ApplyPrecision(m.be, m.Params(), p)
	m.prec = p
	m.dropSource()
	return m.be.Synchronize()
}

// Precision returns the policy set by SetPrecision (PrecisionFP32 until then).
func (m *Transformer) Precision() engine.Precision { return m.prec }

// ActBuffer returns t when it is a tensor of dtype dt, else a new zero
// tensor of dtype dt and the given shape (freeing t): methods' activation
// buffers follow the dtype of the compute copies they feed or come from
// (Param.Compute), bfloat16 once SetPrecision has applied PrecisionBF16.
func ActBuffer(be engine.Backend, t *engine.Tensor, dt engine.DType, shape ...int) *engine.Tensor {
	if t != nil && t.DType() == dt {
		return t
	}
	if t != nil {
		be.Free(t)
	}
	return be.Alloc(dt, shape...)
}
