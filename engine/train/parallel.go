package train

import (
	"fmt"
	"math"
	"sort"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/dist"
	"github.com/gotune/gotune/engine/fielderr"
)

// Parallel configures data-parallel training (Options.Parallel): every
// rank runs the same Trainer on the same data in the same order; each
// computes forward and backward on its slice of every global batch, the
// gradients are summed over ranks, and every rank applies the same update,
// so the run equals one process with the same global batch (up to the
// order of the sums).
//
// The gradients are reduced in buckets of about BucketBytes. With a model
// that announces its backward stages (engine.StagedBackward) and a Comm
// that can overlap (dist.Overlapper, as NCCL does on its own stream), a
// bucket is reduced as soon as the backward pass has finished its
// gradients, while the pass goes on below it, as PyTorch DDP does; every
// bucket is waited for before the optimizer step.
type Parallel struct {
	// Comm joins the ranks; a Comm of one rank trains as without Parallel.
	Comm dist.Comm
	// Zero is the ZeRO stage: 0 replicates the AdamW moments on every
	// rank; 1 keeps on each rank only the moments of its shard of the
	// flattened parameters (each rank updates its shard, then the weights
	// are all-gathered); 2 also shards the gradients: each bucket is
	// reduce-scattered into the rank's shard as soon as the backward pass
	// finished it, and its full-size buffer goes back to a small pool, so
	// a rank holds full gradients only for the few buckets in progress
	// (Param.G of a trainable parameter is then a view into that pool,
	// meaningful only during the trainer's backward passes).
	Zero int
	// BucketBytes bounds a gradient bucket (one collective call);
	// 0 means DefaultBucketBytes.
	BucketBytes int
}

// Validate reports a wrong ZeRO stage as a *fielderr.Error about Zero.
func (p *Parallel) Validate() error {
	if p.Zero < 0 || p.Zero > 2 {
		return fielderr.Errorf("Zero", "must be 0, 1 or 2, got %d", p.Zero)
	}
	return nil
}

// DefaultBucketBytes is the gradient bucket size (PyTorch DDP's default).
const DefaultBucketBytes = 25 << 20

// dataParallel is the trainer's data-parallel state.
type dataParallel struct {
	comm       dist.Comm
	rank, size int
	zero       int
	be         engine.Backend
	params     []*engine.Param // the trainer's
	buckets    []*bucket       // in the order the backward pass finishes them
	scratch    *engine.Tensor  // ZeRO: one bucket of float32 (weights and moments gathered)
	scalars    *engine.Tensor  // the step's loss (two float32 halves) and stop vote
	wantStop   bool            // this rank's vote: its context was cancelled
	stop       bool            // some rank voted to stop after the last step
	moments    [][2][]float32  // full moments gathered for a checkpoint (ZeRO)
	reduction                  // launching the buckets' collectives (overlap.go)
}

