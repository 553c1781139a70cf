package prompt

import (
	"fmt"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/model"
)

// lstmDir is one direction of one layer of torch.nn.LSTM, run over a
// single sequence of P steps from a zero state. Gates are in torch's
// order (input, forget, cell, output):
//
//	g_t = x_t·W_ihᵀ + b_ih + h_prev·W_hhᵀ + b_hh
//	c_t = σ(f)⊙c_prev + σ(i)⊙tanh(g̃),   h_t = σ(o)⊙tanh(c_t)
//
// where "prev" is step t-1, or t+1 for the reverse direction (whose
// outputs stay aligned with their input positions, as torch's are).
// Everything goes through the backend, step by step: P is the number of
// virtual tokens, tens at most, so the recurrence's short launches cost
// little next to the transformer.
type lstmDir struct {
	wih, whh, bih, bhh *engine.Param // [4H, in], [4H, H], [4H], [4H]
	reverse            bool
	be                 engine.Backend
	P, H, in           int

	// Forward state, kept for backward.
	g4    *engine.Tensor // pre-activation gates [P, 4H]
	g     *engine.Tensor // the same storage as [4P, H]: row 4t+k is gate k of step t
	a     *engine.Tensor // activated gates [4P, H]
	c, tc *engine.Tensor // cell state and tanh(cell) [P, H]
	h     *engine.Tensor // outputs [P, H]

	// Backward scratch.
	dg4        *engine.Tensor // [P, 4H]
	dg         *engine.Tensor // [4P, H] view of dg4
	dH         *engine.Tensor // gradient of the outputs [P, H]
	dh, dhNext *engine.Tensor // [1, H]
	dc, dcNext *engine.Tensor // [1, H]
	tmp        *engine.Tensor // [1, H]
}

// newLSTMDir allocates a direction's tensors, named as torch's state dict
// names them under prefix (e.g. "prompt_encoder.lstm_head."): weight_ih_l0,
// weight_hh_l0, bias_ih_l0, bias_hh_l0, with "_reverse" for the reverse
// direction. Biases get no weight decay (the Hugging Face Trainer drops
// every name containing "bias").
func newLSTMDir(be engine.Backend, prefix string, layer int, reverse bool, P, in, H int) *lstmDir {
	sfx := fmt.Sprintf("_l%d", layer)
	if reverse {
		sfx += "_reverse"
	}
	p := func(name string, decay bool, shape ...int) *engine.Param {
		return &engine.Param{Name: prefix + name + sfx, W: be.Alloc(engine.Float32, shape...), Decay: decay}
	}
	d := &lstmDir{
		wih: p("weight_ih", true, 4*H, in), whh: p("weight_hh", true, 4*H, H),
		bih: p("bias_ih", false, 4*H), bhh: p("bias_hh", false, 4*H),
		reverse: reverse, be: be, P: P, H: H, in: in,
	}
	f := func(shape ...int) *engine.Tensor { return be.Alloc(engine.Float32, shape...) }
	d.g4 = f(P, 4*H)
	d.g = d.g4.Reshape(4*P, H)
	d.a = f(4*P, H)
	d.c, d.tc, d.h = f(P, H), f(P, H), f(P, H)
	return d
}

// params returns the direction's tensors in torch's state-dict order.
func (d *lstmDir) params() []*engine.Param {
	return []*engine.Param{d.wih, d.whh, d.bih, d.bhh}
}

// order returns the steps in processing order.
func (d *lstmDir) order() []int {
	out := make([]int, d.P)
	for i := range out {
		out[i] = i
		if d.reverse {
			out[i] = d.P - 1 - i
		}
	}
	return out
}

// row returns row r of a [rows, H] tensor as [1, H].
func row(t *engine.Tensor, r int) *engine.Tensor { return t.Slice(r, r+1) }

