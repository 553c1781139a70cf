package fewshot

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"time"

	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/synth"
)

// Source supplies meta-training tasks.
type Source interface {
	// Draw returns a task with at least n examples, using r.
	Draw(r *rand.Rand, n int) (*Task, error)
}

// FileSource draws uniformly among tasks read from files.
type FileSource []*Task

// Draw picks one of the tasks.
func (s FileSource) Draw(r *rand.Rand, n int) (*Task, error) {
	return s[r.IntN(len(s))], nil
}

// FamilySource draws a fresh task of a synthetic family each time, with
// freshly drawn examples.
type FamilySource struct {
	Family   synth.Family
	Encoding Encoding
}

// Draw draws a task and n of its examples.
func (s FamilySource) Draw(r *rand.Rand, n int) (*Task, error) {
	return SynthTask(s.Family.Draw(r), n, r.Uint64(), s.Encoding)
}

// MetaConfig configures a meta-training run.
type MetaConfig struct {
	Inner InnerConfig
	Outer OuterConfig
	// MetaBatch is the number of tasks per meta-step, Shots (k) the
	// support examples and Query the query examples drawn from each.
	MetaBatch, Shots, Query int
	// Seed seeds the task draws and splits.
	Seed uint64
	// EvalEvery scores k-shot accuracy every EvalEvery meta-steps (and
	// before the first and after the last); 0 only before and after.
	EvalEvery int
	// EvalTasks is the number of meta-training tasks scored (drawn once,
	// the same at every evaluation), besides every validation task.
	EvalTasks int
	// EvalQuery is the number of query examples scored per task.
	EvalQuery int
	// LogEvery prints a progress line every LogEvery meta-steps (and the
	// first and last); 0 disables them.
	LogEvery int
	// OutDir receives metrics.jsonl; empty writes nothing.
	OutDir string
}

// Validate reports the first invalid setting as a *fielderr.Error
// naming its path ("Outer.Steps", "Inner.LR").
func (c *MetaConfig) Validate() error {
	switch {
	case c.Outer.Steps < 1:
		return fielderr.Errorf("Outer.Steps", "must be at least 1, got %d", c.Outer.Steps)
	case c.MetaBatch < 1:
		return fielderr.Errorf("MetaBatch", "must be at least 1, got %d", c.MetaBatch)
	case c.Shots < 1:
		return fielderr.Errorf("Shots", "must be at least 1, got %d", c.Shots)
	case c.Query < 0:
		return fielderr.Errorf("Query", "must not be negative, got %d", c.Query)
	case c.Outer.Algo == FOMAML && c.Query < 1:
		return fielderr.Errorf("Query", "must be at least 1 with FOMAML (the query set is what it differentiates), got %d", c.Query)
	case c.Inner.Steps < 1:
		return fielderr.Errorf("Inner.Steps", "must be at least 1, got %d", c.Inner.Steps)
	case !(c.Outer.LR >= 0) || math.IsInf(c.Outer.LR, 0):
		return fielderr.Errorf("Outer.LR", "must be a non-negative number, got %v", c.Outer.LR)
	case c.EvalEvery < 0:
		return fielderr.Errorf("EvalEvery", "must not be negative, got %d", c.EvalEvery)
	case c.EvalTasks < 0:
		return fielderr.Errorf("EvalTasks", "must not be negative, got %d", c.EvalTasks)
	case c.EvalQuery < 1:
		return fielderr.Errorf("EvalQuery", "must be at least 1, got %d", c.EvalQuery)
	}
	if err := c.Inner.Validate(); err != nil {
		if fe, ok := fielderr.As(err); ok {
			return fe.Under("Inner")
		}
		return err
	}
	return nil
}

// MetricsFile is the name of the metrics file MetaTrain writes.
const MetricsFile = "metrics.jsonl"

