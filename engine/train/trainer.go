// Package train runs the optimisation loop of a fine-tuning job: it pulls
// batches from a data.Loader, runs forward and backward on an
// engine.CausalLM, clips the global gradient norm, applies AdamW with a
// learning-rate schedule, records metrics and saves the result.
//
// Every computation goes through the model's engine.Backend; the trainer
// only moves batches in and a few scalars (the loss, the gradient norm)
// out, so it runs unchanged on any backend.
//
// Semantics follow PyTorch and the Hugging Face Trainer, so a run can be
// checked step by step against a PyTorch reference:
//   - the loss of an optimizer step is the sum of token losses over all of
//     its micro-batches divided by the tokens counted in the whole step;
//   - the global gradient norm is reported before clipping, and clipping
//     is torch.nn.utils.clip_grad_norm_'s (coef = max/(norm+1e-6), applied
//     only when below 1);
//   - AdamW is torch.optim.AdamW, with weight decay only on parameters
//     whose Param.Decay is set;
//   - optimizer step k (1-based) uses the schedule's multiplier at k-1, as
//     torch's LambdaLR does.
package train

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/fielderr"
)

// Config holds the hyper-parameters of a run.
type Config struct {
	// Steps is the number of optimizer steps; when > 0 it wins over Epochs.
	Steps int
	// Epochs is the number of passes over the data when Steps is 0. The
	// micro-batches of all epochs form one stream, so the run takes
	// ceil(Epochs·BatchesPerEpoch / GradAccum) steps and only its very last
	// step may have fewer micro-batches.
	Epochs int
	// GradAccum is the number of micro-batches per optimizer step (>= 1).
	GradAccum int

	// LR is the peak learning rate.
	LR float64
	// Schedule shapes the learning rate over the run, after WarmupSteps
	// steps of linear warmup from 0.
	Schedule    Schedule
	WarmupSteps int
	// WarmupRatio, when > 0, sets the warmup to ceil(WarmupRatio × the
	// schedule's length) steps, as Hugging Face's warmup_ratio does; it
	// excludes WarmupSteps.
	WarmupRatio float64
	// ScheduleSteps is the length of the schedule in optimizer steps; 0
	// means the run's own length. A larger value trains the first steps
	// of a longer schedule (resuming, or checking against a reference).
	ScheduleSteps int

	// AdamW hyper-parameters (torch.optim.AdamW semantics).
	WeightDecay, Beta1, Beta2, Eps float64
	// MaxGradNorm clips the global gradient norm; 0 disables clipping.
	MaxGradNorm float64
	// Precision is the numeric policy (engine.Precision). New applies it
	// to the model, whose trainability must then be final; under
	// PrecisionBF16 each optimizer step updates the float32 masters and
	// refreshes their bfloat16 compute copies.
	Precision engine.Precision

	// OutDir receives metrics.jsonl, loss.png and the saved model. Empty
	// means Run writes nothing (tests and embedding programs).
	OutDir string
	// LogEvery prints a progress line every LogEvery steps (and at the
	// first and last step); 0 disables progress lines.
	LogEvery int
	// EvalEvery calls Options.Eval every EvalEvery steps (and after the
	// last step); 0 disables evaluation.
	EvalEvery int
	// KeepBest saves the model into OutDir/best (BestDir) after every
	// evaluation whose EvalLossMetric is the lowest so far; it needs
	// Options.Eval.
	KeepBest bool
	// EarlyStoppingPatience ends the run after that many evaluations in a
	// row without a new lowest EvalLossMetric (Hugging Face's
	// EarlyStoppingCallback); 0 never stops early. It needs Options.Eval.
	EarlyStoppingPatience int

	// SaveEvery writes a resumable checkpoint, OutDir/checkpoint-<step>,
	// every SaveEvery optimizer steps and when the run is interrupted
	// (see Resume); 0 disables checkpoints.
	SaveEvery int
	// SaveTotalLimit keeps only the newest SaveTotalLimit complete
	// checkpoints, deleting older ones after a new one is complete; 0
	// keeps them all.
	SaveTotalLimit int
	// Settings are the caller's settings recorded in each checkpoint and
	// checked by Resume, beyond the trainer's own hyper-parameters (which
	// it records itself under their flag names): batch size, seed, data
	// fingerprint, method flags. A resumed run must match every setting
	// not marked Harmless.
	Settings []Setting
}

