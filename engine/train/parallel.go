package train

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/dist"
)

// Parallel configures data-parallel training (Options.Parallel): every
// rank runs the same Trainer on the same data in the same order; each
// computes forward and backward on its slice of every global batch, the
// gradients are summed over ranks, and every rank applies the same update,
// so the run equals one process with the same global batch (up to the
// order of the sums).
type Parallel struct {
	// Comm joins the ranks; a Comm of one rank trains as without Parallel.
	Comm dist.Comm
	// Zero is the ZeRO stage: 0 replicates the AdamW moments on every
	// rank; 1 keeps on each rank only the moments of its shard of the
	// flattened parameters (each rank updates its shard, then the weights
	// are all-gathered); 2 also reduce-scatters the gradients, so each
	// rank reduces, clips and reads only its shard of them.
	Zero int
	// BucketBytes bounds a gradient bucket (one collective call);
	// 0 means DefaultBucketBytes.
	BucketBytes int
}

// DefaultBucketBytes is the gradient bucket size (PyTorch DDP's default).
const DefaultBucketBytes = 25 << 20

// dataParallel is the trainer's data-parallel state.
type dataParallel struct {
	comm       dist.Comm
	rank, size int
	zero       int
	buckets    []*bucket
	scratch    *engine.Tensor // one bucket of float32: weights and moments gathered
	scalars    *engine.Tensor // the step's loss (two float32 halves) and stop vote
	wantStop   bool           // this rank's vote: its context was cancelled
	stop       bool           // some rank voted to stop after the last step
	moments    [][2][]float32 // full moments gathered for a checkpoint (ZeRO)
}

// bucket is a group of trainable parameters whose gradients live in one
// flat buffer (Param.G are views into it), reduced by one collective.
type bucket struct {
	flat   *engine.Tensor // the gradients, padded to a multiple of the world size
	params []int          // indices into Trainer.params
	offs   []int          // where each parameter starts in flat
	shard  int            // flat.Len() / world size
	// ZeRO: this rank's shard [rank·shard, (rank+1)·shard) of flat.
	m, v, g *engine.Tensor // moments (stage ≥ 1) and reduced gradient (stage 2)
	segs    []segment      // the parameters' pieces inside the shard
}

// segment is the piece [lo, hi) of parameter param (flattened) that lies
// in a rank's shard, at shard offset at.
type segment struct{ param, lo, hi, at int }

// shardsMoments reports whether opts asks for sharded optimizer state.
func (o *Options) shardsMoments() bool {
	return o.Parallel != nil && o.Parallel.Comm != nil && o.Parallel.Comm.Size() > 1 && o.Parallel.Zero >= 1
}

// newDataParallel lays the trainable parameters' gradients out in
// buckets and allocates the sharded state.
func newDataParallel(t *Trainer, p *Parallel) (*dataParallel, error) {
	if p.Zero < 0 || p.Zero > 2 {
		return nil, fmt.Errorf("--zero must be 0, 1 or 2, got %d", p.Zero)
	}
	if t.opts.Penalty != nil {
		return nil, fmt.Errorf("a training penalty (EWC, O-LoRA) is not supported with %d processes", p.Comm.Size())
	}
	dp := &dataParallel{comm: p.Comm, rank: p.Comm.Rank(), size: p.Comm.Size(), zero: p.Zero}
	limit := p.BucketBytes
	if limit <= 0 {
		limit = DefaultBucketBytes
	}
	var cur *bucket
	n := 0
	for i, q := range t.params {
		if q.W.DType() != engine.Float32 {
			return nil, fmt.Errorf("parameter %s: data-parallel training needs float32 trainable weights, got %v", q.Name, q.W.DType())
		}
		if cur == nil || (n > 0 && 4*(n+q.W.Len()) > limit) {
			cur = &bucket{}
			dp.buckets = append(dp.buckets, cur)
			n = 0
		}
		cur.params = append(cur.params, i)
		cur.offs = append(cur.offs, n)
		n += q.W.Len()
		cur.shard = (n + dp.size - 1) / dp.size
	}
	largest := 0
	for _, b := range dp.buckets {
		dp.layout(t, b)
		largest = max(largest, b.flat.Len())
	}
	if dp.zero >= 1 {
		dp.scratch = t.be.Alloc(engine.Float32, largest)
	}
	dp.scalars = t.be.Alloc(engine.Float32, 4)
	return dp, nil
}

