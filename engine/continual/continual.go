// Package continual trains a sequence of tasks one after another and
// measures what is remembered: after each task every task is evaluated,
// giving the accuracy matrix acc[i][j] (task j after training task i)
// and its summaries (average accuracy, backward transfer, forgetting).
//
// Strategies against forgetting (Strategy): plain sequential fine-tuning,
// experience replay from a reservoir buffer, EWC (separate or online),
// O-LoRA (a fresh LoRA per task, orthogonal to the earlier ones), and
// two references: one adapter per task (an upper bound that needs the
// task's identity at test time) and joint multi-task training.
//
// Everything numeric goes through the model's engine.Backend (the
// penalties are train.Penalty implementations built from Backend ops), so
// every strategy runs unchanged on the CUDA backend.
package continual

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/engine/train"
)

// Strategy names a way of training the task sequence.
type Strategy string

// The strategies.
const (
	// StrategyNaive fine-tunes on each task in turn, nothing else.
	StrategyNaive Strategy = "naive"
	// StrategyReplay mixes examples of earlier tasks, kept in a reservoir buffer,
	// into every batch.
	StrategyReplay Strategy = "replay"
	// StrategyEWC adds the elastic weight consolidation penalty (see EWC).
	StrategyEWC Strategy = "ewc"
	// StrategyOLoRA trains a fresh LoRA per task with an orthogonality
	// penalty against the frozen earlier ones (see OLoRA).
	StrategyOLoRA Strategy = "olora"
	// StrategyPerTask trains one set of trainable weights per task from the same
	// start and evaluates each task with its own: the upper bound when the
	// task is known at test time.
	StrategyPerTask Strategy = "per-task"
	// StrategyJoint trains on all tasks at once (one run on their mixture, as many
	// steps as the sequence has in all): the multi-task reference. Row i
	// of its matrix is the model after (i+1)·Steps steps.
	StrategyJoint Strategy = "joint"
)

// Strategies lists every strategy.
func Strategies() []Strategy {
	return []Strategy{StrategyNaive, StrategyReplay, StrategyEWC, StrategyOLoRA, StrategyPerTask, StrategyJoint}
}

// ParseStrategy returns the strategy named s.
func ParseStrategy(s string) (Strategy, error) {
	for _, st := range Strategies() {
		if string(st) == s {
			return st, nil
		}
	}
	return "", fmt.Errorf("unknown strategy %q (available: %s)", s, strategyNames())
}

// strategyNames lists the strategies for messages.
func strategyNames() string {
	names := make([]string, 0, len(Strategies()))
	for _, st := range Strategies() {
		names = append(names, string(st))
	}
	return strings.Join(names, ", ")
}

// Task is one task of the sequence.
type Task struct {
	// Name labels the task in reports.
	Name string
	// Train holds the tokenized training examples.
	Train []data.Example
	// Eval is the tokenized evaluation split: its loss is always reported.
	Eval *data.Dataset
	// Convs are the evaluation split's conversations, scored by exact
	// match of the greedy reply; nil for data without answers (plain
	// text), which is scored by loss only.
	Convs []textdata.Conversation
}

// Scorer holds what exact-match scoring needs.
type Scorer struct {
	Tokenizer tokenizer.Tokenizer
	Template  chat.Template
	// MaxNewTokens bounds each generated reply.
	MaxNewTokens int
}

// Config configures a run.
type Config struct {
	Strategy Strategy
	// Steps is the number of optimizer steps per task.
	Steps int
	// BatchSize and SeqLen shape the micro-batches; PadID pads them.
	BatchSize, SeqLen int
	PadID             int32
	// Train holds the optimizer and schedule settings (and GradAccum,
	// Precision, LogEvery) of every task's training; its Steps, Epochs,
	// OutDir, EvalEvery and SaveEvery are ignored. The schedule restarts
	// with every task (StrategyJoint: one schedule over the whole run).
	Train train.Config
	// TrainName names Train's fields in the trainer's run-time hints
	// (train.Options.Name); nil: their Go names.
	TrainName func(field string) string
	// Seed seeds the data order and the replay buffer.
	Seed uint64

	// ReplaySize is the replay buffer's capacity, ReplayRatio the share
	// of each micro-batch's rows drawn from it (StrategyReplay).
	ReplaySize  int
	ReplayRatio float64
	// EWCLambda is EWC's λ; EWCOnline selects online EWC with decay
	// EWCGamma; FisherSamples is the number of a task's training examples
	// the Fisher is estimated on (StrategyEWC).
	EWCLambda     float64
	EWCOnline     bool
	EWCGamma      float64
	FisherSamples int
	// OLoRALambda is O-LoRA's λ₁; NewAdapter installs a fresh LoRA
	// adapter for task i, trainable, everything else frozen (OLoRA).
	OLoRALambda float64
	NewAdapter  func(task int) (LowRankAdapter, error)

	// Scorer scores tasks with conversations.
	Scorer Scorer
	// Log receives progress; nil discards it.
	Log io.Writer
}