// forward runs the direction over x [P, in]; the outputs are in d.h.
func (d *lstmDir) forward(x *engine.Tensor) {
	be := d.be
	be.Gemm(d.g4, x, d.wih.Compute(), false, true, 1, 0)
	be.AddBias(d.g4, d.bih.W)
	be.AddBias(d.g4, d.bhh.W)
	if d.tmp == nil {
		d.tmp = be.Alloc(engine.Float32, 1, d.H)
	}
	prev := -1
	for _, t := range d.order() {
		if prev >= 0 {
			be.Gemm(row(d.g4, t), row(d.h, prev), d.whh.Compute(), false, true, 1, 1)
		}
		gi, ai := 4*t, 4*t
		be.Activation(d.a.Slice(ai, ai+2), d.g.Slice(gi, gi+2), engine.ActSigmoid) // i, f
		be.Activation(row(d.a, ai+2), row(d.g, gi+2), engine.ActTanh)              // g̃
		be.Activation(row(d.a, ai+3), row(d.g, gi+3), engine.ActSigmoid)           // o
		ct := row(d.c, t)
		be.Mul(ct, row(d.a, ai), row(d.a, ai+2))
		if prev >= 0 {
			be.Mul(d.tmp, row(d.a, ai+1), row(d.c, prev))
			be.Add(ct, ct, d.tmp)
		}
		be.Activation(row(d.tc, t), ct, engine.ActTanh)
		be.Mul(row(d.h, t), row(d.a, ai+3), row(d.tc, t))
		prev = t
	}
}

// ensureBackward allocates the backward scratch.
func (d *lstmDir) ensureBackward() {
	if d.dg4 != nil {
		return
	}
	f := func(shape ...int) *engine.Tensor { return d.be.Alloc(engine.Float32, shape...) }
	d.dg4 = f(d.P, 4*d.H)
	d.dg = d.dg4.Reshape(4*d.P, d.H)
	d.dH = f(d.P, d.H)
	d.dh, d.dhNext, d.dc, d.dcNext = f(1, d.H), f(1, d.H), f(1, d.H), f(1, d.H)
}

// backward backpropagates d.dH (the gradient of the outputs, filled by
// the caller) through time, accumulating into the trainable weights and,
// when dx is not nil, into dx [P, in] (+=). x is the forward input.
func (d *lstmDir) backward(x, dx *engine.Tensor) {
	be := d.be
	be.Fill(d.dg4, 0)
	be.Fill(d.dhNext, 0)
	be.Fill(d.dcNext, 0)
	order := d.order()
	for k := len(order) - 1; k >= 0; k-- {
		t := order[k]
		gi := 4 * t
		// dh: from the output, plus from the step that read h_t.
		be.Add(d.dh, row(d.dH, t), d.dhNext)
		// h = o ⊙ tanh(c)
		be.Mul(d.tmp, d.dh, row(d.tc, t))
		be.ActivationBackward(row(d.dg, gi+3), d.tmp, row(d.g, gi+3), engine.ActSigmoid)
		be.Mul(d.tmp, d.dh, row(d.a, gi+3))
		be.Copy(d.dc, d.dcNext)
		be.ActivationBackward(d.dc, d.tmp, row(d.c, t), engine.ActTanh)
		// c = f ⊙ c_prev + i ⊙ g̃
		be.Mul(d.tmp, d.dc, row(d.a, gi+2))
		be.ActivationBackward(row(d.dg, gi), d.tmp, row(d.g, gi), engine.ActSigmoid)
		be.Mul(d.tmp, d.dc, row(d.a, gi))
		be.ActivationBackward(row(d.dg, gi+2), d.tmp, row(d.g, gi+2), engine.ActTanh)
		if k > 0 {
			prev := order[k-1]
			be.Mul(d.tmp, d.dc, row(d.c, prev))
			be.ActivationBackward(row(d.dg, gi+1), d.tmp, row(d.g, gi+1), engine.ActSigmoid)
			be.Mul(d.dcNext, d.dc, row(d.a, gi+1))
			be.Gemm(d.dhNext, row(d.dg4, t), d.whh.Compute(), false, false, 1, 0) // [1,4H]·[4H,H]
		}
	}
	if g := model.Grad(d.whh); g != nil && d.P > 1 {
		// Step t read h_{t-1} (forward) or h_{t+1} (reverse).
		if d.reverse {
			be.Gemm(g, d.dg4.Slice(0, d.P-1), d.h.Slice(1, d.P), true, false, 1, 1)
		} else {
			be.Gemm(g, d.dg4.Slice(1, d.P), d.h.Slice(0, d.P-1), true, false, 1, 1)
		}
	}
	if g := model.Grad(d.wih); g != nil {
		be.Gemm(g, d.dg4, x, true, false, 1, 1)
	}
	if g := model.Grad(d.bih); g != nil {
		be.SumRows(g, d.dg4)
	}
	if g := model.Grad(d.bhh); g != nil {
		be.SumRows(g, d.dg4)
	}
	if dx != nil {
		be.Gemm(dx, d.dg4, d.wih.Compute(), false, false, 1, 1) // [P,4H]·[4H,in]
	}
}

