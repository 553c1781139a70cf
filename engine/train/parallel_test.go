package train

import (
	"fmt"
	"math"
	"runtime"
	"strings"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/dist"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
)

// localGroup joins goroutine ranks, each with its own CPU backend, as the
// emulated NCCL joins processes: a collective publishes every rank's
// input (downloaded to the host), meets the others at a barrier and
// reduces the inputs in rank order, so every rank computes the same bits.
type localGroup struct {
	n       int
	mu      sync.Mutex
	cond    *sync.Cond
	arrived int
	gen     int
	slots   [][]float32
}

func newLocalGroup(n int) *localGroup {
	g := &localGroup{n: n, slots: make([][]float32, n)}
	g.cond = sync.NewCond(&g.mu)
	return g
}

func (g *localGroup) barrier() {
	g.mu.Lock()
	defer g.mu.Unlock()
	gen := g.gen
	if g.arrived++; g.arrived == g.n {
		g.arrived, g.gen = 0, g.gen+1
		g.cond.Broadcast()
		return
	}
	for gen == g.gen {
		g.cond.Wait()
	}
}

// localComm is one rank of a localGroup (dist.Comm and, with every
// collective done at once, dist.Overlapper). log, if set, records the
// collectives, for tests of their order.
type localComm struct {
	g    *localGroup
	rank int
	be   engine.Backend
	log  func(event string)
}

var (
	_ dist.Comm       = (*localComm)(nil)
	_ dist.Overlapper = (*localComm)(nil)
)

func (c *localComm) Rank() int { return c.rank }
func (c *localComm) Size() int { return c.g.n }
func (c *localComm) Abort()    {}
func (c *localComm) Close() error {
	return nil
}

func (c *localComm) note(format string, args ...any) {
	if c.log != nil {
		c.log(fmt.Sprintf(format, args...))
	}
}

// exchange publishes x and hands every rank's input to use.
func (c *localComm) exchange(x []float32, use func(all [][]float32)) {
	c.g.slots[c.rank] = x
	c.g.barrier()
	use(c.g.slots)
	c.g.barrier()
}

// sumFrom returns Σ_r all[r][off+i] over ranks in order, i < n.
func sumFrom(all [][]float32, off, n int) []float32 {
	out := append([]float32(nil), all[0][off:off+n]...)
	for _, x := range all[1:] {
		for i := range out {
			out[i] += x[off+i]
		}
	}
	return out
}

func (c *localComm) AllReduceSum(t *engine.Tensor) error {
	c.note("all-reduce %d", t.Len())
	c.exchange(c.be.Download(t), func(all [][]float32) { c.be.Upload(t, sumFrom(all, 0, t.Len())) })
	return nil
}

func (c *localComm) ReduceScatterSum(dst, src *engine.Tensor) error {
	c.note("reduce-scatter %d", src.Len())
	c.exchange(c.be.Download(src), func(all [][]float32) {
		c.be.Upload(dst, sumFrom(all, c.rank*dst.Len(), dst.Len()))
	})
	return nil
}

func (c *localComm) AllGather(dst, src *engine.Tensor) error {
	c.exchange(c.be.Download(src), func(all [][]float32) {
		var out []float32
		for _, x := range all {
			out = append(out, x...)
		}
		c.be.Upload(dst, out)
	})
	return nil
}

func (c *localComm) Broadcast(t *engine.Tensor, root int) error {
	c.exchange(c.be.Download(t), func(all [][]float32) { c.be.Upload(t, all[root]) })
	return nil
}

func (c *localComm) StartAllReduceSum(t *engine.Tensor) (dist.Pending, error) {
	c.note("start")
	return localPending{c}, c.AllReduceSum(t)
}

func (c *localComm) StartReduceScatterSum(dst, src *engine.Tensor) (dist.Pending, error) {
	c.note("start")
	return localPending{c}, c.ReduceScatterSum(dst, src)
}

type localPending struct{ c *localComm }

func (p localPending) Wait() error { p.c.note("wait"); return nil }

// ddpRun is one rank's (or the reference's) part of a training run.
type ddpRun struct {
	losses, norms []float64
	weights       map[string][]float32
	trainer       *Trainer
	stateBytes    uint64 // memory the trainer holds between steps (beyond the model and its activations)
	peakBytes     uint64 // the most it held during a step (beyond the same)
}

// ddpCase describes an in-process data-parallel run of the tiny Llama
// (testdata/tiny/llama, 2 layers), or of a fresh one with more layers.
type ddpCase struct {
	ranks, zero, accum, bucketBytes, steps int
	layers                                 int // 0: the tiny Llama
}

