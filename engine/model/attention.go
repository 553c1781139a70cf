package model

import "github.com/gotune/gotune/engine"

// pass describes one forward (and maybe backward) pass.
type pass struct {
	B, T  int // sequences, tokens per sequence (virtual ones included)
	Pv    int // virtual prompt tokens at the front of each sequence
	P     int // key/value prefix length (training and cache-less passes)
	pos   int // position of each sequence's first token
	train bool
	cache *KVCache
	s     *actSet
	// low is the lowest trainable stage (see plan); backward visits stages
	// >= low and computes no gradient for stage low's input.
	low int
	// packed is set when the sequences hold several examples each
	// (engine.Batch.Segments); nil otherwise.
	packed *packedPass
}

// attnForward runs the attention sub-layer of block l: projections, RoPE,
// the prefix or KV-cache context, attention and the output projection.
// It reads a.xn1 and writes a.h1.
func (m *Transformer) attnForward(l int, p *pass, a *layerActs) {
	be, d, blk := m.be, &m.d, m.blocks[l]
	N, qd, kvd := p.B*p.T, d.qDim(), d.kvDim()
	if blk.qkv != nil {
		// GPT-2's fused c_attn: split [N, q|k|v] into contiguous tensors.
		w := qd + 2*kvd
		blk.qkv.Forward(p.s.qkv, a.xn1, p.train)
		be.CopyBlock(a.q, 0, qd, p.s.qkv, 0, w, N, qd, false)
		be.CopyBlock(a.k, 0, kvd, p.s.qkv, qd, w, N, kvd, false)
		be.CopyBlock(a.v, 0, kvd, p.s.qkv, qd+kvd, w, N, kvd, false)
	} else if blk.qNorm != nil {
		blk.q.Forward(a.qRaw, a.xn1, p.train)
		blk.k.Forward(a.kRaw, a.xn1, p.train)
		blk.v.Forward(a.v, a.xn1, p.train)
		blk.qNorm.forward(m.normRows(a.q), a.stQ, m.normRows(a.qRaw))
		blk.kNorm.forward(m.normRows(a.k), a.stK, m.normRows(a.kRaw))
	} else {
		blk.q.Forward(a.q, a.xn1, p.train)
		blk.k.Forward(a.k, a.xn1, p.train)
		blk.v.Forward(a.v, a.xn1, p.train)
	}
	if m.rope != nil {
		m.applyRoPE(p, l, a.q4, false)
		m.applyRoPE(p, l, a.k4, false)
	}
	kAll, vAll := m.kvContext(l, p, a)
	be.Attention(a.att4, a.lse, a.q4, kAll, vAll, m.layerAttention(l, p, kAll.Dim(1)))
	blk.o.Forward(a.h1, a.att, p.train)
	m.dropout(p, a.h1, d.residDrop, l, engine.DropoutAttnOutput)
}

// layerAttention returns layer l's attention options for a pass whose
// queries see S keys: the layer's own options (attentionOptions), packed
// examples' segments, and dropout only in training, with this pass's
// mask. A window of at least S hides nothing, so it is dropped: the plain
// options keep the backends' fastest kernels.
func (m *Transformer) layerAttention(l int, p *pass, S int) engine.AttentionOptions {
	o := m.blocks[l].attn
	if o.Window >= S {
		o.Window = 0
	}
	o.Segments = p.segments()
	if p.train && o.Dropout > 0 {
		o.DropoutSeed = m.drop.maskSeed(l, engine.DropoutAttention)
	} else {
		o.Dropout = 0
	}
	return o
}

// kvContext returns the keys and values the queries of layer l attend to:
// the new ones alone, a prefix followed by them, or the KV cache's history
// followed by them (the new ones are appended to the cache).
func (m *Transformer) kvContext(l int, p *pass, a *layerActs) (k, v *engine.Tensor) {
	be, d := m.be, &m.d
	kvd := d.kvDim()
	B, T := p.B, p.T
	if c := p.cache; c != nil {
		return c.store(l, a.k, a.v, T)
	}
	pk, pv, ok := m.prefixKV(l, p)
	if !ok {
		return a.k4, a.v4
	}
	S := p.P + T
	for b := 0; b < B; b++ {
		be.CopyBlock(a.kAll, b*S*kvd, kvd, pk.T, pk.Off, pk.Stride, p.P, kvd, false)
		be.CopyBlock(a.vAll, b*S*kvd, kvd, pv.T, pv.Off, pv.Stride, p.P, kvd, false)
	}
	be.CopyBlock(a.kAll, p.P*kvd, S*kvd, a.k, 0, T*kvd, B, T*kvd, false)
	be.CopyBlock(a.vAll, p.P*kvd, S*kvd, a.v, 0, T*kvd, B, T*kvd, false)
	return a.kAll, a.vAll
}

// prefixKV returns layer l's prefix in a pass that uses one.
func (m *Transformer) prefixKV(l int, p *pass) (k, v Rows, ok bool) {
	if m.prefix == nil || p.P == 0 {
		return Rows{}, Rows{}, false
	}
	return m.prefix.KV(l)
}

