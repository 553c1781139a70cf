package model

import "github.com/gotune/gotune/engine"

// Base-model dropout, as the config asks for it (hfconfig's
// AttentionDropout, ResidDropout, EmbdDropout), in training passes only:
// on the attention probabilities (AttentionOptions.Dropout), on each
// sub-layer's output inside the sub-layer (before adapter hooks and the
// residual add) and on the first layer's input. Every mask is
// engine.DropoutKeep of a seed derived from the run's seed, the training
// pass the trainer announced (SetTrainingPass) and the site, so the
// backward pass, gradient checkpointing's recomputation and a resumed run
// all see the masks the forward pass of an uninterrupted run drew, with
// no generator state to carry. (LoRA's lora_dropout keeps its own
// checkpointed generator: PEFT's masks are host-drawn per module.)

// dropoutDraw is what this model's masks derive from.
type dropoutDraw struct {
	seed uint64
	pass engine.TrainingPass
}

// maskSeed returns the seed of the mask at site of layer l.
func (d dropoutDraw) maskSeed(l int, site engine.DropoutSite) uint64 {
	return engine.DropoutMaskSeed(d.seed, d.pass, l, site)
}

// SetDropoutSeed sets the run's seed the base model's dropout masks
// derive from (the --seed of a training run).
func (m *Transformer) SetDropoutSeed(seed uint64) { m.drop.seed = seed }

// SetTrainingPass tells the model which training pass the next
// ForwardBackward is (engine.TrainingPassSetter): its dropout masks are a
// pure function of the seed and the pass.
func (m *Transformer) SetTrainingPass(p engine.TrainingPass) { m.drop.pass = p }

// dropout applies dropout prob at site of layer l to x in place, in a
// training pass; otherwise it does nothing. Applied to a gradient, it is
// the dropout's backward.
func (m *Transformer) dropout(p *pass, x *engine.Tensor, prob float32, l int, site engine.DropoutSite) {
	if p.train && prob > 0 {
		m.be.Dropout(x, x, prob, m.drop.maskSeed(l, site))
	}
}

// dropoutGrad returns the gradient of a dropout's input given dy, its
// output's gradient: dy itself when the pass applied no dropout there,
// else dy through the mask, written to dst (dy may be a buffer the caller
// still needs).
func (m *Transformer) dropoutGrad(p *pass, dst, dy *engine.Tensor, prob float32, l int, site engine.DropoutSite) *engine.Tensor {
	if !p.train || prob == 0 {
		return dy
	}
	m.be.Dropout(dst, dy, prob, m.drop.maskSeed(l, site))
	return dst
}
