package model

import (
	"slices"

	"github.com/gotune/gotune/engine"
)

// A packed batch (engine.Batch.Segments) holds several examples per
// sequence. Three things make each example compute what it computes
// alone: attention stays inside each example (AttentionOptions.Segments;
// a prefix's keys stay visible to all), RoPE rotates each token by its
// position within its example (the table rows of those positions are
// gathered once per pass, so the RoPE op sees one long sequence whose
// i-th token has table row i, from each table a layer may use: Gemma
// 3's local ones too; partial rotary rotates the same head prefix as
// unpacked, longrope uses the table of the longest example),
// and GPT-2's learned positions are looked up by the same positions.
// Virtual tokens in front of each sequence (prompt tuning, P-Tuning)
// would be shared by every example of a sequence, so such batches are
// refused.

// packedPass is what a pass over packed sequences reads besides the
// batch's ids and targets.
type packedPass struct {
	segments  *engine.Tensor // Int32 [B, T]: each token's example
	positions *engine.Tensor // Int32 [B·T]: position within the example
	// rope, ropeLocal are the RoPE table rows of every token's position
	// [B·T, rotDim/2] of Transformer.rope and Transformer.ropeLocal (nil
	// without those tables).
	rope, ropeLocal *ropeRows
}

// ropeRows are rows of RoPE tables, one per token of a packed pass.
type ropeRows struct{ cos, sin *engine.Tensor }

// segments returns the example ids of a packed pass (nil otherwise),
// which keep attention inside each example.
func (p *pass) segments() *engine.Tensor {
	if p.packed == nil {
		return nil
	}
	return p.packed.segments
}

// preparePacked sets p.packed for a batch with segments: the segment and
// position views, and the RoPE rows of positions p.pos + Positions.
func (m *Transformer) preparePacked(p *pass, bt *engine.Batch) {
	if bt.Segments == nil {
		return
	}
	pk := &packedPass{segments: bt.Segments.Reshape(bt.B, bt.T), positions: bt.Positions}
	if m.rope != nil {
		span := m.packedSpan(p, bt)
		pk.rope = m.gatherRoPE(p, m.rope, &p.s.ropeRows, bt, span)
		pk.ropeLocal = m.gatherRoPE(p, m.ropeLocal, &p.s.ropeLocalRows, bt, span)
	}
	p.packed = pk
}

// gatherRoPE gathers the rows of table (nil: none) at the positions
// p.pos + Positions of a pass spanning span positions into rows,
// allocating them on the first packed pass of this shape.
func (m *Transformer) gatherRoPE(p *pass, table *ropeTables, rows *ropeRows, bt *engine.Batch, span int) *ropeRows {
	if table == nil {
		return nil
	}
	if rows.cos == nil {
		half := table.rotDim / 2
		rows.cos = m.be.Alloc(engine.Float32, bt.B*bt.T, half)
		rows.sin = m.be.Alloc(engine.Float32, bt.B*bt.T, half)
		p.s.tensors = append(p.s.tensors, rows.cos, rows.sin)
	}
	table.gather(rows.cos, rows.sin, bt.Positions, p.pos, span)
	return rows
}

// packedSpan returns how many positions from p.pos the RoPE of a packed
// pass covers: one past the largest position within an example. Only
// longrope cares (it picks its factors by it, as transformers does by the
// largest position id, so every example of the batch gets the table of
// its longest one), and only when the sequence length, an upper bound,
// would pick the long factors are the positions read back.
func (m *Transformer) packedSpan(p *pass, bt *engine.Batch) int {
	if !m.rope.useLong(p.pos, bt.T) {
		return bt.T
	}
	return int(slices.Max(m.be.DownloadInt32(bt.Positions))) + 1
}

// applyRoPE rotates x [B, T, H, D] in place by layer l's RoPE (ropeAt)
// at each token's position: p.pos + t, or in a packed pass p.pos + its
// position within its example.
func (m *Transformer) applyRoPE(p *pass, l int, x *engine.Tensor, inverse bool) {
	r := m.ropeAt(l)
	if p.packed == nil {
		r.apply(x, p.pos, inverse, p.s.rot)
		return
	}
	rows := p.packed.rope
	if r == m.ropeLocal {
		rows = p.packed.ropeLocal
	}
	sh := x.Shape()
	r.rotate(x.Reshape(1, sh[0]*sh[1], sh[2], sh[3]), rows.cos, rows.sin, 0, inverse, p.s.rot)
}

// positionLookup returns the table and ids that GPT-2's learned position
// embedding reads in pass p: rows p.pos.. of table (w or its gradient)
// by each packed token's position, or table itself by s.posIDs.
func (m *Transformer) positionLookup(p *pass, table *engine.Tensor) (*engine.Tensor, *engine.Tensor) {
	if p.packed == nil {
		return table, p.s.posIDs
	}
	return table.Slice(p.pos, table.Dim(0)), p.packed.positions
}
