package model

import "github.com/gotune/gotune/engine"

// sublayerNorms are the norms around one sub-layer of a layer that
// normalises its sub-layer outputs: in normalises the sub-layer's input
// (sandwich norms; nil for post-norm families, whose sub-layers read the
// residual stream as it is) and out the sub-layer's (hooked) output.
type sublayerNorms struct {
	in, out     norm
	inSt, outSt normStats
}

// normsOf returns the norms around sub-layer i (0 attention, 1 MLP) of
// block blk: OLMo-2's post-norms are norm1 and norm2, Gemma's sandwich
// has norm1 and norm2 before and outNorm1 and outNorm2 after.
func normsOf(blk *block, a *layerActs, i int) sublayerNorms {
	switch {
	case blk.outNorm1 == nil && i == 0:
		return sublayerNorms{out: blk.norm1, outSt: a.st1}
	case blk.outNorm1 == nil:
		return sublayerNorms{out: blk.norm2, outSt: a.st2}
	case i == 0:
		return sublayerNorms{in: blk.norm1, inSt: a.st1, out: blk.outNorm1, outSt: a.stO1}
	default:
		return sublayerNorms{in: blk.norm2, inSt: a.st2, out: blk.outNorm2, outSt: a.stO2}
	}
}

// postNormBlockForward runs transformer layer l of a family that
// normalises its sub-layer outputs, post-norm (OLMo-2) or sandwich-norm
// (Gemma):
//
//	xmid = x + out1(hookAttn(attn(in1(x)), in1(x), x))
//	out  = xmid + out2(hookMLP(mlp(in2(xmid)), in2(xmid), xmid))
//
// where in1 and in2 are the identity for post-norm families (xn1, xn2
// then hold copies of x and xmid in the activation dtype). A nil out
// skips the last add.
func (m *Transformer) postNormBlockForward(l int, p *pass, a *layerActs, out *engine.Tensor) {
	be, blk := m.be, m.blocks[l]
	n := normsOf(blk, a, 0)
	m.sublayerInput(n, a.xn1, a.x)
	m.attnForward(l, p, a)
	n.out.forward(a.pn1, n.outSt, hooked(blk.hooks[SiteAttn], a.y1, a.h1, a.xn1, a.x, p.train))
	be.Add(a.xmid, a.x, a.pn1)
	n = normsOf(blk, a, 1)
	m.sublayerInput(n, a.xn2, a.xmid)
	m.mlpForward(l, p, a)
	n.out.forward(a.pn2, n.outSt, hooked(blk.hooks[SiteMLP], a.y2, a.h2, a.xn2, a.xmid, p.train))
	if out != nil {
		be.Add(out, a.xmid, a.pn2)
	}
}

// sublayerInput writes the input xn a sub-layer reads from the residual
// stream x: its input norm's output, or x itself (in the activation
// dtype) without one.
func (m *Transformer) sublayerInput(n sublayerNorms, xn, x *engine.Tensor) {
	if n.in == nil {
		m.be.Copy(xn, x)
		return
	}
	n.in.forward(xn, n.inSt, x)
}

// hooked returns the sub-layer output h rewritten by hook into y, or h
// without a hook.
func hooked(hook SublayerHook, y, h, xn, x *engine.Tensor, train bool) *engine.Tensor {
	if hook == nil {
		return h
	}
	hook.Forward(y, h, xn, x, train)
	return y
}

// postSublayer is one sub-layer of a post- or sandwich-norm layer as its
// backward pass needs it: out = x + norms.out(hook(h, xn, x)), h = f(xn),
// xn = norms.in(x) (x itself without an input norm).
type postSublayer struct {
	norms      sublayerNorms
	hook       SublayerHook
	h, y, xn   *engine.Tensor // y is the hooked output (h without a hook)
	x          *engine.Tensor
	trainable  bool // f has trainable parameters
	backwardFn func(dh, dxn *engine.Tensor)
}

// postNormBlockBackward backpropagates through layer l of a post- or
// sandwich-norm family, with blockBackward's contract.
func (m *Transformer) postNormBlockBackward(l int, p *pass, a *layerActs, d *engine.Tensor) {
	be, blk, s := m.be, m.blocks[l], p.s
	stageAttn, stageMLP := 2*l, 2*l+1
	if stageMLP < p.low {
		return
	}
	var dmid *engine.Tensor
	if stageMLP > p.low {
		dmid = s.dmid
		be.Copy(dmid, d)
	}
	m.postSublayerBackward(s, d, dmid, postSublayer{
		norms: normsOf(blk, a, 1), hook: blk.hooks[SiteMLP], h: a.h2, y: orH(a.y2, a.h2), xn: a.xn2, x: a.xmid,
		trainable:  Trainable(blk.gate) || Trainable(blk.up) || Trainable(blk.down),
		backwardFn: func(dh, dxn *engine.Tensor) { m.mlpBackward(l, p, a, dh, dxn) },
	})
	if dmid == nil {
		return
	}
	var dIn *engine.Tensor
	if stageAttn > p.low {
		dIn = d
		be.Copy(dIn, dmid)
	}
	m.postSublayerBackward(s, dmid, dIn, postSublayer{
		norms: normsOf(blk, a, 0), hook: blk.hooks[SiteAttn], h: a.h1, y: orH(a.y1, a.h1), xn: a.xn1, x: a.x,
		trainable:  m.attnTrainable(l),
		backwardFn: func(dh, dxn *engine.Tensor) { m.attnBackward(l, p, a, dh, dxn) },
	})
}

// orH returns the hooked output y, or h when the layer has no hook.
func orH(y, h *engine.Tensor) *engine.Tensor {
	if y == nil {
		return h
	}
	return y
}

// postSublayerBackward backpropagates dout, the gradient of a post- or
// sandwich-norm sub-layer's output, into the sub-layer's parameters and,
// when dx is non-nil, accumulates the gradient of its input x into dx
// (which holds the residual path already).
func (m *Transformer) postSublayerBackward(s *actSet, dout, dx *engine.Tensor, sl postSublayer) {
	be := m.be
	needDxn := dx != nil || Trainable(sl.norms.in)
	needDh := needDxn || sl.trainable
	needDy := needDh || sl.hook != nil
	if !needDy && !Trainable(sl.norms.out) {
		return
	}
	var dy *engine.Tensor
	if needDy {
		dy = s.dpost
		be.Fill(dy, 0)
	}
	sl.norms.out.backward(dy, s.asAct(be, dout), sl.y, sl.norms.outSt)
	if !needDy {
		return
	}
	var dxn *engine.Tensor
	if needDxn {
		dxn = s.dxn
		be.Fill(dxn, 0)
	}
	dyAct := s.asAct(be, dy)
	dh := dyAct
	if sl.hook != nil {
		be.Fill(s.dh, 0)
		sl.hook.Backward(s.dh, dxn, dx, dyAct, sl.h, sl.xn, sl.x)
		dh = s.dh
	}
	if needDh {
		sl.backwardFn(dh, dxn)
	}
	switch {
	case sl.norms.in != nil:
		sl.norms.in.backward(dx, dxn, sl.x, sl.norms.inSt)
	case dx != nil:
		be.Add(dx, dx, dxn)
	}
}
