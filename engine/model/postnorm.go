package model

import "github.com/gotune/gotune/engine"

// postNormBlockForward runs transformer layer l of a post-norm family
// (OLMo-2):
//
//	xmid = x + norm1(hookAttn(attn(x), x, x))
//	out  = xmid + norm2(hookMLP(mlp(xmid), xmid, xmid))
//
// The sub-layers read xn1, xn2: copies of x and xmid in the activation
// dtype. A nil out skips the last add.
func (m *Transformer) postNormBlockForward(l int, p *pass, a *layerActs, out *engine.Tensor) {
	be, blk := m.be, m.blocks[l]
	be.Copy(a.xn1, a.x)
	m.attnForward(l, p, a)
	blk.norm1.forward(a.pn1, a.st1, hooked(blk.hooks[SiteAttn], a.y1, a.h1, a.xn1, a.x, p.train))
	be.Add(a.xmid, a.x, a.pn1)
	be.Copy(a.xn2, a.xmid)
	m.mlpForward(l, p, a)
	blk.norm2.forward(a.pn2, a.st2, hooked(blk.hooks[SiteMLP], a.y2, a.h2, a.xn2, a.xmid, p.train))
	if out != nil {
		be.Add(out, a.xmid, a.pn2)
	}
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

// postSublayer is one sub-layer of a post-norm layer as its backward pass
// needs it: out = x + norm(hook(h, x, x)), h = f(x).
type postSublayer struct {
	norm       norm
	st         normStats
	hook       SublayerHook
	h, y, xn   *engine.Tensor // y is the hooked output (h without a hook)
	x          *engine.Tensor
	trainable  bool // f has trainable parameters
	backwardFn func(dh, dxn *engine.Tensor)
}

// postNormBlockBackward backpropagates through layer l of a post-norm
// family, with blockBackward's contract.
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
		norm: blk.norm2, st: a.st2, hook: blk.hooks[SiteMLP], h: a.h2, y: orH(a.y2, a.h2), xn: a.xn2, x: a.xmid,
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
		norm: blk.norm1, st: a.st1, hook: blk.hooks[SiteAttn], h: a.h1, y: orH(a.y1, a.h1), xn: a.xn1, x: a.x,
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

// postSublayerBackward backpropagates dout, the gradient of a post-norm
// sub-layer's output, into the sub-layer's parameters and, when dx is
// non-nil, accumulates the gradient of its input x into dx (which holds
// the residual path already).
func (m *Transformer) postSublayerBackward(s *actSet, dout, dx *engine.Tensor, sl postSublayer) {
	be := m.be
	needDh := dx != nil || sl.trainable
	needDy := needDh || sl.hook != nil
	if !needDy && !Trainable(sl.norm) {
		return
	}
	var dy *engine.Tensor
	if needDy {
		dy = s.dpost
		be.Fill(dy, 0)
	}
	sl.norm.backward(dy, s.asAct(be, dout), sl.y, sl.st)
	if !needDy {
		return
	}
	var dxn *engine.Tensor
	if dx != nil {
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
	if dx != nil {
		be.Add(dx, dx, dxn)
	}
}