// Validate checks the settings of the chosen strategy: the first wrong
// one is a *fielderr.Error.
func (c *Config) Validate() error {
	if _, err := ParseStrategy(string(c.Strategy)); err != nil {
		return fielderr.Errorf("Strategy", "%q: unknown strategy (available: %s)", c.Strategy, strategyNames())
	}
	switch {
	case c.Steps < 1:
		return fielderr.Errorf("Steps", "must be at least 1, got %d", c.Steps)
	case c.BatchSize < 1:
		return fielderr.Errorf("BatchSize", "must be at least 1, got %d", c.BatchSize)
	case c.SeqLen < 2:
		return fielderr.Errorf("SeqLen", "must be at least 2, got %d", c.SeqLen)
	}
	switch c.Strategy {
	case StrategyReplay:
		return checkReplay(c.ReplaySize, c.ReplayRatio)
	case StrategyEWC:
		switch {
		case !(c.EWCLambda >= 0) || math.IsInf(c.EWCLambda, 0):
			return fielderr.Errorf("EWCLambda", "must be a non-negative number, got %v", c.EWCLambda)
		case c.EWCOnline && !(c.EWCGamma >= 0 && c.EWCGamma <= 1):
			return fielderr.Errorf("EWCGamma", "must be in [0, 1], got %v", c.EWCGamma)
		case c.FisherSamples < 1:
			return fielderr.Errorf("FisherSamples", "must be at least 1, got %d", c.FisherSamples)
		}
	case StrategyOLoRA:
		if !(c.OLoRALambda >= 0) || math.IsInf(c.OLoRALambda, 0) {
			return fielderr.Errorf("OLoRALambda", "must be a non-negative number, got %v", c.OLoRALambda)
		}
		if c.NewAdapter == nil {
			return fielderr.Errorf("NewAdapter", "is nil: o-lora trains a LoRA adapter per task, which it installs")
		}
	}
	return nil
}

// Result is what a run measured.
type Result struct {
	Strategy Strategy
	Tasks    []string
	// Steps is the number of optimizer steps per task.
	Steps int
	// Acc[i][j] is the exact-match accuracy on task j after training task
	// i, in [0, 1]; NaN for tasks without answers.
	Acc [][]float64
	// EvalLoss[i][j] is the mean token loss of task j's evaluation split
	// after training task i.
	EvalLoss [][]float64
	// TrainLoss[i] is the mean training loss of task i's last optimizer
	// steps (the last tenth, at least one); FirstLoss[i] that of its first
	// step.
	TrainLoss, FirstLoss []float64
	Scores
	// Elapsed is the wall time of the whole run.
	Elapsed time.Duration
}

// runner holds a run's state.
type runner struct {
	m     model.Model
	tasks []Task
	cfg   Config
	log   io.Writer
	res   *Result

	reservoir *Reservoir[data.Example]
	ewc       *EWC
	olora     *OLoRA
	// snapshots[k] are host copies of the trainable weights: the start
	// (k = 0) and after task k−1 (StrategyPerTask).
	snapshots [][][]float32
}

