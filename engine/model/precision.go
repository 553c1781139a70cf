package model

import "github.com/gotune/gotune/engine"

// SetPrecision switches the model to precision policy p (see
// engine.Precision): frozen parameters are stored in p's dtype, trainable
// matrices get compute copies, and activation buffers are reallocated in
// p's activation dtype on the next pass. Call it once trainability is
// final (after a fine-tuning method is applied); the trainer does.
func (m *Transformer) SetPrecision(p engine.Precision) error {
	m.ReleaseActivations()
	engine.ApplyPrecision(m.be, m.Params(), p)
	m.prec = p
	return m.be.Synchronize()
}

// Precision returns the policy set by SetPrecision (PrecisionFP32 until then).
func (m *Transformer) Precision() engine.Precision { return m.prec }