// loadDDPModel returns the case's model on its own CPU backend.
func loadDDPModel(c ddpCase) (model.Model, error) {
	if c.layers == 0 {
		return model.Load("../../testdata/tiny/llama", cpu.New())
	}
	cfg, err := hfconfig.NewLlama(hfconfig.Sizes{VocabSize: 256, Hidden: 64, Layers: c.layers, Heads: 4, KVHeads: 2, Intermediate: 176, MaxPos: 128})
	if err != nil {
		return nil, err
	}
	return model.New(cfg, cpu.New(), 7)
}

// tinyTrainer loads the tiny Llama on its own CPU backend with a loader
// of global batches of 4 sequences (c.accum micro-batches a step) and
// returns its trainer and the bytes in use before the trainer was made.
func tinyTrainer(c ddpCase, par *Parallel, wrap func(engine.CausalLM) engine.CausalLM) (*Trainer, engine.CausalLM, uint64, error) {
	m, err := loadDDPModel(c)
	if err != nil {
		return nil, nil, 0, err
	}
	ds, err := data.Load("../../testdata/tiny/data.jsonl", data.LoadOptions{VocabSize: 256})
	if err != nil {
		return nil, nil, 0, err
	}
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: 4, SeqLen: 24, PadToSeqLen: true})
	if err != nil {
		return nil, nil, 0, err
	}
	var lm engine.CausalLM = m
	if wrap != nil {
		lm = wrap(m)
	}
	before, err := warmActivations(lm, loader.Batch(0, 0), max(c.ranks, 1))
	if err != nil {
		return nil, nil, 0, err
	}
	cfg := Config{Steps: c.steps, GradAccum: c.accum, LR: 3e-3, Schedule: Constant, Beta1: 0.9, Beta2: 0.95,
		Eps: 1e-8, WeightDecay: 0.01, MaxGradNorm: 1}
	tr, err := New(lm, loader, cfg, Options{Parallel: par})
	return tr, lm, before, err
}

// warmActivations runs one backward pass on a rank's share of a batch, so
// the model holds the activation buffers of training, then frees the
// gradients: what the backend holds afterwards is the weights and
// activations, to which the trainer adds its gradients and optimizer
// state. It returns the bytes in use then.
func warmActivations(m engine.CausalLM, hb data.Batch, ranks int) (uint64, error) {
	if _, err := ForwardBatch(m, shardBatch(hb, 0, ranks), true, 1); err != nil {
		return 0, err
	}
	for _, p := range m.Params() {
		if p.G != nil {
			m.Backend().Free(p.G)
			p.G = nil
		}
	}
	runtime.GC()
	return m.Backend().(engine.MemoryReporter).MemoryStats().InUse, nil
}

// runDDP trains c.ranks goroutine ranks (or, when c.ranks is 0, one
// trainer without Parallel: the reference) and returns each rank's
// results. wrap and log, if set, wrap a rank's model and log its
// collectives.
func runDDP(t *testing.T, c ddpCase, wrap func(rank int, m engine.CausalLM) engine.CausalLM, log func(rank int) func(string)) []*ddpRun {
	t.Helper()
	n := max(c.ranks, 1)
	g := newLocalGroup(n)
	runs := make([]*ddpRun, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for r := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			var par *Parallel
			comm := &localComm{g: g, rank: r}
			if c.ranks > 0 {
				if log != nil {
					comm.log = log(r)
				}
				par = &Parallel{Comm: comm, Zero: c.zero, BucketBytes: c.bucketBytes}
			}
			var w func(engine.CausalLM) engine.CausalLM
			if wrap != nil {
				w = func(m engine.CausalLM) engine.CausalLM { return wrap(r, m) }
			}
			tr, m, before, err := tinyTrainer(c, par, w)
			if err != nil {
				errs[r] = err
				return
			}
			comm.be = m.Backend()
			runs[r], errs[r] = trainSteps(tr, m, before)
		}()
	}
	wg.Wait()
	for r, err := range errs {
		require.NoError(t, err, "rank %d", r)
	}
	return runs
}

// trainSteps runs a trainer's steps and collects its results.
func trainSteps(tr *Trainer, m engine.CausalLM, before uint64) (*ddpRun, error) {
	run := &ddpRun{weights: map[string][]float32{}, trainer: tr}
	for tr.StepsDone() < tr.TotalSteps() {
		s, err := tr.Step()
		if err != nil {
			return nil, err
		}
		run.peakBytes = max(run.peakBytes, s.PeakMemBytes-before)
		run.losses = append(run.losses, s.Loss)
		run.norms = append(run.norms, s.GradNorm)
	}
	runtime.GC()
	run.stateBytes = m.Backend().(engine.MemoryReporter).MemoryStats().InUse - before
	for _, p := range m.Params() {
		run.weights[p.Name] = m.Backend().Download(p.W)
	}
	return run, nil
}