// Run trains the tasks in order with cfg's strategy and evaluates every
// task after each one. The model's trainable parameters are those the
// fine-tuning method made trainable (for OLoRA, the adapters NewAdapter
// installs).
func Run(ctx context.Context, m model.Model, tasks []Task, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if len(tasks) == 0 {
		return nil, errors.New("no tasks")
	}
	r := &runner{m: m, cfg: cfg, log: cfg.Log, res: &Result{Strategy: cfg.Strategy, Steps: cfg.Steps}}
	if r.log == nil {
		r.log = io.Discard
	}
	for _, t := range tasks {
		t.Train = slices.DeleteFunc(slices.Clone(t.Train), func(e data.Example) bool {
			return e.Targets(min(len(e.InputIDs), cfg.SeqLen)) == 0
		})
		if len(t.Train) == 0 {
			return nil, fmt.Errorf("task %s: no training example has a token to train on", t.Name)
		}
		r.tasks = append(r.tasks, t)
		r.res.Tasks = append(r.res.Tasks, t.Name)
	}
	start := time.Now()
	var err error
	switch cfg.Strategy {
	case StrategyJoint:
		err = r.joint(ctx)
	default:
		err = r.sequential(ctx)
	}
	if err != nil {
		return nil, err
	}
	r.res.Scores = Score(r.res.Acc)
	r.res.Elapsed = time.Since(start)
	return r.res, nil
}

// stageConfig is the trainer configuration of one training run of steps
// optimizer steps.
func (r *runner) stageConfig(steps int) train.Config {
	c := r.cfg.Train
	c.Steps, c.Epochs, c.OutDir, c.EvalEvery, c.SaveEvery, c.SaveTotalLimit = steps, 0, "", 0, 0, 0
	c.GradAccum = max(1, c.GradAccum)
	return c
}

// sequential trains the tasks one after another.
func (r *runner) sequential(ctx context.Context) error {
	be := r.m.Backend()
	switch r.cfg.Strategy {
	case StrategyReplay:
		r.reservoir = NewReservoir[data.Example](r.cfg.ReplaySize, r.cfg.Seed)
	case StrategyEWC:
		r.ewc = NewEWC(be, r.cfg.EWCLambda, r.cfg.EWCOnline, r.cfg.EWCGamma)
	case StrategyOLoRA:
		r.olora = NewOLoRA(be, r.cfg.OLoRALambda)
	case StrategyPerTask:
		r.snapshots = [][][]float32{snapshot(be, trainable(r.m))}
	}
	for i := range r.tasks {
		var adapter LowRankAdapter
		var penalty train.Penalty
		switch r.cfg.Strategy {
		case StrategyEWC:
			penalty = r.ewc
		case StrategyOLoRA:
			var err error
			if adapter, err = r.cfg.NewAdapter(i); err != nil {
				return err
			}
			if err := r.olora.Begin(adapter); err != nil {
				return err
			}
			penalty = r.olora
		case StrategyPerTask:
			restore(be, trainable(r.m), r.snapshots[0])
		}
		stream, seen := r.stream(i)
		fmt.Fprintf(r.log, "task %d/%d: %s (%d training examples), %d steps, strategy %s\n", i+1, len(r.tasks), r.tasks[i].Name, len(r.tasks[i].Train), r.cfg.Steps, r.cfg.Strategy)
		params, err := r.train(ctx, stream, r.cfg.Steps, penalty, nil)
		if err != nil {
			return fmt.Errorf("task %s: %w", r.tasks[i].Name, err)
		}
		if err := r.afterTask(i, params, seen); err != nil {
			return fmt.Errorf("task %s: %w", r.tasks[i].Name, err)
		}
		if err := r.evalRow(ctx, i); err != nil {
			return err
		}
		if adapter != nil {
			if err := r.olora.Retire(adapter); err != nil {
				return err
			}
		}
	}
	return nil
}

// afterTask updates the strategy's memory once task i is trained.
func (r *runner) afterTask(i int, params []*engine.Param, seen []data.Example) error {
	be := r.m.Backend()
	switch r.cfg.Strategy {
	case StrategyReplay:
		for _, e := range seen {
			r.reservoir.Offer(e)
		}
	case StrategyEWC:
		n := min(r.cfg.FisherSamples, len(r.tasks[i].Train))
		order := permutation(len(r.tasks[i].Train), r.cfg.Seed, uint64(0xf15e<<16|i))
		sample := make([]data.Example, n)
		for k := range sample {
			sample[k] = r.tasks[i].Train[order[k]]
		}
		f, err := Fisher(r.m, params, sample, r.cfg.SeqLen)
		if err != nil {
			return err
		}
		return r.ewc.Consolidate(params, f)
	case StrategyPerTask:
		r.snapshots = append(r.snapshots, snapshot(be, params))
	}
	return nil
}