// Validate reports the first invalid hyper-parameter as a
// *fielderr.Error naming its field.
func (c *Config) Validate() error {
	switch {
	case c.Steps < 0:
		return fielderr.Errorf("Steps", "must not be negative, got %d", c.Steps)
	case c.Steps == 0 && c.Epochs <= 0:
		return fielderr.Errorf("Steps", "is 0 and %s %d: nothing to train; set one of them to a positive number", fielderr.Ref("Epochs"), c.Epochs)
	case c.GradAccum < 1:
		return fielderr.Errorf("GradAccum", "must be at least 1, got %d", c.GradAccum)
	case !(c.LR >= 0) || math.IsInf(c.LR, 0):
		return fielderr.Errorf("LR", "must be a non-negative number, got %v", c.LR)
	case c.ScheduleSteps < 0:
		return fielderr.Errorf("ScheduleSteps", "must not be negative, got %d", c.ScheduleSteps)
	case c.WarmupSteps < 0:
		return fielderr.Errorf("WarmupSteps", "must not be negative, got %d", c.WarmupSteps)
	case !(c.WarmupRatio >= 0 && c.WarmupRatio < 1):
		return fielderr.Errorf("WarmupRatio", "must be in [0, 1), got %v", c.WarmupRatio)
	case c.WarmupRatio > 0 && c.WarmupSteps > 0:
		return fielderr.Errorf("WarmupRatio", "and %s exclude each other (got %v and %d)", fielderr.Ref("WarmupSteps"), c.WarmupRatio, c.WarmupSteps)
	case c.EarlyStoppingPatience < 0:
		return fielderr.Errorf("EarlyStoppingPatience", "must not be negative, got %d", c.EarlyStoppingPatience)
	case !(c.MaxGradNorm >= 0):
		return fielderr.Errorf("MaxGradNorm", "must not be negative (0 turns clipping off), got %v", c.MaxGradNorm)
	case c.LogEvery < 0:
		return fielderr.Errorf("LogEvery", "must not be negative, got %d", c.LogEvery)
	case c.EvalEvery < 0:
		return fielderr.Errorf("EvalEvery", "must not be negative, got %d", c.EvalEvery)
	case c.SaveEvery < 0:
		return fielderr.Errorf("SaveEvery", "must not be negative, got %d", c.SaveEvery)
	case c.SaveTotalLimit < 0:
		return fielderr.Errorf("SaveTotalLimit", "must not be negative (0 keeps every checkpoint), got %d", c.SaveTotalLimit)
	}
	if err := CheckAdamW(c.Beta1, c.Beta2, c.Eps, c.WeightDecay); err != nil {
		return err
	}
	if _, err := ParseSchedule(string(c.Schedule)); err != nil {
		return fielderr.Errorf("Schedule", "%q is not a learning-rate schedule (want %s)", c.Schedule, scheduleNames())
	}
	return nil
}

// CheckAdamW checks AdamW's hyper-parameters, reporting a wrong one as a
// *fielderr.Error about the field of that name (Beta1, Beta2, Eps,
// WeightDecay) in the caller's config.
func CheckAdamW(beta1, beta2, eps, weightDecay float64) error {
	switch {
	case !(beta1 >= 0 && beta1 < 1):
		return fielderr.Errorf("Beta1", "must be in [0, 1), got %v", beta1)
	case !(beta2 >= 0 && beta2 < 1):
		return fielderr.Errorf("Beta2", "must be in [0, 1), got %v", beta2)
	case !(eps > 0):
		return fielderr.Errorf("Eps", "must be positive, got %v", eps)
	case !(weightDecay >= 0):
		return fielderr.Errorf("WeightDecay", "must not be negative, got %v", weightDecay)
	}
	return nil
}

// Saver writes what a run produced into a directory. A full fine-tune
// saves the whole model; an adapter method saves only its own files.
type Saver interface {
	Save(dir string) error
}

// EvalFunc evaluates the model after optimizer step `step` and returns
// named metrics (e.g. "eval_loss"), recorded with that step in
// metrics.jsonl and shown in the progress line.
type EvalFunc func(ctx context.Context, step int) (map[string]float64, error)

// Options are the trainer's optional collaborators.
type Options struct {
	// Log receives progress lines; nil discards them.
	Log io.Writer
	// Saver saves the result in Run; nil uses the model itself when it
	// implements Saver.
	Saver Saver
	// Eval, if set, runs every Config.EvalEvery steps.
	Eval EvalFunc
	// CheckpointSaver, if set, writes the weights of a checkpoint instead
	// of Saver (e.g. to add tokenizer files, or to keep float32 weights
	// when the final save is in a smaller dtype: a resume is exact only
	// from weights saved exactly). Resume does not read the weights, so
	// whatever it writes must be what the caller loads to resume.
	CheckpointSaver Saver
	// BestSaver, if set, writes the best model of Config.KeepBest instead
	// of Saver (e.g. to add tokenizer files).
	BestSaver Saver
	// Penalty, if set, is a regulariser added to every step's loss (EWC,
	// O-LoRA): its gradient joins the data gradient before the norm is
	// taken and clipped, as if it were part of the loss.
	Penalty Penalty
	// Parallel, if set with a Comm of several ranks, trains data-parallel
	// (see Parallel): only rank 0 writes metrics, checkpoints and the
	// final save, and the other ranks may run without Config.OutDir.
	Parallel *Parallel
	// Name names a Config field (by its path, "LR") in the hints of
	// run-time messages ("try a lower LR"), and "Resume" the resuming of
	// a run; nil: the paths themselves. The gotune CLI names its flags.
	Name func(field string) string
}

