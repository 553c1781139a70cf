package cpu

import "github.com/gotune/gotune/engine"

// Embedding gathers out[i, :] = table[ids[i], :].
func (b *Backend) Embedding(out, table, ids *engine.Tensor) {
	const op = "Embedding"
	vocab, dim := table.Rows(), table.Cols()
	check(out.Cols() == dim && out.Rows() == ids.Len(), op, "out %v must be [%d, %d] for ids %v and table %v", out, ids.Len(), dim, ids, table)
	idx := i32s(op, ids)
	checkIDs(op, idx, vocab)
	o, done := write(op, out)
	if table.DType() == engine.BFloat16 {
		// Convert only the gathered rows: a frozen bfloat16 table can be
		// far larger than the batch.
		th := u16s(op, table)
		parallelFor(len(idx), dim, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				id := int(idx[i])
				bf16ToF32Serial(o[i*dim:(i+1)*dim], th[id*dim:(id+1)*dim])
			}
		})
	} else {
		ts := f32s(op, table)
		parallelFor(len(idx), dim, func(lo, hi int) {
			for i := lo; i < hi; i++ {
				id := int(idx[i])
				copy(o[i*dim:(i+1)*dim], ts[id*dim:(id+1)*dim])
			}
		})
	}
	done()
}

// checkIDs panics on the first id outside [0, vocab).
func checkIDs(op string, ids []int32, vocab int) {
	for i, id := range ids {
		check(id >= 0 && int(id) < vocab, op, "ids[%d] = %d outside the table's %d rows", i, id, vocab)
	}
}

// embeddingBlock is the column width each EmbeddingBackward worker owns.
const embeddingBlock = 64

// EmbeddingBackward scatter-adds dtable[ids[i], :] += dout[i, :]. Workers
// own disjoint column ranges and walk the ids in order, so repeated ids
// need no locks and the sums are deterministic.
func (b *Backend) EmbeddingBackward(dtable, dout, ids *engine.Tensor) {
	const op = "EmbeddingBackward"
	if dtable == nil {
		return
	}
	vocab, dim := dtable.Rows(), dtable.Cols()
	check(dout.Cols() == dim && dout.Rows() == ids.Len(), op, "dout %v must be [%d, %d] for ids %v and dtable %v", dout, ids.Len(), dim, ids, dtable)
	idx := i32s(op, ids)
	checkIDs(op, idx, vocab)
	ds := read(op, dout)
	dt, done := write(op, dtable)
	block := embeddingBlock
	if len(idx)*dim < 4*grain {
		block = dim // too little work to split
	}
	fixedChunks(dim, block, func(_, lo, hi int) {
		for i, id := range idx {
			dst := dt[int(id)*dim+lo : int(id)*dim+hi]
			for j, v := range ds[i*dim+lo : i*dim+hi] {
				dst[j] += v
			}
		}
	})
	done()
}