// trainable reports whether any of the direction's tensors trains.
func (d *lstmDir) trainable() bool {
	for _, p := range d.params() {
		if p.Trainable {
			return true
		}
	}
	return false
}

// lstm is a bidirectional multi-layer torch.nn.LSTM (batch_first, no
// dropout) over one sequence: layer k reads the concatenated [P, 2H]
// outputs of layer k-1 (forward direction first).
type lstm struct {
	be     engine.Backend
	P, H   int
	dirs   [][2]*lstmDir
	outs   []*engine.Tensor // each layer's [P, 2H] output
	dOuts  []*engine.Tensor // their gradients
	inputs []*engine.Tensor // each layer's input (set by forward)
}

func newLSTM(be engine.Backend, prefix string, P, in, H, layers int) *lstm {
	l := &lstm{be: be, P: P, H: H}
	for k := 0; k < layers; k++ {
		n := in
		if k > 0 {
			n = 2 * H
		}
		l.dirs = append(l.dirs, [2]*lstmDir{
			newLSTMDir(be, prefix, k, false, P, n, H),
			newLSTMDir(be, prefix, k, true, P, n, H),
		})
		l.outs = append(l.outs, be.Alloc(engine.Float32, P, 2*H))
	}
	l.inputs = make([]*engine.Tensor, layers)
	return l
}

// params returns every tensor, layer by layer, forward direction first.
func (l *lstm) params() []*engine.Param {
	var out []*engine.Param
	for _, pair := range l.dirs {
		out = append(out, pair[0].params()...)
		out = append(out, pair[1].params()...)
	}
	return out
}

// forward runs every layer over x [P, in] and returns the last layer's
// output [P, 2H].
func (l *lstm) forward(x *engine.Tensor) *engine.Tensor {
	be, P, H := l.be, l.P, l.H
	for k, pair := range l.dirs {
		l.inputs[k] = x
		for j, d := range pair {
			d.forward(x)
			be.CopyBlock(l.outs[k], j*H, 2*H, d.h, 0, H, P, H, false)
		}
		x = l.outs[k]
	}
	return x
}

// backward backpropagates dOut [P, 2H], the gradient of the last
// layer's output, accumulating into every trainable tensor and, when dx
// is not nil, into dx [P, in] (+=).
func (l *lstm) backward(dOut, dx *engine.Tensor) {
	be, P, H := l.be, l.P, l.H
	if l.dOuts == nil {
		for range l.dirs {
			l.dOuts = append(l.dOuts, be.Alloc(engine.Float32, P, 2*H))
		}
	}
	for k := len(l.dirs) - 1; k >= 0; k-- {
		var din *engine.Tensor
		switch {
		case k == 0:
			din = dx
		case dx != nil || l.trainableBelow(k):
			din = l.dOuts[k-1]
			be.Fill(din, 0)
		}
		if din == nil && !l.dirs[k][0].trainable() && !l.dirs[k][1].trainable() {
			return // nothing at or below this layer wants a gradient
		}
		for j, d := range l.dirs[k] {
			d.ensureBackward()
			be.CopyBlock(d.dH, 0, H, dOut, j*H, 2*H, P, H, false)
			d.backward(l.inputs[k], din)
		}
		if din == nil {
			return
		}
		dOut = din
	}
}

// trainableBelow reports whether a layer below k has trainable tensors.
func (l *lstm) trainableBelow(k int) bool {
	for i := 0; i < k; i++ {
		if l.dirs[i][0].trainable() || l.dirs[i][1].trainable() {
			return true
		}
	}
	return false
}