// TestDataParallelInProcess trains 2 and 4 goroutine ranks (ZeRO 0, 1,
// 2, with gradient accumulation and small buckets, so that several
// buckets are reduced during the backward pass) and compares every
// rank's losses, gradient norms and final weights with one process
// training the same global batches.
func TestDataParallelInProcess(t *testing.T) {
	ref := runDDP(t, ddpCase{steps: 3, accum: 2}, nil, nil)[0]
	for _, c := range []ddpCase{
		{ranks: 2, zero: 0, accum: 2, bucketBytes: 16 << 10},
		{ranks: 2, zero: 2, accum: 2, bucketBytes: 16 << 10},
		{ranks: 4, zero: 1, accum: 1, bucketBytes: 0},
		{ranks: 4, zero: 2, accum: 2, bucketBytes: 32 << 10},
	} {
		c.steps = 3
		t.Run(fmt.Sprintf("%d ranks ZeRO-%d accum %d buckets %d", c.ranks, c.zero, c.accum, c.bucketBytes), func(t *testing.T) {
			if c.accum == 1 {
				ref := runDDP(t, ddpCase{steps: 3, accum: 1}, nil, nil)[0]
				assertSameDDP(t, ref, runDDP(t, c, nil, nil))
				return
			}
			assertSameDDP(t, ref, runDDP(t, c, nil, nil))
		})
	}
}

func assertSameDDP(t *testing.T, ref *ddpRun, runs []*ddpRun) {
	t.Helper()
	for r, run := range runs {
		require.Len(t, run.losses, len(ref.losses))
		for k := range ref.losses {
			assert.InDelta(t, ref.losses[k], run.losses[k], 1e-5, "rank %d: loss of step %d", r, k+1)
			assert.InDelta(t, ref.norms[k], run.norms[k], 1e-4, "rank %d: gradient norm of step %d", r, k+1)
		}
		worst, at := 0.0, ""
		for name, want := range ref.weights {
			got := run.weights[name]
			require.Len(t, got, len(want), name)
			for i := range want {
				if d := math.Abs(float64(want[i] - got[i])); d > worst {
					worst, at = d, name
				}
			}
		}
		// AdamW moves a weight by up to lr = 3e-3 a step whatever the
		// gradient's size, so a gradient near 0 that the ranks' different
		// summation order perturbs moves a little differently; a bucket
		// reduced wrongly moves weights by about lr.
		assert.Less(t, worst, 1e-4, "rank %d: largest weight difference %g in %s", r, worst, at)
	}
}

// stageLogger wraps a model so that its backward stages are logged with
// the collectives, in one sequence.
type stageLogger struct {
	engine.StagedBackward
	log func(string)
}

func (s *stageLogger) ObserveBackward(o engine.BackwardObserver) {
	if o == nil {
		s.StagedBackward.ObserveBackward(nil)
		return
	}
	s.StagedBackward.ObserveBackward(&loggedObserver{o: o, log: s.log})
}

type loggedObserver struct {
	o   engine.BackwardObserver
	log func(string)
}

func (l *loggedObserver) BeforeStage(s int) { l.log(fmt.Sprintf("before %d", s)); l.o.BeforeStage(s) }
func (l *loggedObserver) AfterStage(s int)  { l.log(fmt.Sprintf("after %d", s)); l.o.AfterStage(s) }