// layout allocates b's flat gradient buffer, points its parameters'
// gradients into it, and (ZeRO) finds this rank's segments.
func (dp *dataParallel) layout(t *Trainer, b *bucket) {
	be := t.be
	b.flat = be.Alloc(engine.Float32, b.shard*dp.size)
	lo, hi := dp.rank*b.shard, (dp.rank+1)*b.shard
	for j, i := range b.params {
		q := t.params[i]
		if q.G != nil {
			be.Free(q.G)
		}
		off, n := b.offs[j], q.W.Len()
		q.G = b.flat.Slice(off, off+n).Reshape(q.W.Shape()...)
		if s, e := max(lo, off), min(hi, off+n); s < e {
			b.segs = append(b.segs, segment{param: i, lo: s - off, hi: e - off, at: s - lo})
		}
	}
	if dp.zero >= 1 {
		b.m = be.Alloc(engine.Float32, b.shard)
		b.v = be.Alloc(engine.Float32, b.shard)
	}
	if dp.zero == 2 {
		b.g = be.Alloc(engine.Float32, b.shard)
	}
}

// shardBatch returns rank's rows of a global batch: rows
// [rank·B/size, (rank+1)·B/size), so every row is on exactly one rank.
func shardBatch(hb data.Batch, rank, size int) data.Batch {
	lo, hi := rank*hb.B/size, (rank+1)*hb.B/size
	part := hb
	part.B = hi - lo
	part.InputIDs = hb.InputIDs[lo*hb.T : hi*hb.T]
	part.Targets = hb.Targets[lo*hb.T : hi*hb.T]
	part.Counted = countCounted(part.Targets)
	if len(hb.FirstLabels) == hb.B {
		part.FirstLabels = hb.FirstLabels[lo:hi]
		part.CountedFirst = countCounted(part.FirstLabels)
	}
	if len(hb.Rows) == hb.B {
		part.Rows = hb.Rows[lo:hi]
	}
	return part
}

func countCounted(labels []int32) int {
	n := 0
	for _, l := range labels {
		if l != data.IgnoreIndex {
			n++
		}
	}
	return n
}

// reduceGrads sums the gradients over ranks: all-reduce of every bucket,
// or (ZeRO-2) reduce-scatter into this rank's shard.
func (dp *dataParallel) reduceGrads() error {
	for _, b := range dp.buckets {
		var err error
		if dp.zero == 2 {
			err = dp.comm.ReduceScatterSum(b.g, b.flat)
		} else {
			err = dp.comm.AllReduceSum(b.flat)
		}
		if err != nil {
			return fmt.Errorf("reducing gradients: %w", err)
		}
	}
	return nil
}

// reduceScalars sums the ranks' loss sums (as two float32 halves, so the
// sum keeps about 48 bits) and their stop votes.
func (dp *dataParallel) reduceScalars(be engine.Backend, lossSum float64) (float64, error) {
	hi := float32(lossSum)
	lo := float32(lossSum - float64(hi))
	vote := float32(0)
	if dp.wantStop {
		vote = 1
	}
	be.Upload(dp.scalars, []float32{hi, lo, vote, 0})
	if err := dp.comm.AllReduceSum(dp.scalars); err != nil {
		return 0, fmt.Errorf("reducing the loss: %w", err)
	}
	s := be.Download(dp.scalars)
	dp.stop = s[2] > 0
	return float64(s[0]) + float64(s[1]), nil
}

// gradNorm returns the global gradient norm: from the full reduced
// gradients (stages 0, 1), or the sum of the shards' squares (stage 2).
func (dp *dataParallel) gradNorm(t *Trainer) (float64, error) {
	t.be.Fill(t.norm, 0)
	if dp.zero < 2 {
		for _, p := range t.params {
			t.be.SumSquares(t.norm, p.G)
		}
		return math.Sqrt(float64(t.be.Download(t.norm)[0])), nil
	}
	for _, b := range dp.buckets {
		t.be.SumSquares(t.norm, b.g)
	}
	if err := dp.comm.AllReduceSum(t.norm); err != nil {
		return 0, fmt.Errorf("reducing the gradient norm: %w", err)
	}
	return math.Sqrt(float64(t.be.Download(t.norm)[0])), nil
}

// scaleGrads multiplies the gradients the update reads by coef.
func (dp *dataParallel) scaleGrads(t *Trainer, coef float32) {
	for _, b := range dp.buckets {
		if dp.zero == 2 {
			t.be.Scale(b.g, coef)
		} else {
			t.be.Scale(b.flat, coef)
		}
	}
}

// update applies AdamW: to every parameter (stage 0), or to this rank's
// segments followed by an all-gather of the weights (stages 1, 2).
func (dp *dataParallel) update(t *Trainer, lr float64, k int) error {
	if dp.zero == 0 {
		for i := range t.params {
			t.adamW(t.params[i], t.params[i].W, t.params[i].G, t.m[i], t.v[i], lr, k)
		}
		return nil
	}
	for _, b := range dp.buckets {
		for _, s := range b.segs {
			p := t.params[s.param]
			g := flatView(p.G).Slice(s.lo, s.hi)
			if dp.zero == 2 {
				g = b.g.Slice(s.at, s.at+s.hi-s.lo)
			}
			t.adamW(p, flatView(p.W).Slice(s.lo, s.hi), g,
				b.m.Slice(s.at, s.at+s.hi-s.lo), b.v.Slice(s.at, s.at+s.hi-s.lo), lr, k)
		}
		if err := dp.gatherWeights(t, b); err != nil {
			return err
		}
	}
	return nil
}