// Metrics is one line of metrics.jsonl: a meta-step's losses, or an
// evaluation's k-shot accuracies (then Eval is true).
type Metrics struct {
	MetaStep int  `json:"meta_step"`
	Eval     bool `json:"eval,omitempty"`
	// Meta-step fields.
	OuterLR     *float64 `json:"outer_lr,omitempty"`
	SupportLoss *float64 `json:"support_loss,omitempty"`
	AdaptedLoss *float64 `json:"adapted_loss,omitempty"`
	QueryLoss   *float64 `json:"query_loss,omitempty"`
	// Evaluation fields: mean exact match after k-shot adaptation on
	// meta-training tasks and on held-out validation tasks, and the
	// standard deviation across validation tasks.
	TrainAcc *float64 `json:"train_acc,omitempty"`
	ValAcc   *float64 `json:"val_acc,omitempty"`
	ValStd   *float64 `json:"val_acc_std,omitempty"`
	ElapsedS float64  `json:"elapsed_s"`
}

func ptr(v float64) *float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return nil
	}
	return &v
}

// MetaResult summarises a meta-training run.
type MetaResult struct {
	// Steps is the number of meta-steps taken.
	Steps int
	// Interrupted reports a stop by the context.
	Interrupted bool
	// Evals holds every evaluation line.
	Evals []Metrics
}

// MetaTrain meta-learns the scorer's parameters on tasks from src,
// scoring k-shot accuracy on meta-training tasks and on val (held-out
// tasks) before, during and after, and writing every meta-step and
// evaluation to cfg.OutDir/metrics.jsonl. The parameters hold the learned
// θ when it returns. A cancelled context stops after the current
// meta-step, without an error (Interrupted is set).
func MetaTrain(ctx context.Context, s *Scorer, src Source, val []*Task, cfg MetaConfig, log io.Writer) (*MetaResult, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if log == nil {
		log = io.Discard
	}
	be := s.Model.Backend()
	l, err := NewLearner(be, s.Params, cfg.Inner, cfg.Outer)
	if err != nil {
		return nil, err
	}
	defer l.Close()
	var mw *json.Encoder
	if cfg.OutDir != "" {
		if err := os.MkdirAll(cfg.OutDir, 0o755); err != nil {
			return nil, err
		}
		f, err := os.Create(filepath.Join(cfg.OutDir, MetricsFile))
		if err != nil {
			return nil, err
		}
		defer f.Close()
		mw = json.NewEncoder(f)
	}
	write := func(m Metrics) error {
		if mw == nil {
			return nil
		}
		return mw.Encode(m)
	}

	// Evaluation tasks and splits are drawn once, from their own stream,
	// so every evaluation scores the same cases.
	evalRng := rand.New(rand.NewPCG(cfg.Seed, 0xe7a1))
	ev := &evaluator{s: s, shots: cfg.Shots}
	for range cfg.EvalTasks {
		t, err := src.Draw(evalRng, cfg.Shots+cfg.EvalQuery)
		if err != nil {
			return nil, err
		}
		if err := ev.add(&ev.train, t, evalRng, cfg.EvalQuery); err != nil {
			return nil, err
		}
	}
	for _, t := range val {
		if err := ev.add(&ev.val, t, evalRng, cfg.EvalQuery); err != nil {
			return nil, err
		}
	}

	res := &MetaResult{}
	start := time.Now()
	evaluate := func(step int) error {
		m, err := ev.run(ctx, step)
		if err != nil {
			return err
		}
		m.ElapsedS = time.Since(start).Seconds()
		res.Evals = append(res.Evals, m)
		fmt.Fprintf(log, "k-shot eval after meta-step %d: %s\n", step, ev.describe(m))
		return write(m)
	}
	if !ev.empty() {
		if err := evaluate(0); err != nil {
			return res, err
		}
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x3e7a))
	width := len(fmt.Sprint(cfg.Outer.Steps))
	for k := 1; k <= cfg.Outer.Steps; k++ {
		if ctx.Err() != nil {
			res.Interrupted = true
			break
		}
		eps, err := episodes(s, src, rng, cfg)
		if err != nil {
			return res, err
		}
		st, err := l.Step(eps)
		if err != nil {
			return res, err
		}
		res.Steps = k
		elapsed := time.Since(start)
		if err := write(Metrics{MetaStep: k, OuterLR: ptr(st.OuterLR), SupportLoss: ptr(st.SupportLoss),
			AdaptedLoss: ptr(st.AdaptedLoss), QueryLoss: ptr(st.QueryLoss), ElapsedS: elapsed.Seconds()}); err != nil {
			return res, err
		}
		if cfg.LogEvery > 0 && (k%cfg.LogEvery == 0 || k == 1 || k == cfg.Outer.Steps) {
			eta := time.Duration(float64(elapsed) / float64(k) * float64(cfg.Outer.Steps-k))
			fmt.Fprintf(log, "meta-step %*d/%d  support loss %.4f  adapted %.4f  query %.4f  outer lr %.3g  elapsed %s  eta %s\n",
				width, k, cfg.Outer.Steps, st.SupportLoss, st.AdaptedLoss, st.QueryLoss, st.OuterLR,
				elapsed.Round(100*time.Millisecond), eta.Round(time.Second))
		}
		if !ev.empty() && cfg.EvalEvery > 0 && k%cfg.EvalEvery == 0 && k != cfg.Outer.Steps {
			if err := evaluate(k); err != nil {
				return res, err
			}
		}
	}
	if !ev.empty() && res.Steps > 0 && !res.Interrupted {
		if err := evaluate(res.Steps); err != nil {
			return res, err
		}
	}
	return res, nil
}