// bucket is a group of trainable parameters whose gradients live in one
// flat buffer (Param.G are views into it), reduced by one collective.
type bucket struct {
	params []int // indices into Trainer.params
	offs   []int // where each parameter starts in the flat buffer
	n      int   // the flat buffer's length: shard × world size (padded)
	shard  int
	// first and last are the backward stages in which its gradients are
	// written (engine.GradSpan, over its parameters).
	first, last int
	// flat holds the gradients: its own buffer (ZeRO 0, 1), or a staging
	// buffer it holds while the backward pass writes it and its
	// reduce-scatter runs (ZeRO-2; nil otherwise).
	flat *engine.Tensor
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

// shardsGrads reports whether opts asks for sharded gradients (ZeRO-2),
// whose full-size buffers the data-parallel state lends out itself.
func (o *Options) shardsGrads() bool { return o.shardsMoments() && o.Parallel.Zero == 2 }

// newDataParallel lays the trainable parameters' gradients out in
// buckets, in the order the backward pass finishes them, and allocates
// the sharded state.
func newDataParallel(t *Trainer, p *Parallel) (*dataParallel, error) {
	if err := p.Validate(); err != nil {
		return nil, err
	}
	if t.opts.Penalty != nil {
		return nil, fmt.Errorf("a training penalty (EWC, O-LoRA) is not supported with %d processes", p.Comm.Size())
	}
	for _, q := range t.params {
		if q.W.DType() != engine.Float32 {
			return nil, fmt.Errorf("parameter %s: data-parallel training needs float32 trainable weights, got %v", q.Name, q.W.DType())
		}
	}
	dp := &dataParallel{comm: p.Comm, rank: p.Comm.Rank(), size: p.Comm.Size(), zero: p.Zero, be: t.be, params: t.params}
	limit := p.BucketBytes
	if limit <= 0 {
		limit = DefaultBucketBytes
	}
	spans := dp.gradSpans(t.model)
	order := make([]int, len(t.params))
	for i := range order {
		order[i] = len(order) - 1 - i // without stages: the reverse of model order
	}
	sort.SliceStable(order, func(a, b int) bool { return spans[order[a]].Last < spans[order[b]].Last })
	var cur *bucket
	for _, i := range order {
		q, sp := t.params[i], spans[i]
		if cur == nil || (cur.n > 0 && 4*(cur.n+q.W.Len()) > limit) {
			cur = &bucket{first: sp.First, last: sp.Last}
			dp.buckets = append(dp.buckets, cur)
		}
		cur.params = append(cur.params, i)
		cur.offs = append(cur.offs, cur.n)
		cur.n += q.W.Len()
		cur.first, cur.last = min(cur.first, sp.First), max(cur.last, sp.Last)
	}
	largest := 0
	for _, b := range dp.buckets {
		b.shard = (b.n + dp.size - 1) / dp.size
		b.n = b.shard * dp.size
		dp.layout(b)
		largest = max(largest, b.n)
	}
	dp.initReduction(largest)
	if dp.zero >= 1 {
		dp.scratch = t.be.Alloc(engine.Float32, largest)
	}
	dp.scalars = t.be.Alloc(engine.Float32, 4)
	return dp, nil
}

// gradSpans returns every trainable parameter's backward stages, all 0
// when the model does not announce them.
func (dp *dataParallel) gradSpans(model engine.CausalLM) []engine.GradSpan {
	out := make([]engine.GradSpan, len(dp.params))
	sb, ok := model.(engine.StagedBackward)
	if !ok {
		return out
	}
	dp.staged = sb
	_, spans := sb.GradSpans()
	for i, q := range dp.params {
		out[i] = spans[q]
	}
	return out
}

// layout gives b its flat gradient buffer (ZeRO 0, 1) and points its
// parameters' gradients into it, allocates its shards (ZeRO) and finds
// this rank's segments.
func (dp *dataParallel) layout(b *bucket) {
	be := dp.be
	lo, hi := dp.rank*b.shard, (dp.rank+1)*b.shard
	for j, i := range b.params {
		q := dp.params[i]
		if q.G != nil {
			be.Free(q.G)
			q.G = nil
		}
		off, n := b.offs[j], q.W.Len()
		if s, e := max(lo, off), min(hi, off+n); s < e {
			b.segs = append(b.segs, segment{param: i, lo: s - off, hi: e - off, at: s - lo})
		}
	}
	if dp.zero < 2 {
		b.flat = be.Alloc(engine.Float32, b.n)
		dp.pointGrads(b, b.flat)
	}
	if dp.zero >= 1 {
		b.m = be.Alloc(engine.Float32, b.shard)
		b.v = be.Alloc(engine.Float32, b.shard)
	}
	if dp.zero == 2 {
		b.g = be.Alloc(engine.Float32, b.shard)
	}
}

// pointGrads makes b's parameters' gradients views into flat.
func (dp *dataParallel) pointGrads(b *bucket, flat *engine.Tensor) {
	for j, i := range b.params {
		q := dp.params[i]
		off := b.offs[j]
		q.G = flat.Slice(off, off+q.W.Len()).Reshape(q.W.Shape()...)
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
	if hb.Segments != nil {
		part.Segments = hb.Segments[lo*hb.T : hi*hb.T]
		part.Positions = hb.Positions[lo*hb.T : hi*hb.T]
		part.Packs = hb.Packs[lo:hi]
	}
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
	buf := dp.scratch.Slice(0, b.n)
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
		buf := dp.scratch.Slice(0, b.n)
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

// free releases the data-parallel buffers: not the parameters' gradient
// views (ZeRO 0, 1), which the model keeps using; under ZeRO-2 any
// staging buffer, and the parameters are left without gradients.
func (dp *dataParallel) free(be engine.Backend) {
	dp.freeStaging()
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
	fail := func(err error) (StepMetrics, error) {
		dp.abandon()
		t.zeroGrads()
		return StepMetrics{}, fmt.Errorf("step %d (rank %d): %w", k, dp.rank, err)
	}
	scale := float32(1 / float64(tokens))
	parts := make([]data.Batch, len(batches))
	lastReal := -1 // this rank's last micro-batch with rows: its gradients are final after it
	for j, hb := range batches {
		if parts[j] = shardBatch(hb, dp.rank, dp.size); parts[j].B > 0 {
			lastReal = j
		}
	}
	dp.beginStep()
	defer dp.endStep()
	lossSum := 0.0
	for j, part := range parts {
		dp.beginMicro(j == lastReal)
		if part.B > 0 {
			t.announcePass(k, j)
			s, err := ForwardBatch(t.model, part, true, scale)
			if err != nil {
				return fail(err)
			}
			lossSum += s
		}
		if dp.zero == 2 || j == len(parts)-1 {
			// ZeRO-2 reduces every micro-batch (its full gradients are
			// not kept); the others reduce once, after the last.
			if err := dp.finishMicro(); err != nil {
				return fail(fmt.Errorf("reducing gradients: %w", err))
			}
		}
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
