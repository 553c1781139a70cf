package train

import (
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/dist"
)

// reduction launches the gradient buckets' collectives during the
// backward pass: it observes the model's backward stages
// (engine.StagedBackward) and starts the collective of every bucket
// whose gradients are final, in bucket order, so that all ranks issue
// the same sequence whatever their timing. Buckets the pass did not
// launch (a model without stages, a rank without rows in the last
// micro-batch) are launched by finishMicro, which then waits for all.
//
// Under ZeRO-2 a bucket gets its full-size buffer (staging) just before
// its first stage and gives it back once its reduce-scatter is done. The
// collectives launched after a stage may run while the next stage
// computes; the stage after that waits for them first, so a rank holds
// full-size gradients for about two layers (double buffering), plus any
// bucket whose parameters span stages (a tied embedding, a prefix).
type reduction struct {
	staged   engine.StagedBackward // nil: the model does not announce its stages
	attachAt map[int][]*bucket     // ZeRO-2: the buckets whose first stage is the key
	active   bool                  // the current micro-batch launches buckets as they are done
	stage    int                   // the stage in progress (launches are tagged with it)
	next     int                   // the next bucket to launch
	inflight []launched            // started, not waited for, oldest first
	reduced  bool                  // ZeRO-2: this step has reduce-scattered a micro-batch already
	err      error                 // the first failed launch of the current step

	stagingNow, stagingPeak int // ZeRO-2: elements of staging held, now and at most
}

// launched is a bucket whose collective was started.
type launched struct {
	b       *bucket
	pending dist.Pending
	stage   int  // the stage after which it was launched
	add     bool // ZeRO-2: add the in-place reduced block into b.g when done
}

// doneAlready is the Pending of a collective that completed when called.
type doneAlready struct{}

func (doneAlready) Wait() error { return nil }

// initReduction prepares the ZeRO-2 launch plan: which buckets to lend
// a staging buffer before each stage. Every parameter's gradient starts
// as a view into a freed buffer: the model then allocates none of its
// own, and a write outside the trainer's backward passes fails loudly
// instead of landing in another bucket's gradients.
func (dp *dataParallel) initReduction(largest int) {
	if dp.zero != 2 {
		return
	}
	dp.attachAt = map[int][]*bucket{}
	buf := dp.be.Alloc(engine.Float32, largest)
	for _, b := range dp.buckets {
		dp.attachAt[b.first] = append(dp.attachAt[b.first], b)
		dp.pointGrads(b, buf)
	}
	dp.be.Free(buf)
}

// beginStep installs dp as the model's backward observer for a step.
func (dp *dataParallel) beginStep() {
	dp.reduced, dp.err = false, nil
	if dp.staged != nil {
		dp.staged.ObserveBackward(dp)
	}
}

// endStep removes the observer.
func (dp *dataParallel) endStep() {
	if dp.staged != nil {
		dp.staged.ObserveBackward(nil)
	}
}

// beginMicro prepares a micro-batch's backward pass: it launches buckets
// as they are done under ZeRO-2 (every micro-batch is reduced) or when
// last (this rank's last backward pass of the step). Without stages,
// ZeRO-2 lends every bucket its buffer up front.
func (dp *dataParallel) beginMicro(last bool) {
	dp.next = 0
	dp.active = dp.zero == 2 || last
	if dp.zero == 2 && dp.staged == nil {
		for _, b := range dp.buckets {
			dp.attach(b)
		}
	}
}

// BeforeStage (engine.BackwardObserver) waits, under ZeRO-2, for the
// collectives launched before the previous stage ended and lends staging
// buffers to the buckets whose gradients stage s starts writing.
func (dp *dataParallel) BeforeStage(s int) {
	if !dp.active {
		return
	}
	dp.stage = s
	for dp.zero == 2 && len(dp.inflight) > 0 && dp.inflight[0].stage < s-1 {
		dp.retire()
	}
	for _, b := range dp.attachAt[s] {
		dp.attach(b)
	}
}