// TestBucketsLaunchDuringBackward logs rank 0's backward stages and
// collectives in one sequence: with small buckets, the LM head's bucket
// starts right after the head's stage ends, before the top layer's
// backward begins; later buckets start while lower stages remain; all
// are waited for only after the pass, before the loss is reduced and the
// optimizer runs. Under ZeRO-2 the same holds for reduce-scatters, and
// a rank holds full-size gradients for at most two layers at a time.
func TestBucketsLaunchDuringBackward(t *testing.T) {
	for _, zero := range []int{0, 2} {
		t.Run(fmt.Sprintf("ZeRO-%d", zero), func(t *testing.T) {
			var events []string
			logs := func(rank int) func(string) {
				if rank != 0 {
					return nil
				}
				return func(e string) { events = append(events, e) }
			}
			wrap := func(rank int, m engine.CausalLM) engine.CausalLM {
				if rank != 0 {
					return m
				}
				return &stageLogger{StagedBackward: m.(engine.StagedBackward), log: logs(0)}
			}
			runs := runDDP(t, ddpCase{ranks: 2, zero: zero, accum: 1, bucketBytes: 16 << 10, steps: 1, layers: 6}, wrap, logs)
			buckets := len(runs[0].trainer.dp.buckets)
			require.Greater(t, buckets, 3, "small buckets make several")
			seq := strings.Join(events, "; ")

			lastStage := fmt.Sprintf("after %d", runs[0].trainer.dp.buckets[buckets-1].last)
			at := func(e string) int {
				for i, x := range events {
					if x == e {
						return i
					}
				}
				t.Fatalf("no %q in %s", e, seq)
				return -1
			}
			end := at(lastStage)
			starts, during := 0, 0
			for i, e := range events {
				if e == "start" {
					starts++
					if i < end {
						during++
					}
				}
			}
			assert.Equal(t, buckets, starts, "one collective per bucket")
			assert.Greater(t, during, buckets/2, "most buckets start before the backward pass ends")
			assert.Equal(t, "start", events[at("after 0")+1], "the LM head's bucket starts as soon as its stage ends")
			assert.Less(t, at("after 0")+1, at("before 1"), "... before the top layer's backward begins")
			loss := at("all-reduce 4") // the loss and stop vote
			for i, e := range events {
				if e == "wait" {
					assert.Less(t, i, loss, "every bucket is waited for before the loss is reduced")
				}
			}
			if zero == 2 {
				dp := runs[0].trainer.dp
				layer, all := 0, 0
				for _, p := range runs[0].trainer.Trainable() {
					all += p.W.Len()
					if strings.HasPrefix(p.Name, "model.layers.0.") {
						layer += p.W.Len()
					}
				}
				assert.LessOrEqual(t, dp.stagingPeak, 2*layer+2*buckets, "at most two layers' gradients in full (and padding)")
				t.Logf("ZeRO-2 staging peak: %d of %d gradient elements", dp.stagingPeak, all)
			} else {
				assert.Greater(t, at("wait"), end, "ZeRO-0 waits once the pass is done")
			}
		})
	}
}

// TestZeroMemory measures, on each of 4 ranks of an 8-layer model, the
// memory the trainer adds to the loaded model and its activations
// (gradients, optimizer state, data-parallel buffers) under ZeRO 0, 1
// and 2, between steps and at the peak of a step: stage 1 divides the
// AdamW moments by the world size, stage 2 the gradients too, keeping
// full-size gradients only for the buckets of about two layers during
// the backward pass.
func TestZeroMemory(t *testing.T) {
	const ranks, bucket = 4, 32 << 10
	rest, peak := map[int]uint64{}, map[int]uint64{}
	var params, largest, buckets int
	for _, zero := range []int{0, 1, 2} {
		runs := runDDP(t, ddpCase{ranks: ranks, zero: zero, accum: 1, bucketBytes: bucket, steps: 2, layers: 8}, nil, nil)
		rest[zero], peak[zero] = runs[0].stateBytes, runs[0].peakBytes
		for _, r := range runs {
			assert.Equal(t, rest[zero], r.stateBytes, "ranks hold the same")
		}
		params = 0
		for _, p := range runs[0].trainer.Trainable() {
			params += p.W.Len()
		}
		buckets = len(runs[0].trainer.dp.buckets)
		for _, b := range runs[0].trainer.dp.buckets {
			largest = max(largest, b.n)
		}
		t.Logf("ZeRO-%d, %d ranks: %d bytes per rank between steps (%.2f per parameter), %d at the step's peak (%.2f per parameter); %d parameters",
			zero, ranks, rest[zero], float64(rest[zero])/float64(params), peak[zero], float64(peak[zero])/float64(params), params)
	}
	p, scratch, pad := float64(params), float64(4*largest), float64(4*ranks*buckets+64)
	assert.InDelta(t, 12*p, float64(rest[0]), pad, "ZeRO-0: gradients and two moments")
	assert.InDelta(t, 4*p+8*p/ranks+scratch, float64(rest[1]), 3*pad, "ZeRO-1: gradients, moment shards, a scratch bucket")
	assert.InDelta(t, 12*p/ranks+scratch, float64(rest[2]), 3*pad, "ZeRO-2: gradient and moment shards, a scratch bucket")
	assert.Less(t, peak[2], peak[1])
	assert.Less(t, peak[1], peak[0])
	assert.Less(t, float64(peak[2]-rest[2]), 0.5*4*p, "ZeRO-2 holds well under half the full gradients at once")
}