// name returns how messages name field (see Options.Name).
func (o *Options) name(field string) string {
	if o.Name == nil {
		return field
	}
	return o.Name(field)
}

// follower reports whether opts make this trainer a data-parallel rank
// other than 0, which writes nothing.
func (o *Options) follower() bool {
	return o.Parallel != nil && o.Parallel.Comm != nil && o.Parallel.Comm.Size() > 1 && o.Parallel.Comm.Rank() != 0
}

// Penalty is a differentiable regulariser on the trainable parameters.
type Penalty interface {
	// AddGrad adds the penalty's gradient to the gradients (Param.G) of
	// params, the trainer's trainable parameters, and returns the
	// penalty's value at their current weights.
	AddGrad(params []*engine.Param) (float64, error)
}

// StepMetrics are the measurements of one optimizer step, one line of
// metrics.jsonl.
type StepMetrics struct {
	// Step is 1-based.
	Step int `json:"step"`
	// Loss is the mean token loss of the step, before the update.
	Loss float64 `json:"loss"`
	// LR is the learning rate the update used.
	LR float64 `json:"lr"`
	// GradNorm is the global gradient norm before clipping.
	GradNorm float64 `json:"grad_norm"`
	// Tokens is the number of counted (scored) tokens of the step.
	Tokens int `json:"tokens"`
	// TokensPerS is Tokens divided by the step's wall time.
	TokensPerS float64 `json:"tokens_per_s"`
	// ElapsedS is the wall time since the run started.
	ElapsedS float64 `json:"elapsed_s"`
	// Epoch is the fractional epoch reached (batches seen / batches per epoch).
	Epoch float64 `json:"epoch"`
	// Penalty is the value of Options.Penalty before the update (not
	// included in Loss); 0 without one.
	Penalty float64 `json:"penalty,omitempty"`
	// PeakMemBytes is the largest memory the backend's tensors held
	// during the step (engine.MemoryReporter; the weights, gradients and
	// optimizer state included); 0 when the backend does not report it.
	PeakMemBytes uint64 `json:"peak_mem_bytes,omitempty"`
	// Eval holds metrics from Options.Eval when it ran after this step.
	Eval map[string]float64 `json:"-"`
}

// Trainer optimises the trainable parameters of a model.
type Trainer struct {
	model  engine.CausalLM
	be     engine.Backend
	loader *data.Loader
	cfg    Config
	opts   Options

	params []*engine.Param // trainable, in model order
	m, v   []*engine.Tensor
	norm   *engine.Tensor // one-element accumulator for the squared norm

	total      int // optimizer steps in the run
	microLimit int // micro-batches in the run when epoch-bound, else 0
	micro      int // micro-batches consumed
	step       int // optimizer steps done

	elapsedBase float64 // training seconds before this process (resumed runs)
	startStep   int     // step at the start of Run

	best      bestTracker // the lowest eval loss so far (KeepBest, early stopping)
	firstLoss float64     // loss of this trainer's first step (checkDivergence)
	started   bool        // a step has passed checkDivergence

	dp *dataParallel // nil in a single process
}

