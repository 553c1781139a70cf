package model

import "github.com/gotune/gotune/engine"

// mlpForward runs the MLP sub-layer of block l: down(act(gate(x)) ⊙
// up(x)) for the gated families (glu: SwiGLU with silu, GeGLU with
// gelu_tanh for Gemma; gate and up one fused projection for Phi-3 and
// GLM, split with CopyBlock), c_proj(gelu_new(c_fc(x))) for GPT-2. It
// reads a.xn2 and writes a.h2.
func (m *Transformer) mlpForward(l int, p *pass, a *layerActs) {
	be, blk := m.be, m.blocks[l]
	switch {
	case blk.gateUp != nil:
		// gate_up_proj's outputs are [gate | up] (Phi3MLP's chunk(2)).
		I, N := m.d.inter, a.f1.Dim(0)
		blk.gateUp.Forward(p.s.gu, a.xn2, p.train)
		be.CopyBlock(a.f1, 0, I, p.s.gu, 0, 2*I, N, I, false)
		be.CopyBlock(a.f2, 0, I, p.s.gu, I, 2*I, N, I, false)
		m.glu(blk, a)
	case blk.gate != nil:
		blk.gate.Forward(a.f1, a.xn2, p.train)
		blk.up.Forward(a.f2, a.xn2, p.train)
		m.glu(blk, a)
	default:
		blk.up.Forward(a.f1, a.xn2, p.train)
		be.Activation(a.fa, a.f1, blk.act)
	}
	blk.down.Forward(a.h2, a.fa, p.train)
	m.dropout(p, a.h2, m.d.residDrop, l, engine.DropoutMLPOutput)
}

// glu writes a.fa = act(a.f1) ⊙ a.f2 with the gated MLP's activation:
// GeGLU for gelu_tanh (Gemma), SwiGLU otherwise (silu).
func (m *Transformer) glu(blk *block, a *layerActs) {
	if blk.act == engine.ActGELUTanh {
		m.be.GeGLU(a.fa, a.f1, a.f2)
		return
	}
	m.be.SwiGLU(a.fa, a.f1, a.f2)
}

// gluBackward is glu's backward: the gradients dg, du (nil: not needed)
// of a.f1, a.f2 from dfa.
func (m *Transformer) gluBackward(blk *block, dg, du, dfa *engine.Tensor, a *layerActs) {
	if blk.act == engine.ActGELUTanh {
		m.be.GeGLUBackward(dg, du, dfa, a.f1, a.f2)
		return
	}
	m.be.SwiGLUBackward(dg, du, dfa, a.f1, a.f2)
}

// mlpTrainable reports whether block b's MLP projections have anything
// trainable.
func (b *block) mlpTrainable() bool {
	return Trainable(b.gate) || Trainable(b.up) || Trainable(b.gateUp) || Trainable(b.down)
}

// mlpBackward backpropagates dh (the gradient of a.h2) into dxn (nil when
// not needed) and every trainable parameter of the MLP, skipping whatever
// no requested gradient depends on.
func (m *Transformer) mlpBackward(l int, p *pass, a *layerActs, dh, dxn *engine.Tensor) {
	be, blk, s := m.be, m.blocks[l], p.s
	dh = m.dropoutGrad(p, s.ddrop, dh, m.d.residDrop, l, engine.DropoutMLPOutput)
	fused := blk.gateUp != nil
	gated := blk.gate != nil || fused
	needGate := gated && (dxn != nil || Trainable(blk.gate))
	needUp := dxn != nil || Trainable(blk.up)
	if fused {
		// The fused projection needs both gradients or none.
		needGate = dxn != nil || Trainable(blk.gateUp)
		needUp = needGate
	}
	var dfa *engine.Tensor
	if needGate || needUp {
		dfa = s.dfa
		be.Fill(dfa, 0)
	}
	backLinear(blk.down, dfa, dh, a.fa)
	if dfa == nil {
		return
	}
	if !gated {
		be.Fill(s.df1, 0)
		be.ActivationBackward(s.df1, dfa, a.f1, blk.act)
		backLinear(blk.up, dxn, s.df1, a.xn2)
		return
	}
	var dg, du *engine.Tensor
	if needGate {
		dg = s.df1
		be.Fill(dg, 0)
	}
	if needUp {
		du = s.df2
		be.Fill(du, 0)
	}
	m.gluBackward(blk, dg, du, dfa, a)
	if fused {
		I, N := m.d.inter, dg.Dim(0)
		be.CopyBlock(s.dgu, 0, 2*I, dg, 0, I, N, I, false)
		be.CopyBlock(s.dgu, I, 2*I, du, 0, I, N, I, false)
		backLinear(blk.gateUp, dxn, s.dgu, a.xn2)
		return
	}
	if needGate {
		backLinear(blk.gate, dxn, dg, a.xn2)
	}
	if needUp {
		backLinear(blk.up, dxn, du, a.xn2)
	}
}
