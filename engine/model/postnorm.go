package model

import "github.com/gotune/gotune/engine"

// postNormBlockForward runs transformer layer l of a family that
// normalises its sub-layers' outputs: post-norm (OLMo-2)
//
//	xmid = x + norm1(hookAttn(attn(x), x, x))
//	out  = xmid + norm2(hookMLP(mlp(xmid), xmid, xmid))
//
// where the sub-layers read xn1, xn2, copies of x and xmid in the
// activation dtype; or sandwich-norm (GLM-4), which normalises the inputs
// too:
//
//	xmid = x + postAttn(hookAttn(attn(norm1(x)), norm1(x), x))
//	out  = xmid + postMLP(hookMLP(mlp(norm2(xmid)), norm2(xmid), xmid))
//
// A nil out skips the last add.
func (m *Transformer) postNormBlockForward(l int, p *pass, a *layerActs, out *engine.Tensor) {
	be, blk := m.be, m.blocks[l]
	attn, mlp := m.sublayerNorms(blk, a)
	attn.in(be, a.xn1, a.x)
	m.attnForward(l, p, a)
	attn.post.forward(a.pn1, attn.postSt, hooked(blk.hooks[SiteAttn], a.y1, a.h1, a.xn1, a.x, p.train))
	be.Add(a.xmid, a.x, a.pn1)
	mlp.in(be, a.xn2, a.xmid)
	m.mlpForward(l, p, a)
	mlp.post.forward(a.pn2, mlp.postSt, hooked(blk.hooks[SiteMLP], a.y2, a.h2, a.xn2, a.xmid, p.train))
	if out != nil {
		be.Add(out, a.xmid, a.pn2)
	}
}

// normPair is the norms of one sub-layer of a post-norm layer: pre
// normalises its input (nil for OLMo-2: the input is copied), post its
// output; with their statistics.
type normPair struct {
	pre, post     norm
	preSt, postSt normStats
}

// sublayerNorms returns the attention and MLP sub-layers' norms of blk
// with their statistics in a.
func (m *Transformer) sublayerNorms(blk *block, a *layerActs) (attn, mlp normPair) {
	if blk.postAttn == nil { // post-norm: norm1, norm2 are the output norms
		return normPair{post: blk.norm1, postSt: a.st1}, normPair{post: blk.norm2, postSt: a.st2}
	}
	return normPair{pre: blk.norm1, preSt: a.st1, post: blk.postAttn, postSt: a.stP1},
		normPair{pre: blk.norm2, preSt: a.st2, post: blk.postMLP, postSt: a.stP2}
}

// in writes the sub-layer's input xn from the residual stream x: pre(x),
// or x itself (in the activation dtype) without a pre norm.
func (n normPair) in(be engine.Backend, xn, x *engine.Tensor) {
	if n.pre == nil {
		be.Copy(xn, x)
		return
	}
	n.pre.forward(xn, n.preSt, x)
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
// needs it: out = x + post(hook(h, xn, x)), h = f(xn), xn = pre(x) or x.
type postSublayer struct {
	normPair
	hook       SublayerHook
	h, y, xn   *engine.Tensor // y is the hooked output (h without a hook)
	x          *engine.Tensor
	trainable  bool // f has trainable parameters
	backwardFn func(dh, dxn *engine.Tensor)
}

// postNormBlockBackward backpropagates through layer l of a post-norm
// or sandwich-norm family, with blockBackward's contract.
func (m *Transformer) postNormBlockBackward(l int, p *pass, a *layerActs, d *engine.Tensor) {
	be, blk, s := m.be, m.blocks[l], p.s
	stageAttn, stageMLP := 2*l, 2*l+1
	if stageMLP < p.low {
		return
	}
	attn, mlp := m.sublayerNorms(blk, a)
	var dmid *engine.Tensor
	if stageMLP > p.low {
		dmid = s.dmid
		be.Copy(dmid, d)
	}
	m.postSublayerBackward(s, d, dmid, postSublayer{
		normPair: mlp, hook: blk.hooks[SiteMLP], h: a.h2, y: orH(a.y2, a.h2), xn: a.xn2, x: a.xmid,
		trainable:  blk.mlpTrainable(),
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
		normPair: attn, hook: blk.hooks[SiteAttn], h: a.h1, y: orH(a.y1, a.h1), xn: a.xn1, x: a.x,
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
	// The sub-layer input's gradient: for dx, or for a trainable pre norm.
	needXn := dx != nil || Trainable(sl.pre)
	needDh := needXn || sl.trainable
	needDy := needDh || sl.hook != nil
	if !needDy && !Trainable(sl.post) {
		return
	}
	var dy *engine.Tensor
	if needDy {
		dy = s.dpost
		be.Fill(dy, 0)
	}
	sl.post.backward(dy, s.asAct(be, dout), sl.y, sl.postSt)
	if !needDy {
		return
	}
	var dxn *engine.Tensor
	if needXn {
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
	case sl.pre != nil && needXn:
		sl.pre.backward(dx, dxn, sl.x, sl.preSt)
	case dx != nil:
		be.Add(dx, dx, dxn)
	}
}