// New prepares a trainer: it checks the configuration, allocates a
// gradient buffer for every trainable parameter that lacks one and AdamW
// moment buffers, and zeroes the gradients. The loader must be at its
// first batch: the trainer tracks the data position by counting the
// micro-batches it takes (Resume seeks the loader).
func New(model engine.CausalLM, loader *data.Loader, cfg Config, opts Options) (*Trainer, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	t := &Trainer{model: model, be: model.Backend(), loader: loader, cfg: cfg, opts: opts}
	if t.opts.Log == nil {
		t.opts.Log = io.Discard
	}
	if cfg.SaveEvery > 0 && cfg.OutDir == "" && !opts.follower() {
		return nil, errors.New("checkpoints (save every N steps) need an output directory")
	}
	if (cfg.KeepBest || cfg.EarlyStoppingPatience > 0) && (opts.Eval == nil || cfg.EvalEvery == 0) {
		field := "KeepBest"
		if !cfg.KeepBest {
			field = "EarlyStoppingPatience"
		}
		return nil, fielderr.Errorf(field, "needs an evaluation (an Options.Eval function, and %s above 0)", fielderr.Ref("EvalEvery"))
	}
	if cfg.KeepBest && cfg.OutDir == "" && !opts.follower() {
		return nil, errors.New("keeping the best model needs an output directory")
	}
	if t.opts.Saver == nil && cfg.OutDir != "" {
		s, ok := model.(Saver)
		if !ok {
			return nil, fmt.Errorf("the model cannot save itself and no Saver was given")
		}
		t.opts.Saver = s
	}
	if err := applyPrecision(model, cfg.Precision); err != nil {
		return nil, err
	}
	seen := map[*engine.Tensor]string{}
	for _, p := range model.Params() {
		if !p.Trainable {
			continue
		}
		if other, dup := seen[p.W]; dup {
			return nil, fmt.Errorf("parameters %s and %s share one tensor; a model must list a tied weight once", other, p.Name)
		}
		seen[p.W] = p.Name
		t.params = append(t.params, p)
		if !opts.shardsMoments() {
			t.m = append(t.m, t.be.Alloc(engine.Float32, p.W.Shape()...))
			t.v = append(t.v, t.be.Alloc(engine.Float32, p.W.Shape()...))
		}
		if opts.shardsGrads() {
			continue // the data-parallel state lends gradient buffers
		}
		if p.G == nil {
			p.G = t.be.Alloc(engine.Float32, p.W.Shape()...)
		} else if !engine.SameShape(p.G, p.W) {
			return nil, fmt.Errorf("parameter %s: gradient shape %v differs from weight shape %v", p.Name, p.G.Shape(), p.W.Shape())
		}
		t.be.Fill(p.G, 0)
	}
	if len(t.params) == 0 {
		return nil, errors.New("the model has no trainable parameters")
	}
	if p := opts.Parallel; p != nil && p.Comm != nil && p.Comm.Size() > 1 {
		var err error
		if t.dp, err = newDataParallel(t, p); err != nil {
			return nil, err
		}
	}
	t.norm = t.be.Alloc(engine.Float32, 1)

	if cfg.Steps > 0 {
		t.total = cfg.Steps
	} else {
		t.microLimit = cfg.Epochs * loader.BatchesPerEpoch()
		t.total = (t.microLimit + cfg.GradAccum - 1) / cfg.GradAccum
	}
	if cfg.WarmupRatio > 0 {
		t.cfg.WarmupSteps = int(math.Ceil(cfg.WarmupRatio * float64(t.scheduleSteps())))
	}
	t.best = newBestTracker()
	return t, nil
}

// applyPrecision sets policy p on a model that supports precision
// policies; other models can only run in float32.
func applyPrecision(model engine.CausalLM, p engine.Precision) error {
	if pm, ok := model.(engine.PrecisionModel); ok {
		if err := pm.SetPrecision(p); err != nil {
			return fielderr.Errorf("Precision", "%s: %v", p, err)
		}
		return nil
	}
	if p != engine.PrecisionFP32 {
		return fielderr.Errorf("Precision", "%s: this model computes in float32 only", p)
	}
	return nil
}

// TotalSteps returns the number of optimizer steps the run will take.
func (t *Trainer) TotalSteps() int { return t.total }

// WarmupSteps returns the steps of warmup (Config.WarmupSteps, or what
// Config.WarmupRatio makes of the run's length).
func (t *Trainer) WarmupSteps() int { return t.cfg.WarmupSteps }

// StepsDone returns the number of optimizer steps taken so far.
func (t *Trainer) StepsDone() int { return t.step }

// Trainable returns the parameters the trainer optimises.
func (t *Trainer) Trainable() []*engine.Param { return t.params }

// LR returns the learning rate of optimizer step k (1-based).
func (t *Trainer) LR(k int) float64 {
	n := t.total
	if t.cfg.ScheduleSteps > 0 {
		n = t.cfg.ScheduleSteps
	}
	return t.cfg.LR * t.cfg.Schedule.Multiplier(k-1, t.cfg.WarmupSteps, n)
}

