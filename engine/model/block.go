package model

import "github.com/gotune/gotune/engine"

// blockForward runs transformer layer l (pre-norm):
//
//	xmid = x + r·hookAttn(attn(norm1(x)), norm1(x), x)
//	out  = xmid + r·hookMLP(mlp(norm2(xmid)), norm2(xmid), xmid)
//
// where an absent hook is the identity on the sub-layer output and r is
// Granite's residual_multiplier (1 for the other families). A nil out
// skips the last add (recomputation needs only the layer's activations).
func (m *Transformer) blockForward(l int, p *pass, a *layerActs, out *engine.Tensor) {
	if m.postNorm() {
		m.postNormBlockForward(l, p, a, out)
		return
	}
	blk := m.blocks[l]
	blk.norm1.forward(a.xn1, a.st1, a.x)
	m.attnForward(l, p, a)
	y := a.h1
	if h := blk.hooks[SiteAttn]; h != nil {
		h.Forward(a.y1, a.h1, a.xn1, a.x, p.train)
		y = a.y1
	}
	m.residualAdd(a.xmid, a.x, y)
	blk.norm2.forward(a.xn2, a.st2, a.xmid)
	m.mlpForward(l, p, a)
	y = a.h2
	if h := blk.hooks[SiteMLP]; h != nil {
		h.Forward(a.y2, a.h2, a.xn2, a.xmid, p.train)
		y = a.y2
	}
	if out != nil {
		m.residualAdd(out, a.xmid, y)
	}
}

// residualAdd writes out = x + resMul·y (Granite's residual_multiplier;
// y, a sub-layer output not needed by the backward pass, is scaled in
// place).
func (m *Transformer) residualAdd(out, x, y *engine.Tensor) {
	if m.d.resMul != 1 {
		m.be.Scale(y, m.d.resMul)
	}
	m.be.Add(out, x, y)
}

// sublayerGrad returns the gradient of a sub-layer's output given d, the
// gradient of the residual sum: d itself, or resMul·d in s.dsub.
func (m *Transformer) sublayerGrad(s *actSet, d *engine.Tensor) *engine.Tensor {
	if m.d.resMul == 1 {
		return d
	}
	m.be.Copy(s.dsub, d)
	m.be.Scale(s.dsub, m.d.resMul)
	return s.dsub
}

// blockBackward backpropagates through layer l. On entry d holds the
// gradient of the layer's output; on return it holds the gradient of the
// layer's input, unless the layer's attention stage is the lowest
// trainable one (then nothing below needs it and it is not computed).
// Stages below p.low are skipped entirely.
func (m *Transformer) blockBackward(l int, p *pass, a *layerActs, d *engine.Tensor) {
	if m.postNorm() {
		m.postNormBlockBackward(l, p, a, d)
		return
	}
	be, blk, s := m.be, m.blocks[l], p.s
	stageAttn, stageMLP := 2*l, 2*l+1
	if stageMLP < p.low {
		return
	}

	// MLP sub-layer: out = xmid + hook(h2, xmid).
	needMid := stageMLP > p.low
	var dmid *engine.Tensor
	if needMid {
		dmid = s.dmid
		be.Copy(dmid, d) // the residual path
	}
	needXn := needMid || Trainable(blk.norm2)
	needDh := needXn || blk.mlpTrainable()
	var dxn *engine.Tensor
	if needXn {
		dxn = s.dxn
		be.Fill(dxn, 0)
	}
	var dh *engine.Tensor
	dy := m.sublayerGrad(s, d)
	if h := blk.hooks[SiteMLP]; h != nil {
		be.Fill(s.dh, 0)
		h.Backward(s.dh, dxn, dmid, dy, a.h2, a.xn2, a.xmid)
		dh = s.dh
	} else if needDh {
		dh = s.asAct(be, dy)
	}
	if needDh {
		m.mlpBackward(l, p, a, dh, dxn)
	}
	if needXn {
		blk.norm2.backward(dmid, dxn, a.xmid, a.st2)
	}
	if !needMid {
		return
	}

	// Attention sub-layer: xmid = x + hook(h1, x).
	needIn := stageAttn > p.low
	var dIn *engine.Tensor
	if needIn {
		dIn = d
		be.Copy(dIn, dmid)
	}
	needXn = needIn || Trainable(blk.norm1)
	needDh = needXn || m.attnTrainable(l)
	dxn = nil
	if needXn {
		dxn = s.dxn
		be.Fill(dxn, 0)
	}
	dy = m.sublayerGrad(s, dmid)
	if h := blk.hooks[SiteAttn]; h != nil {
		be.Fill(s.dh, 0)
		h.Backward(s.dh, dxn, dIn, dy, a.h1, a.xn1, a.x)
		dh = s.dh
	} else if needDh {
		dh = s.asAct(be, dy)
	}
	if needDh {
		m.attnBackward(l, p, a, dh, dxn)
	}
	if needXn {
		blk.norm1.backward(dIn, dxn, a.x, a.st1)
	}
}

// attnTrainable reports whether layer l's attention projections or its
// key/value prefix have anything trainable (the norm and hook aside).
func (m *Transformer) attnTrainable(l int) bool {
	blk := m.blocks[l]
	if Trainable(blk.q) || Trainable(blk.k) || Trainable(blk.v) || Trainable(blk.qkv) || Trainable(blk.o) ||
		Trainable(blk.qNorm) || Trainable(blk.kNorm) {
		return true
	}
	if m.prefix != nil && Trainable(m.prefix) {
		_, _, ok := m.prefix.KV(l)
		return ok
	}
	return false
}

// stageTrainable reports whether backward stage st has anything
// trainable. Stages: -1 embeddings (and virtual tokens), 2l the attention
// half of layer l, 2l+1 its MLP half, 2L the final norm and LM head.
func (m *Transformer) stageTrainable(st int) bool {
	L := len(m.blocks)
	switch {
	case st < 0:
		return Trainable(m.embed) || (m.posEmb != nil && Trainable(m.posEmb)) || Trainable(m.prompt)
	case st >= 2*L:
		return Trainable(m.normF) || Trainable(m.lmHead)
	case st%2 == 0:
		l := st / 2
		b := m.blocks[l]
		return Trainable(b.norm1) || Trainable(b.postAttn) || Trainable(b.hooks[SiteAttn]) || m.attnTrainable(l)
	default:
		b := m.blocks[st/2]
		return Trainable(b.norm2) || Trainable(b.postMLP) || Trainable(b.hooks[SiteMLP]) || b.mlpTrainable()
	}
}

// lowestTrainableStage returns the lowest stage with anything trainable,
// or 2L+1 when nothing is.
func (m *Transformer) lowestTrainableStage() int {
	L := len(m.blocks)
	for st := -1; st <= 2*L; st++ {
		if m.stageTrainable(st) {
			return st
		}
	}
	return 2*L + 1
}
