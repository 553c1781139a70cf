package model

import (
	"fmt"

	"github.com/gotune/gotune/engine"
)

// Site names the point of a transformer block where a SublayerHook acts.
type Site int

const (
	// SiteAttn is the output of the attention sub-layer (after o_proj /
	// c_proj), before the residual add.
	SiteAttn Site = iota
	// SiteMLP is the output of the MLP sub-layer, before the residual add.
	SiteMLP
)

// String names the site as module paths do.
func (s Site) String() string {
	if s == SiteAttn {
		return "attn"
	}
	return "mlp"
}

// SublayerHook rewrites a sub-layer's output before the residual add: the
// block computes xn = norm(x), h = sublayer(xn), y = hook(h, xn, x) and
// x + y. Bottleneck adapters use it: Houlsby and Pfeiffer compute
// y = h + f(h); a parallel adapter y = h + f(xn) or h + f(x).
type SublayerHook interface {
	Module
	// Forward overwrites y [N, hidden] given the sub-layer output h, its
	// normalised input xn and the residual stream x the output is added to.
	Forward(y, h, xn, x *engine.Tensor, train bool)
	// Backward accumulates, from dy, into dh (never nil; it must include
	// the identity path when y contains h), dxn and dx (each nil when
	// nothing needs it) and into the hook's own trainable parameters. h,
	// xn and x are the tensors of the last Forward, kept by the model.
	Backward(dh, dxn, dx, dy, h, xn, x *engine.Tensor)
}

// Prompt supplies virtual-token embeddings that the model places in front
// of every sequence (prompt tuning, P-Tuning). The returned logits cover
// the real tokens; the loss covers them and, when the batch carries
// engine.Batch.FirstLabels, the last virtual token's logits scored against
// each sequence's first label (PEFT's semantics).
type Prompt interface {
	Module
	// NumTokens returns the number of virtual tokens P.
	NumTokens() int
	// Forward returns this pass's [P, hidden] embeddings, shared by every
	// sequence of the batch. The model reads them before the next call.
	Forward(train bool) *engine.Tensor
	// Backward receives the gradient [P, hidden] of the last Forward's
	// embeddings, summed over the batch.
	Backward(d *engine.Tensor)
}

// Rows is a [rows, cols] matrix stored inside a tensor seen as a flat
// array: element (r, c) is T[Off + r*Stride + c]. It lets a Prefix hand the
// model key/value blocks in whatever layout its parameters have (e.g.
// PEFT's [P, layers*2*kv_dim] prefix embedding) with no copy.
type Rows struct {
	// T is the tensor holding the matrix.
	T *engine.Tensor
	// Off is the flat index of element (0, 0).
	Off int
	// Stride is the distance between consecutive rows.
	Stride int
}

// Prefix supplies trainable key/value prefixes (prefix tuning, P-Tuning
// v2). Every real token attends to them; they are not rotated by RoPE and
// the real tokens take positions P..P+T-1, as transformers does when PEFT
// passes the prefixes as past_key_values of length P.
type Prefix interface {
	Module
	// NumTokens returns the prefix length P.
	NumTokens() int
	// Forward computes this pass's prefixes; the model calls it once per
	// pass before the first layer.
	Forward(train bool)
	// KV returns layer l's key and value prefixes, each [P, kv_heads ×
	// head_dim]; ok is false for a layer without a prefix (the "local"
	// form covers only some layers).
	KV(layer int) (k, v Rows, ok bool)
	// Grads returns where the model accumulates layer l's prefix
	// gradients (summed over the batch); ok is false when the prefix gets
	// no gradient. The prefix zeroes these buffers itself when needed
	// (e.g. in Forward when they are scratch space, never when they are a
	// parameter's gradient).
	Grads(layer int) (dk, dv Rows, ok bool)
	// Backward is called once after every layer's prefix gradients have
	// been accumulated (an encoder such as P-Tuning v2's projection runs
	// its backward here).
	Backward()
}

// SetHook installs h at site of block layer (nil removes it).
func (m *Transformer) SetHook(layer int, site Site, h SublayerHook) error {
	if layer < 0 || layer >= len(m.blocks) {
		return fmt.Errorf("model: SetHook: layer %d out of range [0, %d)", layer, len(m.blocks))
	}
	if site != SiteAttn && site != SiteMLP {
		return fmt.Errorf("model: SetHook: unknown site %d", site)
	}
	m.blocks[layer].hooks[site] = h
	m.version++
	return nil
}

// Hook returns the hook installed at site of block layer, or nil.
func (m *Transformer) Hook(layer int, site Site) SublayerHook {
	if layer < 0 || layer >= len(m.blocks) || site < 0 || site > SiteMLP {
		return nil
	}
	return m.blocks[layer].hooks[site]
}

// SetPrompt installs virtual-token embeddings (nil removes them).
func (m *Transformer) SetPrompt(p Prompt) error {
	if p != nil && p.NumTokens() <= 0 {
		return fmt.Errorf("model: SetPrompt: %d virtual tokens", p.NumTokens())
	}
	m.prompt = p
	m.version++
	return nil
}

// SetPrefix installs key/value prefixes (nil removes them).
func (m *Transformer) SetPrefix(p Prefix) error {
	if p != nil && p.NumTokens() <= 0 {
		return fmt.Errorf("model: SetPrefix: prefix length %d", p.NumTokens())
	}
	m.prefix = p
	m.version++
	return nil
}

// Prompt returns the installed virtual-token source, or nil.
func (m *Transformer) Prompt() Prompt { return m.prompt }

// Prefix returns the installed key/value prefix source, or nil.
func (m *Transformer) Prefix() Prefix { return m.prefix }