// Step runs one optimizer step: forward and backward over GradAccum
// micro-batches, gradient norm and clipping, the AdamW update, and
// zeroed gradients. Its metrics lack the timing fields, which Run fills.
// A non-finite loss or gradient norm is an error and leaves the weights
// as they were before the step.
func (t *Trainer) Step() (StepMetrics, error) {
	if t.step >= t.total {
		return StepMetrics{}, fmt.Errorf("the run's %d steps are done", t.total)
	}
	k := t.step + 1
	mem, _ := t.be.(engine.MemoryReporter)
	if mem != nil {
		mem.ResetPeakMemory()
	}
	nMicro := t.cfg.GradAccum
	if t.microLimit > 0 {
		nMicro = min(nMicro, t.microLimit-t.micro)
	}
	// Count the step's tokens first: every micro-batch's gradient is
	// scaled by 1/total so they add up to the gradient of the step's mean.
	batches := make([]data.Batch, nMicro)
	tokens := 0
	for i := range batches {
		batches[i] = t.loader.Next()
		tokens += Counted(t.model, batches[i])
	}
	t.micro += nMicro
	if tokens == 0 {
		return StepMetrics{}, fmt.Errorf("step %d has no counted target tokens", k)
	}
	if t.dp != nil {
		return t.stepParallel(k, batches, tokens)
	}
	scale := float32(1 / float64(tokens))
	lossSum := 0.0
	for i, hb := range batches {
		t.announcePass(k, i)
		s, err := ForwardBatch(t.model, hb, true, scale)
		if err != nil {
			return StepMetrics{}, fmt.Errorf("step %d: %w", k, err)
		}
		lossSum += s
	}
	loss := lossSum / float64(tokens)
	penalty := 0.0
	if t.opts.Penalty != nil {
		var err error
		if penalty, err = t.opts.Penalty.AddGrad(t.params); err != nil {
			t.zeroGrads()
			return StepMetrics{}, fmt.Errorf("step %d: penalty: %w", k, err)
		}
	}

	t.be.Fill(t.norm, 0)
	for _, p := range t.params {
		t.be.SumSquares(t.norm, p.G)
	}
	gradNorm := math.Sqrt(float64(t.be.Download(t.norm)[0]))
	if err := t.be.Synchronize(); err != nil {
		return StepMetrics{}, fmt.Errorf("step %d: backend: %w", k, err)
	}
	if err := t.checkDivergence(k, loss+penalty, gradNorm); err != nil {
		t.zeroGrads()
		return StepMetrics{}, err
	}
	if t.cfg.MaxGradNorm > 0 {
		if coef := t.cfg.MaxGradNorm / (gradNorm + 1e-6); coef < 1 {
			for _, p := range t.params {
				t.be.Scale(p.G, float32(coef))
			}
		}
	}
	lr := t.LR(k)
	for i, p := range t.params {
		t.adamW(p, p.W, p.G, t.m[i], t.v[i], lr, k)
	}
	return t.finishStep(k, loss, penalty, lr, gradNorm, tokens)
}

// announcePass tells a model that draws dropout masks which training pass
// comes next (engine.TrainingPassSetter): optimizer step k, micro-batch
// micro, this rank. The masks are a pure function of the run's seed and
// the pass, so a resumed run draws what the uninterrupted one did.
func (t *Trainer) announcePass(k, micro int) {
	s, ok := t.model.(engine.TrainingPassSetter)
	if !ok {
		return
	}
	rank := 0
	if t.dp != nil {
		rank = t.dp.rank
	}
	s.SetTrainingPass(engine.TrainingPass{Step: k, Micro: micro, Rank: rank})
}

// adamW updates w (parameter p's weights, or a piece of them) from g with
// moments m and v at step k.
func (t *Trainer) adamW(p *engine.Param, w, g, m, v *engine.Tensor, lr float64, k int) {
	wd := 0.0
	if p.Decay {
		wd = t.cfg.WeightDecay
	}
	t.be.AdamW(w, g, m, v, engine.AdamWParams{
		LR: float32(lr), Beta1: float32(t.cfg.Beta1), Beta2: float32(t.cfg.Beta2),
		Eps: float32(t.cfg.Eps), WeightDecay: float32(wd), Step: k,
	})
}

// finishStep refreshes the compute copies, zeroes the gradients, waits
// for the backend and returns step k's metrics.
func (t *Trainer) finishStep(k int, loss, penalty, lr, gradNorm float64, tokens int) (StepMetrics, error) {
	engine.RefreshCompute(t.be, t.params)
	t.zeroGrads()
	if err := t.be.Synchronize(); err != nil {
		return StepMetrics{}, fmt.Errorf("step %d: backend: %w", k, err)
	}
	t.step = k
	m := StepMetrics{
		Step: k, Loss: loss, Penalty: penalty, LR: lr, GradNorm: gradNorm, Tokens: tokens,
		Epoch: float64(t.micro) / float64(t.loader.BatchesPerEpoch()),
	}
	if mem, ok := t.be.(engine.MemoryReporter); ok {
		m.PeakMemBytes = mem.MemoryStats().Peak
	}
	return m, nil
}