// AfterStage launches, in order, the buckets whose gradients are final
// once stage s is done (engine.BackwardObserver).
func (dp *dataParallel) AfterStage(s int) {
	if !dp.active {
		return
	}
	for dp.next < len(dp.buckets) && dp.buckets[dp.next].last <= s {
		dp.launch(dp.buckets[dp.next])
	}
}

// finishMicro launches the buckets the backward pass did not and waits
// for all (the computation queued next runs after them).
func (dp *dataParallel) finishMicro() error {
	dp.stage = math.MaxInt
	for dp.next < len(dp.buckets) {
		b := dp.buckets[dp.next]
		if dp.zero == 2 && b.flat == nil {
			dp.attach(b) // no backward pass wrote it: it contributes zeros
		}
		dp.launch(b)
	}
	for len(dp.inflight) > 0 {
		dp.retire()
	}
	dp.reduced = true
	dp.active = false
	return dp.err
}

// abandon waits for whatever a failed step left in flight.
func (dp *dataParallel) abandon() {
	dp.next = len(dp.buckets)
	for len(dp.inflight) > 0 {
		dp.retire()
	}
	for _, b := range dp.buckets {
		if dp.zero == 2 && b.flat != nil {
			dp.release(b)
		}
	}
	dp.active = false
}

// launch starts b's collective: an all-reduce of its gradients (ZeRO 0,
// 1), or a reduce-scatter into this rank's shard (ZeRO-2): into b.g for
// the step's first micro-batch, else in place and added to b.g when done.
func (dp *dataParallel) launch(b *bucket) {
	dp.next++
	if dp.err != nil {
		return
	}
	ov, async := dp.comm.(dist.Overlapper)
	var p dist.Pending = doneAlready{}
	var err error
	add := false
	switch {
	case dp.zero < 2 && async:
		p, err = ov.StartAllReduceSum(b.flat)
	case dp.zero < 2:
		err = dp.comm.AllReduceSum(b.flat)
	default:
		dst := b.g
		if add = dp.reduced; add {
			dst = b.flat.Slice(dp.rank*b.shard, (dp.rank+1)*b.shard)
		}
		if async {
			p, err = ov.StartReduceScatterSum(dst, b.flat)
		} else {
			err = dp.comm.ReduceScatterSum(dst, b.flat)
		}
	}
	if err != nil {
		dp.err = err
		return
	}
	dp.inflight = append(dp.inflight, launched{b: b, pending: p, stage: dp.stage, add: add})
}

// retire waits for the oldest collective in flight; under ZeRO-2 it then
// accumulates an in-place result and takes the staging buffer back.
func (dp *dataParallel) retire() {
	l := dp.inflight[0]
	dp.inflight = dp.inflight[1:]
	if err := l.pending.Wait(); err != nil && dp.err == nil {
		dp.err = err
	}
	if dp.zero != 2 {
		return
	}
	if l.add {
		dp.be.Axpy(l.b.g, l.b.flat.Slice(dp.rank*l.b.shard, (dp.rank+1)*l.b.shard), 1)
	}
	dp.release(l.b)
}

// attach gives b a zeroed staging buffer and points its parameters'
// gradients into it (ZeRO-2). The buffers come from and go back to the
// backend's allocator (a cache of blocks on a GPU), so their sizes follow
// the buckets in progress.
func (dp *dataParallel) attach(b *bucket) {
	if b.flat != nil {
		return
	}
	b.flat = dp.be.Alloc(engine.Float32, b.n)
	dp.be.Fill(b.flat, 0)
	dp.pointGrads(b, b.flat)
	dp.stagingNow += b.n
	dp.stagingPeak = max(dp.stagingPeak, dp.stagingNow)
}

// release frees b's staging buffer (its collective is done, or was
// never launched). The parameters' gradients are left pointing at it:
// the model must not allocate its own, and the next attach re-points them.
func (dp *dataParallel) release(b *bucket) {
	dp.be.Free(b.flat)
	b.flat = nil
	dp.stagingNow -= b.n
}

// freeStaging frees the ZeRO-2 staging buffers still held; the
// parameters are left without a gradient buffer.
func (dp *dataParallel) freeStaging() {
	if dp.zero != 2 {
		return
	}
	dp.abandon()
	for _, q := range dp.params {
		q.G = nil
	}
}
