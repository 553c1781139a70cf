package model

import "github.com/gotune/gotune/engine"

// Gradient checkpointing: a training pass keeps only each layer's input
// (the residual stream entering it) for the layers backward visits; every
// other activation lives in one set of buffers shared by all layers. The
// backward pass runs each layer's forward again from its kept input just
// before backpropagating through it, so activation memory is one layer's
// worth plus one [N, hidden] tensor per layer, at the price of a second
// forward pass through the trainable layers.
//
// The recomputation is bit-identical to the first forward: it runs the same
// backend operations on the same inputs, and modules whose training
// forward draws random numbers (LoRA dropout) implement RandomForward, so
// their stream is rewound to where the first forward drew from.

// RandomForward is implemented by modules (Linears, SublayerHooks) whose
// training Forward draws random numbers, e.g. a dropout mask. With
// gradient checkpointing the model runs a layer's forward twice; it saves
// the state before the first run and restores it for the second, so both
// draw the same numbers, and then puts back the state the first run left.
type RandomForward interface {
	// ForwardRandState returns the state the next training Forward draws
	// from. The value is opaque to the caller and must stay valid after
	// later Forwards (a copy, not a pointer into the live state).
	ForwardRandState() any
	// SetForwardRandState restores a state ForwardRandState returned.
	SetForwardRandState(state any)
}

// moduleRand is one module's saved random state.
type moduleRand struct {
	mod   RandomForward
	state any
}

// SetGradCheckpoint turns gradient checkpointing on or off for the
// following training passes: each layer's activations are recomputed in
// the backward pass from its input instead of being kept (see the
// comment at the top of gradckpt.go). Gradients are bit-identical either
// way; with it, activation memory drops from one set of buffers per
// trainable layer to one set overall, and a step costs about one more
// forward pass through the trainable layers.
func (m *Transformer) SetGradCheckpoint(on bool) { m.gradCheckpoint = on }

// GradCheckpoint reports whether gradient checkpointing is on.
func (m *Transformer) GradCheckpoint() bool { return m.gradCheckpoint }

// checkpointedLayers lays out the per-layer views of a recomputing pass:
// every layer uses work's buffers except for its input x. Layers at or
// above k.lowLayer keep their own input (layer 0 uses work's); frozen
// layers below alternate between two inputs, since only the forward pass
// reads them.
func checkpointedLayers(k actKey, L int, work *layerActs, alloc func() *engine.Tensor) []*layerActs {
	layers := make([]*layerActs, L)
	for l := 0; l < L; l++ {
		a := *work
		switch {
		case l == 0:
		case l < k.lowLayer && l >= 2:
			a.x = layers[l-2].x
		default:
			a.x = alloc()
		}
		layers[l] = &a
	}
	return layers
}

// layerModules returns layer l's modules that may hold forward state:
// its projections and hooks.
func (m *Transformer) layerModules(l int) []Module {
	b := m.blocks[l]
	out := make([]Module, 0, 10)
	for _, mod := range []Module{b.q, b.k, b.v, b.qkv, b.o, b.gate, b.up, b.gateUp, b.down} {
		if mod != nil {
			out = append(out, mod)
		}
	}
	for _, h := range b.hooks {
		if h != nil {
			out = append(out, h)
		}
	}
	return out
}

// saveLayerRand records, before layer l's first forward in a recomputing
// pass, the random state of its modules that draw random numbers.
func (m *Transformer) saveLayerRand(l int, a *layerActs) {
	a.rand = a.rand[:0]
	for _, mod := range m.layerModules(l) {
		if r, ok := mod.(RandomForward); ok {
			a.rand = append(a.rand, moduleRand{mod: r, state: r.ForwardRandState()})
		}
	}
}

// recomputeLayer runs layer l's forward again from its kept input,
// refilling the shared buffers a views, with every module drawing the
// random numbers it drew the first time. The layer's output is not
// written: the next layer's input already holds it.
func (m *Transformer) recomputeLayer(l int, p *pass, a *layerActs) {
	after := make([]any, len(a.rand))
	for i, r := range a.rand {
		after[i] = r.mod.ForwardRandState()
		r.mod.SetForwardRandState(r.state)
	}
	m.blockForward(l, p, a, nil)
	for i, r := range a.rand {
		r.mod.SetForwardRandState(after[i])
	}
}