// DivergenceRatio bounds how far the loss may grow: a step whose loss is
// more than DivergenceRatio times the first step's (or than
// DivergenceRatio, when the first loss is below 1) stops the run. A
// cross-entropy that has grown a hundredfold is not a bad patch of data
// but a run that has diverged, and every further step would only save
// worse weights.
const DivergenceRatio = 100

// checkDivergence returns an error, naming the likely cause, when step
// k's loss or gradient norm is not finite or the loss has grown past
// DivergenceRatio times its start; the step then changes no weight.
func (t *Trainer) checkDivergence(k int, loss, gradNorm float64) error {
	first := !t.started // nothing updated yet by this trainer
	if engine.NonFinite(loss) || engine.NonFinite(gradNorm) {
		if first {
			return fmt.Errorf("step %d: the loss is %v and the gradient norm %v before this run changed any weight: the model's weights or the data produce NaN/Inf, not the learning rate", k, loss, gradNorm)
		}
		return fmt.Errorf("step %d: training diverged (loss %v, gradient norm %v); try a lower %s or %s", k, loss, gradNorm, t.opts.name("LR"), t.opts.name("MaxGradNorm"))
	}
	if first {
		t.firstLoss, t.started = loss, true
		return nil
	}
	if limit := DivergenceRatio * max(t.firstLoss, 1); loss > limit {
		return fmt.Errorf("step %d: training diverged: the loss %.4g is more than %d times the first step's %.4g; try a lower %s or %s", k, loss, DivergenceRatio, t.firstLoss, t.opts.name("LR"), t.opts.name("MaxGradNorm"))
	}
	return nil
}

func (t *Trainer) zeroGrads() {
	if t.opts.shardsGrads() {
		return // ZeRO-2: each staging buffer is zeroed when lent
	}
	for _, p := range t.params {
		t.be.Fill(p.G, 0)
	}
}

// Close frees the optimizer state (the AdamW moments). The trainer must
// not be used afterwards; the model and its gradients are left alone.
func (t *Trainer) Close() {
	for i := range t.m {
		t.be.Free(t.m[i])
		t.be.Free(t.v[i])
	}
	t.m, t.v = nil, nil
	if t.dp != nil {
		t.dp.free(t.be)
		t.dp = nil
	}
	if t.norm != nil {
		t.be.Free(t.norm)
		t.norm = nil
	}
}

// interrupted reports whether Run should stop before the next step. In a
// data-parallel run the ranks vote with the next step's loss reduction
// and stop together after the step where any rank's ctx was cancelled.
func (t *Trainer) interrupted(ctx context.Context) bool {
	if t.dp == nil {
		return ctx.Err() != nil
	}
	t.dp.wantStop = ctx.Err() != nil
	return t.dp.stop
}

// momentsHost returns parameter i's AdamW moments as host arrays: its
// buffers, or (ZeRO) what the last gatherMoments collected.
func (t *Trainer) momentsHost(i int) (m, v []float32) {
	if t.m == nil {
		return t.dp.moments[i][0], t.dp.moments[i][1]
	}
	return t.be.Download(t.m[i]), t.be.Download(t.v[i])
}

// scoresFirst reports whether model scores a batch's first labels (see
// engine.FirstLabelScorer).
func scoresFirst(model engine.CausalLM) bool {
	s, ok := model.(engine.FirstLabelScorer)
	return ok && s.ScoresFirstLabels()
}

// Counted returns the number of targets model scores in hb: its shifted
// targets, plus its first labels when the model scores those (prompt
// tuning, as PEFT does).
func Counted(model engine.CausalLM, hb data.Batch) int {
	if scoresFirst(model) {
		return hb.Counted + hb.CountedFirst
	}
	return hb.Counted
}

// ForwardBatch uploads a host batch to the model's backend, runs
// ForwardBackward and frees the batch tensors. It returns the sum of the
// token losses. The first labels are uploaded only for a model that
// scores them; segments and positions only for a packed batch.
func ForwardBatch(model engine.CausalLM, hb data.Batch, backward bool, gradScale float32) (float64, error) {
	be := model.Backend()
	upload := func(host []int32) *engine.Tensor {
		t := be.Alloc(engine.Int32, len(host))
		be.UploadInt32(t, host)
		return t
	}
	bt := &engine.Batch{B: hb.B, T: hb.T, InputIDs: upload(hb.InputIDs), Targets: upload(hb.Targets), Counted: Counted(model, hb)}
	if scoresFirst(model) && len(hb.FirstLabels) == hb.B {
		bt.FirstLabels = upload(hb.FirstLabels)
	}
	if hb.Segments != nil {
		bt.Segments, bt.Positions = upload(hb.Segments), upload(hb.Positions)
	}
	defer func() {
		for _, t := range []*engine.Tensor{bt.InputIDs, bt.Targets, bt.FirstLabels, bt.Segments, bt.Positions} {
			if t != nil {
				be.Free(t)
			}
		}
	}()
	return model.ForwardBackward(bt, backward, gradScale)
}