// joint trains once on the mixture of every task, evaluating every Steps
// steps.
func (r *runner) joint(ctx context.Context) error {
	var all []data.Example
	for _, t := range r.tasks {
		all = append(all, t.Train...)
	}
	c := newCycler(all, r.cfg.Seed, 0x6a6f696e74) // "joint"
	n := r.cfg.Steps * len(r.tasks)
	stream := make([]data.Example, n*r.rowsPerStep())
	for k := range stream {
		stream[k] = c.next()
	}
	fmt.Fprintf(r.log, "joint: all %d tasks mixed (%d training examples), %d steps, evaluated every %d\n", len(r.tasks), len(all), n, r.cfg.Steps)
	eval := func(ctx context.Context, step int) (map[string]float64, error) {
		return nil, r.evalRow(ctx, step/r.cfg.Steps-1)
	}
	_, err := r.train(ctx, stream, n, nil, eval)
	return err
}

// rowsPerStep is the number of examples one optimizer step consumes.
func (r *runner) rowsPerStep() int { return r.cfg.BatchSize * max(1, r.cfg.Train.GradAccum) }

// stream returns the examples task i trains on, in order (consecutive
// runs of BatchSize form the micro-batches), and the distinct current-task
// examples among them in order of first use.
func (r *runner) stream(i int) (stream, seen []data.Example) {
	c := newCycler(r.tasks[i].Train, r.cfg.Seed, uint64(i))
	micro := r.cfg.Steps * max(1, r.cfg.Train.GradAccum)
	used := make(map[int]bool)
	for range micro {
		nRep := 0
		if r.reservoir != nil {
			nRep = ReplayRows(r.cfg.BatchSize, r.cfg.ReplayRatio, len(r.reservoir.Items()))
		}
		for range r.cfg.BatchSize - nRep {
			k := c.nextIndex()
			if !used[k] {
				used[k] = true
				seen = append(seen, r.tasks[i].Train[k])
			}
			stream = append(stream, r.tasks[i].Train[k])
		}
		for range nRep {
			stream = append(stream, r.reservoir.Draw())
		}
	}
	return stream, seen
}

// train runs steps optimizer steps over stream and records the stage's
// losses; it returns the trainer's trainable parameters.
func (r *runner) train(ctx context.Context, stream []data.Example, steps int, penalty train.Penalty, eval train.EvalFunc) ([]*engine.Param, error) {
	loader, err := data.NewLoader(&data.Dataset{Name: "stream", Examples: stream}, data.LoaderConfig{
		BatchSize: r.cfg.BatchSize, SeqLen: r.cfg.SeqLen, PadID: r.cfg.PadID,
	})
	if err != nil {
		return nil, err
	}
	tc := r.stageConfig(steps)
	if eval != nil {
		tc.EvalEvery = r.cfg.Steps
	}
	res, err := train.RunToEnd(ctx, r.m, loader, tc, train.Options{Log: r.log, Penalty: penalty, Eval: eval, Name: r.cfg.TrainName})
	if err != nil {
		return nil, err
	}
	// One loss summary per row of the matrix (StrategyJoint: per evaluation).
	per := len(res.History)
	if eval != nil {
		per = r.cfg.Steps
	}
	for s := 0; s+per <= len(res.History); s += per {
		h := res.History[s : s+per]
		tail := h[len(h)-max(1, len(h)/10):]
		sum := 0.0
		for _, m := range tail {
			sum += m.Loss
		}
		r.res.FirstLoss = append(r.res.FirstLoss, h[0].Loss)
		r.res.TrainLoss = append(r.res.TrainLoss, sum/float64(len(tail)))
	}
	return trainable(r.m), nil // what the trainer trained: the model's trainable parameters
}

