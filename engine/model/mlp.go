package model

import "github.com/gotune/gotune/engine"

// mlpForward runs the MLP sub-layer of block l: down(act(gate(x)) ⊙
// up(x)) for the gated families (SwiGLU with silu, GeGLU with
// gelu_tanh: Gemma), c_proj(gelu_new(c_fc(x))) for GPT-2. It reads a.xn2
// and writes a.h2.
func (m *Transformer) mlpForward(l int, p *pass, a *layerActs) {
	be, blk := m.be, m.blocks[l]
	if blk.gate != nil {
		blk.gate.Forward(a.f1, a.xn2, p.train)
		blk.up.Forward(a.f2, a.xn2, p.train)
		if blk.act == engine.ActGELUTanh {
			be.GeGLU(a.fa, a.f1, a.f2)
		} else {
			be.SwiGLU(a.fa, a.f1, a.f2)
		}
	} else {
		blk.up.Forward(a.f1, a.xn2, p.train)
		be.Activation(a.fa, a.f1, blk.act)
	}
	blk.down.Forward(a.h2, a.fa, p.train)
	m.dropout(p, a.h2, m.d.residDrop, l, engine.DropoutMLPOutput)
}

// mlpBackward backpropagates dh (the gradient of a.h2) into dxn (nil when
// not needed) and every trainable parameter of the MLP, skipping whatever
// no requested gradient depends on.
func (m *Transformer) mlpBackward(l int, p *pass, a *layerActs, dh, dxn *engine.Tensor) {
	be, blk, s := m.be, m.blocks[l], p.s
	dh = m.dropoutGrad(p, s.ddrop, dh, m.d.residDrop, l, engine.DropoutMLPOutput)
	gated := blk.gate != nil
	needGate := gated && (dxn != nil || Trainable(blk.gate))
	needUp := dxn != nil || Trainable(blk.up)
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
	if blk.act == engine.ActGELUTanh {
		be.GeGLUBackward(dg, du, dfa, a.f1, a.f2)
	} else {
		be.SwiGLUBackward(dg, du, dfa, a.f1, a.f2)
	}
	if needGate {
		backLinear(blk.gate, dxn, dg, a.xn2)
	}
	if needUp {
		backLinear(blk.up, dxn, du, a.xn2)
	}
}