// EvalLoss returns the mean token loss of the model over one epoch of
// loader (no gradients), and the number of tokens counted.
func EvalLoss(model engine.CausalLM, loader *data.Loader) (float64, int, error) {
	sum, tokens := 0.0, 0
	for i := 0; i < loader.BatchesPerEpoch(); i++ {
		hb := loader.Batch(0, i)
		s, err := ForwardBatch(model, hb, false, 0)
		if err != nil {
			return 0, 0, err
		}
		sum += s
		tokens += Counted(model, hb)
	}
	return sum / float64(tokens), tokens, nil
}

// Result summarises a finished run.
type Result struct {
	// Steps is the number of optimizer steps taken.
	Steps int
	// History holds every step's metrics.
	History []StepMetrics
	// Interrupted is true when the context was cancelled before the last step.
	Interrupted bool
	// Elapsed is the wall time of the training loop.
	Elapsed time.Duration
	// PeakMemBytes is the largest StepMetrics.PeakMemBytes of the run
	// (0 when the backend does not report memory).
	PeakMemBytes uint64
	// EarlyStopped is true when Config.EarlyStoppingPatience ended the run.
	EarlyStopped bool
	// BestStep is the step of the lowest EvalLossMetric of the whole run
	// (a resumed run included), BestEvalLoss that loss; BestStep is 0
	// when no evaluation reported one.
	BestStep     int
	BestEvalLoss float64
	// CheckpointErrors lists the checkpoints that could not be written
	// (the run went on: a failed checkpoint never costs the final save).
	CheckpointErrors []error
}

// checkpoint writes the checkpoint of the current step and reports it.
// A failure (a full disk) is logged as a warning and recorded in res, not
// returned: training and the final save go on, and the space the failed
// checkpoint had taken is freed. It reports whether the checkpoint was
// written.
func (t *Trainer) checkpoint(res *Result, elapsedS, lr float64) bool {
	if t.dp != nil && t.m == nil {
		// ZeRO: every rank sends its shard of the moments to the others.
		if err := t.dp.gatherMoments(t); err != nil {
			res.CheckpointErrors = append(res.CheckpointErrors, err)
			fmt.Fprintf(t.opts.Log, "warning: checkpoint at step %d: %v\n", t.step, err)
			return false
		}
	}
	if t.opts.follower() {
		return true // rank 0 writes it
	}
	dir, err := t.writeCheckpoint(elapsedS, lr)
	if err != nil {
		res.CheckpointErrors = append(res.CheckpointErrors, err)
		fmt.Fprintf(t.opts.Log, "warning: %v; training goes on\n", err)
		return false
	}
	fmt.Fprintf(t.opts.Log, "checkpoint %s\n", dir)
	return true
}

// whereIsTheWork says, after a failed final save, what of the run is
// still on disk: the newest complete checkpoint and how to resume from
// it, or that there is none.
func (t *Trainer) whereIsTheWork() string {
	steps, _ := listCheckpoints(t.cfg.OutDir)
	for i := len(steps) - 1; i >= 0; i-- {
		dir := CheckpointDir(t.cfg.OutDir, steps[i])
		if st, err := ReadState(dir); err == nil {
			return fmt.Sprintf("the newest complete checkpoint, %s (step %d of %d), is kept: free some space and rerun with %s %s", dir, st.Step, t.total, t.opts.name("Resume"), t.cfg.OutDir)
		}
	}
	if t.cfg.SaveEvery > 0 {
		return "no complete checkpoint was kept, so the trained weights are lost"
	}
	return fmt.Sprintf("the trained weights are lost (%s N keeps resumable checkpoints)", t.opts.name("SaveEvery"))
}