// episodes draws a meta-batch: MetaBatch tasks, each split into support
// and query sets.
func episodes(s *Scorer, src Source, rng *rand.Rand, cfg MetaConfig) ([]Episode, error) {
	eps := make([]Episode, cfg.MetaBatch)
	for i := range eps {
		t, err := src.Draw(rng, cfg.Shots+cfg.Query)
		if err != nil {
			return nil, err
		}
		sp, err := t.Split(rng, cfg.Shots, cfg.Query)
		if err != nil {
			return nil, err
		}
		eps[i].Name = t.Name
		if eps[i].Support, err = LossGrad(s.Model, t.Name+" (support)", t.examples(sp.Support), s.Batching); err != nil {
			return nil, err
		}
		if cfg.Query > 0 {
			if eps[i].Query, err = LossGrad(s.Model, t.Name+" (query)", t.examples(sp.Query), s.Batching); err != nil {
				return nil, err
			}
		}
	}
	return eps, nil
}

// evaluator scores fixed k-shot cases.
type evaluator struct {
	s          *Scorer
	shots      int
	train, val []evalCase
}

type evalCase struct {
	task  *Task
	split Split
}

func (e *evaluator) empty() bool { return len(e.train)+len(e.val) == 0 }

func (e *evaluator) add(to *[]evalCase, t *Task, r *rand.Rand, query int) error {
	if !t.Scorable() {
		return nil
	}
	q := min(query, len(t.Examples)-e.shots)
	sp, err := t.Split(r, e.shots, q)
	if err != nil {
		return err
	}
	*to = append(*to, evalCase{t, sp})
	return nil
}

func (e *evaluator) run(ctx context.Context, step int) (Metrics, error) {
	m := Metrics{MetaStep: step, Eval: true}
	score := func(cases []evalCase) ([]float64, error) {
		var accs []float64
		for _, c := range cases {
			r, err := e.s.Score(ctx, c.task, c.split)
			if err != nil {
				if errors.Is(err, context.Canceled) {
					return nil, err
				}
				return nil, fmt.Errorf("k-shot evaluation of %s: %w", c.task.Name, err)
			}
			accs = append(accs, r.Accuracy())
		}
		return accs, nil
	}
	tr, err := score(e.train)
	if err != nil {
		return m, err
	}
	va, err := score(e.val)
	if err != nil {
		return m, err
	}
	if len(tr) > 0 {
		m.TrainAcc = ptr(Summarise(tr).Mean)
	}
	if len(va) > 0 {
		sp := Summarise(va)
		m.ValAcc, m.ValStd = ptr(sp.Mean), ptr(sp.Std)
	}
	return m, nil
}

func (e *evaluator) describe(m Metrics) string {
	s := ""
	if m.TrainAcc != nil {
		s += fmt.Sprintf("meta-train tasks %.1f%% (%d tasks)", 100**m.TrainAcc, len(e.train))
	}
	if m.ValAcc != nil {
		if s != "" {
			s += ", "
		}
		s += fmt.Sprintf("held-out tasks %.1f%% ± %.1f (%d tasks)", 100**m.ValAcc, 100**m.ValStd, len(e.val))
	}
	return s
}