// gatherWeights gives every rank the weights of b that the other ranks
// updated: each rank's shard goes into its block of the scratch buffer,
// an all-gather fills the rest, and the parameters are copied back.
func (dp *dataParallel) gatherWeights(t *Trainer, b *bucket) error {
	buf := dp.scratch.Slice(0, b.flat.Len())
	mine := buf.Slice(dp.rank*b.shard, (dp.rank+1)*b.shard)
	for _, s := range b.segs {
		t.be.Copy(mine.Slice(s.at, s.at+s.hi-s.lo), flatView(t.params[s.param].W).Slice(s.lo, s.hi))
	}
	if err := dp.comm.AllGather(buf, mine); err != nil {
		return fmt.Errorf("gathering the updated weights: %w", err)
	}
	for j, i := range b.params {
		w := t.params[i].W
		t.be.Copy(flatView(w), buf.Slice(b.offs[j], b.offs[j]+w.Len()))
	}
	return nil
}

// gatherMoments collects the full AdamW moments of every parameter on
// every rank (ZeRO; a collective) for a checkpoint.
func (dp *dataParallel) gatherMoments(t *Trainer) error {
	dp.moments = make([][2][]float32, len(t.params))
	for _, b := range dp.buckets {
		buf := dp.scratch.Slice(0, b.flat.Len())
		for which, shard := range []*engine.Tensor{b.m, b.v} {
			if err := dp.comm.AllGather(buf, shard); err != nil {
				return fmt.Errorf("gathering the optimizer state: %w", err)
			}
			all := t.be.Download(buf)
			for j, i := range b.params {
				n := t.params[i].W.Len()
				dp.moments[i][which] = all[b.offs[j] : b.offs[j]+n]
			}
		}
	}
	return nil
}

// loadMoments uploads this rank's shard of full moments (from a
// checkpoint written by any number of ranks).
func (dp *dataParallel) loadMoments(t *Trainer, full [][2][]float32) {
	for _, b := range dp.buckets {
		for which, shard := range []*engine.Tensor{b.m, b.v} {
			host := make([]float32, b.shard)
			for _, s := range b.segs {
				copy(host[s.at:], full[s.param][which][s.lo:s.hi])
			}
			t.be.Upload(shard, host)
		}
	}
}

// free releases the data-parallel buffers (not the parameters' gradient
// views, which the model keeps using).
func (dp *dataParallel) free(be engine.Backend) {
	for _, b := range dp.buckets {
		for _, x := range []*engine.Tensor{b.m, b.v, b.g} {
			if x != nil {
				be.Free(x)
			}
		}
	}
	for _, x := range []*engine.Tensor{dp.scratch, dp.scalars} {
		if x != nil {
			be.Free(x)
		}
	}
}

// flatView is t as one row of t.Len() elements.
func flatView(t *engine.Tensor) *engine.Tensor { return t.Reshape(t.Len()) }

// stepParallel is Step's data-parallel part after the global batches are
// drawn and their tokens counted (the same numbers on every rank): this
// rank's rows forward and backward, gradients and loss summed over ranks,
// then one update that every rank computes alike.
func (t *Trainer) stepParallel(k int, batches []data.Batch, tokens int) (StepMetrics, error) {
	dp := t.dp
	scale := float32(1 / float64(tokens))
	lossSum := 0.0
	for i, hb := range batches {
		part := shardBatch(hb, dp.rank, dp.size)
		if part.B == 0 {
			continue
		}
		t.announcePass(k, i)
		s, err := ForwardBatch(t.model, part, true, scale)
		if err != nil {
			return StepMetrics{}, fmt.Errorf("step %d (rank %d): %w", k, dp.rank, err)
		}
		lossSum += s
	}
	fail := func(err error) (StepMetrics, error) {
		t.zeroGrads()
		return StepMetrics{}, fmt.Errorf("step %d (rank %d): %w", k, dp.rank, err)
	}
	if err := dp.reduceGrads(); err != nil {
		return fail(err)
	}
	lossSum, err := dp.reduceScalars(t.be, lossSum)
	if err != nil {
		return fail(err)
	}
	loss := lossSum / float64(tokens)
	gradNorm, err := dp.gradNorm(t)
	if err != nil {
		return fail(err)
	}
	if err := t.checkDivergence(k, loss, gradNorm); err != nil {
		t.zeroGrads()
		return StepMetrics{}, err
	}
	if t.cfg.MaxGradNorm > 0 {
		if coef := t.cfg.MaxGradNorm / (gradNorm + 1e-6); coef < 1 {
			dp.scaleGrads(t, float32(coef))
		}
	}
	lr := t.LR(k)
	if err := dp.update(t, lr, k); err != nil {
		return fail(err)
	}
	return t.finishStep(k, loss, 0, lr, gradNorm, tokens)
}