// Run trains to the end (or until ctx is cancelled, after which it
// finishes the current step) and then, when Config.OutDir is set, saves
// the result with the Saver and draws OutDir/loss.png. Each step's
// metrics are appended to OutDir/metrics.jsonl as the step ends; with
// Config.SaveEvery, a checkpoint is written every SaveEvery steps and
// when interrupted. A cancelled run is not an error: Result.Interrupted
// reports it, and what was trained so far is saved.
//
// After Resume, Run continues from the checkpoint's step: metrics.jsonl
// keeps its lines up to that step (later ones, from the run that was
// stopped, are dropped) and grows from there, and loss.png shows the
// whole run.
func (t *Trainer) Run(ctx context.Context) (*Result, error) {
	var mw *metricsWriter
	t.startStep = t.step
	if t.cfg.OutDir != "" && !t.opts.follower() {
		if err := os.MkdirAll(t.cfg.OutDir, 0o755); err != nil {
			return nil, fmt.Errorf("output directory: %w", err)
		}
		t.removeStaleTemps()
		var err error
		if mw, err = openMetricsWriter(t.cfg.OutDir, t.step); err != nil {
			return nil, err
		}
		defer mw.Close()
	}
	res := &Result{}
	start := time.Now()
	elapsed := func(now time.Time) float64 { return t.elapsedBase + now.Sub(start).Seconds() }
	prog := progress{w: t.opts.Log, every: t.cfg.LogEvery, total: t.total, first: t.step}
	lastCkpt, lastLR := -1, 0.0
	for t.step < t.total {
		if t.interrupted(ctx) {
			res.Interrupted = true
			break
		}
		stepStart := time.Now()
		m, err := t.Step()
		if err != nil {
			return res, err
		}
		now := time.Now()
		m.ElapsedS = elapsed(now)
		if d := now.Sub(stepStart).Seconds(); d > 0 {
			m.TokensPerS = float64(m.Tokens) / d
		}
		stop := false
		if t.opts.Eval != nil && t.cfg.EvalEvery > 0 && (m.Step%t.cfg.EvalEvery == 0 || m.Step == t.total) {
			if m.Eval, err = t.opts.Eval(ctx, m.Step); err != nil {
				return res, fmt.Errorf("evaluation after step %d: %w", m.Step, err)
			}
			if stop, err = t.afterEval(m); err != nil {
				return res, err
			}
		}
		res.History = append(res.History, m)
		res.Steps = m.Step
		res.PeakMemBytes = max(res.PeakMemBytes, m.PeakMemBytes)
		lastLR = m.LR
		if mw != nil {
			if err := mw.Write(m); err != nil {
				return res, err
			}
		}
		prog.report(m, now.Sub(start))
		if t.cfg.SaveEvery > 0 && m.Step%t.cfg.SaveEvery == 0 {
			if t.checkpoint(res, m.ElapsedS, m.LR) {
				lastCkpt = m.Step
			}
		}
		if stop {
			res.EarlyStopped = true
			fmt.Fprintf(t.opts.Log, "early stopping after step %d: %s has not improved for %d evaluations (best %.6f after step %d)\n",
				m.Step, EvalLossMetric, t.best.since, t.best.loss, t.best.step)
			break
		}
	}
	res.Elapsed = time.Since(start)
	res.BestStep, res.BestEvalLoss = t.best.step, t.best.loss
	if res.Interrupted {
		fmt.Fprintf(t.opts.Log, "interrupted after step %d of %d\n", t.step, t.total)
		// Keep the interrupted run resumable from where it stopped.
		if t.cfg.SaveEvery > 0 && t.step > t.startStep && lastCkpt != t.step {
			t.checkpoint(res, elapsed(time.Now()), lastLR)
		}
	}
	if t.cfg.OutDir == "" || t.opts.follower() {
		return res, nil
	}
	if mw != nil {
		if err := mw.Close(); err != nil {
			return res, err
		}
	}
	if err := t.opts.Saver.Save(t.cfg.OutDir); err != nil {
		return res, fmt.Errorf("saving to %s: %w; %s", t.cfg.OutDir, err, t.whereIsTheWork())
	}
	hist := res.History
	if t.startStep > 0 {
		// A resumed run plots the whole run, as metrics.jsonl holds it.
		all, err := ReadMetrics(filepath.Join(t.cfg.OutDir, MetricsFile))
		if err != nil {
			return res, err
		}
		hist = all
	}
	if len(hist) > 0 {
		if err := WriteLossPlot(lossPlotPath(t.cfg.OutDir), "training loss", historySeries(hist)...); err != nil {
			return res, err
		}
	}
	return res, nil
}

// RunToEnd builds a trainer, runs it and frees it: the whole life of a
// run for library callers that need the result only (continual learning,
// method comparison). A run stopped by ctx is context.Canceled.
func RunToEnd(ctx context.Context, model engine.CausalLM, loader *data.Loader, cfg Config, opts Options) (*Result, error) {
	tr, err := New(model, loader, cfg, opts)
	if err != nil {
		return nil, err
	}
	defer tr.Close()
	res, err := tr.Run(ctx)
	if err != nil {
		return nil, err
	}
	if res.Interrupted {
		return nil, context.Canceled
	}
	return res, nil
}