// attnBackward backpropagates dh (the gradient of a.h1) through the
// attention sub-layer of block l, accumulating into dxn (the gradient of
// a.xn1; nil when nothing below needs it) and every trainable parameter.
func (m *Transformer) attnBackward(l int, p *pass, a *layerActs, dh, dxn *engine.Tensor) {
	be, d, blk, s := m.be, &m.d, m.blocks[l], p.s
	N, qd, kvd := p.B*p.T, d.qDim(), d.kvDim()
	B, T := p.B, p.T
	_, _, hasPrefix := m.prefixKV(l, p)
	var pdk, pdv Rows
	prefixGrad := false
	if hasPrefix {
		pdk, pdv, prefixGrad = m.prefix.Grads(l)
	}
	fused := blk.qkv != nil
	var needQ, needK, needV bool
	if fused {
		// The fused projection needs all three gradients or none.
		needQ = dxn != nil || Trainable(blk.qkv)
		needK, needV = needQ || prefixGrad, needQ || prefixGrad
	} else {
		needQ = dxn != nil || Trainable(blk.q) || Trainable(blk.qNorm)
		needK = dxn != nil || Trainable(blk.k) || Trainable(blk.kNorm) || prefixGrad
		needV = dxn != nil || Trainable(blk.v) || prefixGrad
	}
	needAtt := needQ || needK || needV
	dh = m.dropoutGrad(p, s.ddrop, dh, d.residDrop, l, engine.DropoutAttnOutput)
	var datt *engine.Tensor
	if needAtt {
		datt = s.datt
		be.Fill(datt, 0)
	}
	backLinear(blk.o, datt, dh, a.att)
	if !needAtt {
		return
	}
	// Key/value gradients land in [B, P+T, ...] buffers with a prefix,
	// else directly in dk, dv.
	kAll, vAll := a.k4, a.v4
	dkBuf, dvBuf := s.dk.Reshape(B, T, d.kvHeads, d.headDim), s.dv.Reshape(B, T, d.kvHeads, d.headDim)
	if hasPrefix {
		kAll, vAll = a.kAll, a.vAll
		dkBuf, dvBuf = s.dkAll, s.dvAll
	}
	var dq4, dkAll, dvAll *engine.Tensor
	if needQ {
		be.Fill(s.dq, 0)
		dq4 = s.dq.Reshape(B, T, d.heads, d.headDim)
	}
	if needK {
		be.Fill(dkBuf, 0)
		dkAll = dkBuf
	}
	if needV {
		be.Fill(dvBuf, 0)
		dvAll = dvBuf
	}
	be.AttentionBackward(dq4, dkAll, dvAll, datt.Reshape(B, T, d.heads, d.headDim), a.q4, kAll, vAll, a.att4, a.lse, m.layerAttention(l, p, kAll.Dim(1)))
	if hasPrefix {
		S := p.P + T
		if prefixGrad {
			for b := 0; b < B; b++ {
				be.CopyBlock(pdk.T, pdk.Off, pdk.Stride, s.dkAll, b*S*kvd, kvd, p.P, kvd, true)
				be.CopyBlock(pdv.T, pdv.Off, pdv.Stride, s.dvAll, b*S*kvd, kvd, p.P, kvd, true)
			}
		}
		// The real tokens' key/value gradients, as contiguous [N, kvd].
		if needK {
			be.CopyBlock(s.dk, 0, T*kvd, s.dkAll, p.P*kvd, S*kvd, B, T*kvd, false)
		}
		if needV {
			be.CopyBlock(s.dv, 0, T*kvd, s.dvAll, p.P*kvd, S*kvd, B, T*kvd, false)
		}
	}
	if m.rope != nil {
		// RoPE is a rotation: its backward rotates the gradient back.
		if needQ {
			m.applyRoPE(p, l, dq4, true)
		}
		if needK {
			m.applyRoPE(p, l, s.dk.Reshape(B, T, d.kvHeads, d.headDim), true)
		}
	}
	if fused {
		if !needQ {
			return // only the prefix wanted its gradient
		}
		w := qd + 2*kvd
		be.CopyBlock(s.dqkv, 0, w, s.dq, 0, qd, N, qd, false)
		be.CopyBlock(s.dqkv, qd, w, s.dk, 0, kvd, N, kvd, false)
		be.CopyBlock(s.dqkv, qd+kvd, w, s.dv, 0, kvd, N, kvd, false)
		backLinear(blk.qkv, dxn, s.dqkv, a.xn1)
		return
	}
	dq, dk := s.dq, s.dk
	if blk.qNorm != nil {
		dq, dk = m.qkNormBackward(blk, s, a, needQ, needK)
	}
	if needQ {
		backLinear(blk.q, dxn, dq, a.xn1)
	}
	if needK {
		backLinear(blk.k, dxn, dk, a.xn1)
	}
	if needV {
		backLinear(blk.v, dxn, s.dv, a.xn1)
	}
}

// backLinear runs l's backward unless it would do nothing (no input
// gradient wanted and nothing trainable).
func backLinear(l Linear, dx, dy, x *engine.Tensor) {
	if dx == nil && !Trainable(l) {
		return
	}
	l.Backward(dx, dy, x)
}

// normRows views a q or k buffer [N, width] as the rows its q/k norm
// normalises: one per head (per-head norms) or one per token.
func (m *Transformer) normRows(x *engine.Tensor) *engine.Tensor {
	w := m.qkNormWidth(x.Dim(1))
	return x.Reshape(x.Len()/w, w)
}

// qkNormBackward backpropagates the gradients of the normalised q and k
// (s.dq, s.dk, RoPE already undone) through the q/k norms, returning the
// gradients of the raw projections.
func (m *Transformer) qkNormBackward(blk *block, s *actSet, a *layerActs, needQ, needK bool) (dq, dk *engine.Tensor) {
	be := m.be
	if needQ {
		be.Fill(s.dqRaw, 0)
		blk.qNorm.backward(m.normRows(s.dqRaw), m.normRows(s.dq), m.normRows(a.qRaw), a.stQ)
	}
	if needK {
		be.Fill(s.dkRaw, 0)
		blk.kNorm.backward(m.normRows(s.dkRaw), m.normRows(s.dk), m.normRows(a.kRaw), a.stK)
	}
	return s.dqRaw, s.dkRaw
}
