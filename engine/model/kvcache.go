package model

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// KVCache holds every layer's keys and values of the tokens seen so far,
// so that generating a token costs one forward pass over that token only.
// Keys are stored after RoPE. A model's prefix (prefix tuning) is copied in
// at creation and occupies the first positions of the layers that have one.
type KVCache struct {
	m      *Transformer
	b      int
	maxLen int   // capacity in positions per sequence, prefix included
	pre    []int // positions the prefix takes in each layer (0 or P)
	nPre   int   // prefix length P (offsets every real token's position)
	len    int   // tokens cached after the prefix (virtual ones included)
	k, v   []*engine.Tensor
	gk, gv *engine.Tensor // gather scratch for batches > 1
}

// NewKVCache allocates a cache for batch sequences of up to maxLen tokens
// each (virtual prompt tokens included, prefix not). Create it after the
// weights, prompt and prefix are final: it copies the prefix in.
func (m *Transformer) NewKVCache(batch, maxLen int) (*KVCache, error) {
	if batch <= 0 || maxLen <= 0 {
		return nil, fmt.Errorf("model: KV cache for %d sequences of %d tokens", batch, maxLen)
	}
	d := &m.d
	kvd := d.kvDim()
	c := &KVCache{m: m, b: batch, pre: make([]int, len(m.blocks))}
	if m.prefix != nil {
		c.nPre = m.prefix.NumTokens()
		m.prefix.Forward(false)
	}
	if m.prompt != nil {
		// Virtual tokens enter the cache with the first call.
		maxLen += m.prompt.NumTokens()
	}
	if err := m.checkPositions(0, c.nPre+maxLen); err != nil {
		return nil, err
	}
	c.maxLen = maxLen + c.nPre
	for l := range m.blocks {
		k := m.be.Alloc(engine.Float32, batch*c.maxLen, kvd)
		v := m.be.Alloc(engine.Float32, batch*c.maxLen, kvd)
		if m.prefix != nil {
			if pk, pv, ok := m.prefix.KV(l); ok {
				c.pre[l] = c.nPre
				for b := 0; b < batch; b++ {
					m.be.CopyBlock(k, b*c.maxLen*kvd, kvd, pk.T, pk.Off, pk.Stride, c.nPre, kvd, false)
					m.be.CopyBlock(v, b*c.maxLen*kvd, kvd, pv.T, pv.Off, pv.Stride, c.nPre, kvd, false)
				}
			}
		}
		c.k = append(c.k, k)
		c.v = append(c.v, v)
	}
	if batch > 1 {
		c.gk = m.be.Alloc(engine.Float32, batch*c.maxLen*kvd)
		c.gv = m.be.Alloc(engine.Float32, batch*c.maxLen*kvd)
	}
	return c, nil
}

// Len returns the number of tokens cached per sequence (prefix excluded).
func (c *KVCache) Len() int { return c.len }

// Cap returns the number of tokens the cache can hold per sequence.
func (c *KVCache) Cap() int { return c.maxLen - c.nPre }

// Reset forgets the cached tokens (the prefix stays).
func (c *KVCache) Reset() { c.len = 0 }

// Free releases the cache's buffers.
func (c *KVCache) Free() {
	for _, t := range append(append([]*engine.Tensor(nil), c.k...), c.v...) {
		c.m.be.Free(t)
	}
	if c.gk != nil {
		c.m.be.Free(c.gk)
		c.m.be.Free(c.gv)
	}
	c.k, c.v, c.gk, c.gv = nil, nil, nil, nil
}

// store writes layer l's new keys and values [B·T, kvd] after the cached
// ones and returns the whole context [B, S, kvHeads, headDim].
func (c *KVCache) store(l int, k, v *engine.Tensor, T int) (kAll, vAll *engine.Tensor) {
	be, d := c.m.be, &c.m.d
	kvd := d.kvDim()
	at := c.pre[l] + c.len
	stride := c.maxLen * kvd
	be.CopyBlock(c.k[l], at*kvd, stride, k, 0, T*kvd, c.b, T*kvd, false)
	be.CopyBlock(c.v[l], at*kvd, stride, v, 0, T*kvd, c.b, T*kvd, false)
	S := at + T
	if c.b == 1 {
		return c.k[l].Slice(0, S).Reshape(1, S, d.kvHeads, d.headDim),
			c.v[l].Slice(0, S).Reshape(1, S, d.kvHeads, d.headDim)
	}
	// Attention wants each sequence's context contiguous: gather it. This
	// costs O(S) per token, the same order as attention itself.
	n := c.b * S * kvd
	be.CopyBlock(c.gk, 0, S*kvd, c.k[l], 0, stride, c.b, S*kvd, false)
	be.CopyBlock(c.gv, 0, S*kvd, c.v[l], 0, stride, c.b, S*kvd, false)
	return c.gk.Slice(0, n).Reshape(c.b, S, d.kvHeads, d.headDim),
		c.gv.Slice(0, n).Reshape(c.b, S, d.kvHeads, d.headDim)
}

// Logits runs the model forward over T new tokens of each of B sequences
// (ids is B×T, row-major) and returns the logits of every new token
// ([B·T, vocab], when all) or of each sequence's last one ([B, vocab]).
// With a cache the tokens continue the cached ones (positions
// c.Len()...) and are appended to it; with c == nil they are a whole
// sequence on their own. Virtual prompt tokens are prepended on a cache's
// first call (or on every cache-less call). The returned tensor is reused
// by the next call.
func (m *Transformer) Logits(c *KVCache, ids []int32, B, T int, all bool) (*engine.Tensor, error) {
	if B <= 0 || T <= 0 || len(ids) != B*T {
		return nil, fmt.Errorf("model: Logits: %d ids for %d sequences × %d tokens", len(ids), B, T)
	}
	for i, id := range ids {
		if id < 0 || int(id) >= m.d.vocab {
			return nil, fmt.Errorf("model: Logits: token id %d at index %d outside vocabulary [0, %d)", id, i, m.d.vocab)
		}
	}
	Pv, P, pos := 0, 0, 0
	if m.prompt != nil && (c == nil || c.len == 0) {
		Pv = m.prompt.NumTokens()
	}
	if c != nil {
		if c.m != m {
			return nil, fmt.Errorf("model: Logits: KV cache belongs to another model")
		}
		if c.b != B {
			return nil, fmt.Errorf("model: Logits: KV cache holds %d sequences, got %d", c.b, B)
		}
		if c.len+Pv+T > c.Cap() {
			return nil, fmt.Errorf("model: Logits: KV cache full (%d + %d tokens > capacity %d)", c.len, Pv+T, c.Cap())
		}
		pos = c.nPre + c.len
	} else if m.prefix != nil {
		P = m.prefix.NumTokens()
		pos = P
	}
	Te := T + Pv
	if err := m.checkPositions(pos, Te); err != nil {
		return nil, err
	}
	heads := 1
	if all {
		heads = T
	}
	key := actKey{B: B, T: Te, Pv: Pv, P: P, heads: heads, lowLayer: len(m.blocks), version: m.version}
	s := m.acts(&m.inferActs, key)
	m.be.UploadInt32(s.ids, ids)
	p := &pass{B: B, T: Te, Pv: Pv, P: P, pos: pos, cache: c, s: s, low: 2*len(m.blocks) + 1}
	m.forward(p, s.ids)
	if c != nil {
		c.len += Te
	}
	if err := m.be.Synchronize(); err != nil {
		return nil, fmt.Errorf("model: Logits on %s: %w", m.be.Name(), err)
	}
	return s.logits, nil
}