// evalRow evaluates every task after training task i (StrategyPerTask: each with
// its own weights, tasks not trained yet with the starting ones).
func (r *runner) evalRow(ctx context.Context, i int) error {
	be := r.m.Backend()
	var current [][]float32
	if r.cfg.Strategy == StrategyPerTask {
		current = snapshot(be, trainable(r.m))
		defer restore(be, trainable(r.m), current)
	}
	acc := make([]float64, len(r.tasks))
	loss := make([]float64, len(r.tasks))
	for j, t := range r.tasks {
		if r.cfg.Strategy == StrategyPerTask {
			k := 0 // a task not trained yet: the starting weights
			if j <= i {
				k = j + 1
			}
			restore(be, trainable(r.m), r.snapshots[k])
		}
		var err error
		if acc[j], loss[j], err = r.evalTask(ctx, t); err != nil {
			return fmt.Errorf("evaluating task %s: %w", t.Name, err)
		}
	}
	r.res.Acc = append(r.res.Acc, acc)
	r.res.EvalLoss = append(r.res.EvalLoss, loss)
	fmt.Fprintf(r.log, "after task %d: %s\n", i+1, formatRow(r.res.Tasks, acc, loss))
	return nil
}

// evalTask returns task t's exact-match accuracy (NaN without
// conversations) and evaluation loss.
func (r *runner) evalTask(ctx context.Context, t Task) (float64, float64, error) {
	loader, err := data.NewLoader(t.Eval, data.LoaderConfig{BatchSize: r.cfg.BatchSize, SeqLen: r.cfg.SeqLen, PadID: r.cfg.PadID})
	if err != nil {
		return 0, 0, err
	}
	loss, _, err := train.EvalLoss(r.m, loader)
	if err != nil {
		return 0, 0, err
	}
	if t.Convs == nil {
		return math.NaN(), loss, nil
	}
	s := r.cfg.Scorer
	res, err := generate.ExactMatch(ctx, r.m, s.Tokenizer, s.Template, t.Convs, s.MaxNewTokens, nil)
	if err != nil {
		return 0, 0, err
	}
	return res.Accuracy(), loss, nil
}

// formatRow is one progress line: each task's accuracy (or loss).
func formatRow(names []string, acc, loss []float64) string {
	parts := make([]string, len(names))
	for j := range names {
		if math.IsNaN(acc[j]) {
			parts[j] = fmt.Sprintf("%s loss %.3f", names[j], loss[j])
		} else {
			parts[j] = fmt.Sprintf("%s %.1f%%", names[j], 100*acc[j])
		}
	}
	return strings.Join(parts, ", ")
}

// trainable returns m's trainable parameters in model order.
func trainable(m model.Model) []*engine.Param {
	var out []*engine.Param
	for _, p := range m.Params() {
		if p.Trainable {
			out = append(out, p)
		}
	}
	return out
}

// snapshot copies the weights of params to the host.
func snapshot(be engine.Backend, params []*engine.Param) [][]float32 {
	out := make([][]float32, len(params))
	for i, p := range params {
		out[i] = be.Download(p.W)
	}
	return out
}

// restore uploads a snapshot into params (and their compute copies).
func restore(be engine.Backend, params []*engine.Param, snap [][]float32) {
	for i, p := range params {
		be.Upload(p.W, snap[i])
	}
	engine.RefreshCompute(be, params)
}

// cycler hands out a set's examples in seeded epoch permutations.
type cycler struct {
	ex           []data.Example
	seed, stream uint64
	order        []int
	pos, epoch   int
}

func newCycler(ex []data.Example, seed, stream uint64) *cycler {
	return &cycler{ex: ex, seed: seed, stream: stream}
}

// nextIndex returns the index of the next example.
func (c *cycler) nextIndex() int {
	if c.order == nil || c.pos == len(c.order) {
		c.order = permutation(len(c.ex), c.seed, c.stream<<20^uint64(c.epoch))
		c.pos = 0
		c.epoch++
	}
	c.pos++
	return c.order[c.pos-1]
}

func (c *cycler) next() data.Example { return c.ex[c.nextIndex()] }

// permutation returns a seeded permutation of 0..n-1.
func permutation(n int, seed, stream uint64) []int {
	p := make([]int, n)
	for i := range p {
		p[i] = i
	}
	data.Permute(p, seed, stream)
	return p
}
