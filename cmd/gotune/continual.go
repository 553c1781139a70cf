package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/continual"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/methods/lora"
)

func init() {
	register(&command{
		Name:            "continual",
		Summary:         "train a sequence of tasks and measure forgetting (naive, replay, EWC, O-LoRA, per-task, joint)",
		Run:             runContinual,
		OutOfMemoryHint: trainOutOfMemoryHint,
	})
}

const continualDescription = `
Continual learning: trains the --tasks files in order, --steps optimizer
steps each (a fresh optimizer and learning-rate schedule per task), and
after each task evaluates every task on its evaluation split: the files of
--eval-data (same order), or by default every 10th record of each task
file, held out from training. Tasks with answers (instruction, chat data)
are scored by exact match of the greedy reply (as gotune eval scores it);
plain-text tasks by loss.

Strategies (--strategy):
  naive     plain sequential fine-tuning
  replay    a reservoir buffer (--replay-size) of examples of earlier tasks;
            --replay-ratio of every batch's rows are drawn from it
  ewc       elastic weight consolidation: the loss gains
            λ·Σ F·(θ − θ*)² (--ewc-lambda), F the diagonal Fisher (mean
            squared per-example gradient over --fisher-samples training
            examples of the finished task), θ* its weights; one term per
            finished task, or with --ewc-online one, F ← γ·F + F_new
            (--ewc-gamma) and θ* the latest weights
  olora     O-LoRA (--method lora only): a fresh LoRA per task; finished
            tasks' adapters are frozen and merged (summed) into the model,
            and the new A factors pay λ₁·Σ ‖A_old·A_newᵀ‖² (--olora-lambda)
  per-task  one set of trained weights per task, each from the same start,
            each task evaluated with its own: the upper bound with task
            identity
  joint     one run on the mixture of all tasks, as many steps in all;
            row i of its matrix is that run after (i+1)·--steps steps: the
            multi-task reference

Writes into --out:
  continual.json  tasks, strategy, acc (acc[i][j]: accuracy in [0, 1] on
                  task j after training task i; null for tasks scored by
                  loss), avg_acc (mean of the last row), bwt (mean over
                  j < T−1 of acc[T−1][j] − acc[j][j]), forgetting (mean over
                  j < T−1 of the best accuracy on j before the last task minus
                  the final one), eval_loss (matrix), train_loss and
                  first_train_loss (per task: its last tenth of steps, and
                  its first step), elapsed_s and the settings
  continual.png   a heat map of acc (of eval_loss when no task has answers)
The trained weights are not saved.

` + textDataHelp

// continualFlags are the flags of "gotune continual" beyond the shared
// training flags.
type continualFlags struct {
	tasks, evalData, strategy string
	replaySize                int
	replayRatio               float64
	ewcLambda, ewcGamma       float64
	ewcOnline                 bool
	fisherSamples             int
	oloraLambda               float64
	maxNew, evalLimit         int
}

func (c *continualFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&c.tasks, "tasks", "", "comma-separated task `FILES`, trained in this order (required)")
	fs.StringVar(&c.evalData, "eval-data", "", "comma-separated evaluation `FILES`, one per task in the same order (default: every 10th record of each task file, held out)")
	fs.StringVar(&c.strategy, "strategy", string(continual.StrategyNaive), "continual-learning `strategy`: "+strategyNames())
	fs.IntVar(&c.replaySize, "replay-size", 200, "replay: examples the reservoir buffer holds")
	fs.Float64Var(&c.replayRatio, "replay-ratio", 0.25, "replay: share of each batch's rows drawn from the buffer (after the first task)")
	fs.Float64Var(&c.ewcLambda, "ewc-lambda", 100, "ewc: penalty strength λ")
	fs.BoolVar(&c.ewcOnline, "ewc-online", false, "ewc: online EWC (one decayed Fisher and the latest weights instead of one term per task)")
	fs.Float64Var(&c.ewcGamma, "ewc-gamma", 1, "ewc: decay γ of the online Fisher")
	fs.IntVar(&c.fisherSamples, "fisher-samples", 64, "ewc: training examples of a finished task its Fisher is estimated on (one backward pass each)")
	fs.Float64Var(&c.oloraLambda, "olora-lambda", 0.5, "olora: orthogonality penalty strength λ₁")
	fs.IntVar(&c.maxNew, "max-new-tokens", 0, "most tokens generated per answer for exact match (0: the longest reference answer's tokens + 4)")
	fs.IntVar(&c.evalLimit, "eval-limit", 0, "evaluate the first N records of each task's evaluation split (0: all)")
}

func strategyNames() string {
	var names []string
	for _, s := range continual.Strategies() {
		names = append(names, string(s))
	}
	return strings.Join(names, ", ")
}

func runContinual(ctx context.Context, e *env, args []string) error {
	var f trainFlags
	var c continualFlags
	fs := newFlagSet("continual", "gotune continual --model DIR --tasks A,B,... --strategy S --steps N [flags]", continualDescription)
	fs.StringVar(&f.modelDir, "model", "", "`DIR` of the model to fine-tune, in Hugging Face layout (required)")
	fs.StringVar(&f.method, "method", "lora", "fine-tuning `method`: "+methodNames())
	fs.IntVar(&f.steps, "steps", 100, "optimizer steps per task")
	fs.StringVar(&f.out, "out", "out", "output `DIR` (created if needed)")
	f.defineOptimizer(fs)
	f.text.define(fs, false)
	c.define(fs)
	byMethod := methodFlagNames() // before the real definitions: it resets the method flags
	mf := defineMethodFlags(fs)
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	ccfg, taskPaths, evalPaths, err := c.check(&f)
	if err != nil {
		return err
	}
	tcfg, err := f.optimizerConfig()
	if err != nil {
		return err
	}
	if _, err := methodRegistry.Lookup(f.method, optionFlags); err != nil {
		return err
	}
	if ccfg.Strategy == continual.StrategyOLoRA && f.method != "lora" {
		return &usageError{msg: fmt.Sprintf("--strategy olora trains a fresh LoRA per task: it needs --method lora, not %s", f.method)}
	}
	if ccfg.Strategy == continual.StrategyOLoRA && mf.opts.InitAdapter != "" {
		return &usageError{msg: "--strategy olora starts every task from a fresh LoRA; --init-adapter does not apply"}
	}
	if !validDevice(f.device) {
		return &usageError{msg: fmt.Sprintf("unknown --device %q (want auto, cpu, cuda or cuda:N)", f.device)}
	}
	if err := checkPrecision(f.precision); err != nil {
		return err
	}
	for _, p := range append(slices.Clone(taskPaths), evalPaths...) {
		if err := checkTaskFile(p); err != nil {
			return err
		}
	}

	hc, err := hfconfig.Load(f.modelDir)
	if err != nil {
		return err
	}
	warnConfig(e.Stderr, hc)
	seqLen := f.seqLen
	if seqLen > hc.MaxPos && !set["seq-len"] {
		seqLen = hc.MaxPos
	}
	padID := int32(0)
	if hc.PadTokenID != nil && *hc.PadTokenID >= 0 && *hc.PadTokenID < hc.VocabSize {
		padID = int32(*hc.PadTokenID)
	}
	tasks, scorer, err := loadTasks(&f.text, f.modelDir, taskPaths, evalPaths, seqLen, hc.VocabSize, c.evalLimit, e.Stdout)
	if err != nil {
		return err
	}
	if scorer.MaxNewTokens, err = maxNewTokens(c.maxNew, scorer.Tokenizer, tasks); err != nil {
		return err
	}

	be, err := openDevice(f.device, func(s string) { fmt.Fprintln(e.Stderr, s) })
	if err != nil {
		return err
	}
	defer be.Close()
	m, err := model.Load(f.modelDir, be)
	if err != nil {
		return err
	}
	if scorer.Tokenizer != nil {
		if err := checkVocab(scorer.Tokenizer, m); err != nil {
			return err
		}
	}
	if ccfg.Strategy == continual.StrategyOLoRA {
		ccfg.NewAdapter = func(i int) (continual.LowRankAdapter, error) {
			s, err := mf.apply(f.method, m, f.modelDir, f.seed+uint64(i))
			if err != nil {
				return nil, err
			}
			return s.(*lora.Adapter), nil
		}
	} else if _, err := mf.apply(f.method, m, f.modelDir, f.seed); err != nil {
		return err
	}
	m.SetGradCheckpoint(f.gradCheckpoint)
	tcfg.Precision, _ = engine.ParsePrecision(f.precision, onGPU(be))
	ccfg.Train, ccfg.TrainName, ccfg.Scorer, ccfg.Log = tcfg, trainFlag, scorer, e.Stdout
	ccfg.BatchSize, ccfg.SeqLen, ccfg.PadID = f.batchSize, seqLen, padID
	fmt.Fprintf(e.Stdout, "model: %s (%s) on %s, precision %s; method %s, strategy %s, %d tasks × %d steps of %d×%d sequences, lr %g (%s)\n",
		f.modelDir, hc.Arch, be.Name(), tcfg.Precision, f.method, ccfg.Strategy, len(tasks), f.steps, f.gradAccum, f.batchSize, f.lr, tcfg.Schedule)

	res, err := continual.Run(ctx, m, tasks, ccfg)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errInterrupted
		}
		return err
	}
	printContinualTable(e.Stdout, res)
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	// The settings of the run: every flag but other methods' own.
	settings := map[string]string{}
	fs.VisitAll(func(fl *flag.Flag) {
		for name, own := range byMethod {
			if own[fl.Name] && !byMethod[f.method][fl.Name] && name != f.method {
				return
			}
		}
		settings["--"+fl.Name] = fl.Value.String()
	})
	settings["--seq-len"] = fmt.Sprint(seqLen)
	if err := continual.WriteReport(f.out, res, settings); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "saved %s and %s to %s (%s)\n", continual.ReportFile, continual.HeatMapFile, f.out, res.Elapsed.Round(time.Second))
	return nil
}

// check validates the continual flags that need no files and returns the
// library configuration and the task and evaluation files.
func (c *continualFlags) check(f *trainFlags) (continual.Config, []string, []string, error) {
	var cfg continual.Config
	switch {
	case f.modelDir == "":
		return cfg, nil, nil, &usageError{msg: "--model is required"}
	case c.tasks == "":
		return cfg, nil, nil, &usageError{msg: "--tasks is required (comma-separated task files)"}
	case f.out == "":
		return cfg, nil, nil, &usageError{msg: "--out must not be empty"}
	case c.maxNew < 0 || c.evalLimit < 0:
		return cfg, nil, nil, &usageError{msg: "--max-new-tokens and --eval-limit must not be negative"}
	}
	st, err := continual.ParseStrategy(c.strategy)
	if err != nil {
		return cfg, nil, nil, &usageError{msg: "--strategy: " + err.Error()}
	}
	tasks := splitList(c.tasks)
	var evals []string
	if c.evalData != "" {
		evals = splitList(c.evalData)
		if len(evals) != len(tasks) {
			return cfg, nil, nil, &usageError{msg: fmt.Sprintf("--eval-data names %d files for %d tasks; give one per task, in the same order", len(evals), len(tasks))}
		}
	}
	cfg = continual.Config{
		Strategy: st, Steps: f.steps, Seed: f.seed,
		BatchSize: f.batchSize, SeqLen: f.seqLen,
		ReplaySize: c.replaySize, ReplayRatio: c.replayRatio,
		EWCLambda: c.ewcLambda, EWCOnline: c.ewcOnline, EWCGamma: c.ewcGamma, FisherSamples: c.fisherSamples,
		OLoRALambda: c.oloraLambda, NewAdapter: func(int) (continual.LowRankAdapter, error) { return nil, nil },
	}
	if err := cfg.Validate(); err != nil {
		return cfg, nil, nil, fieldUsageError(err, nil, continualConfigFlags)
	}
	cfg.NewAdapter = nil
	return cfg, tasks, evals, nil
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// checkTaskFile reports a task file that is missing or empty.
func checkTaskFile(path string) error {
	st, err := os.Stat(path)
	switch {
	case err != nil:
		return fmt.Errorf("task file %s: %w", path, errors.Unwrap(err))
	case st.IsDir():
		return fmt.Errorf("task file %s is a directory", path)
	case st.Size() == 0:
		return fmt.Errorf("task file %s is empty", path)
	}
	return nil
}

// loadTasks reads every task and its evaluation split (every 10th record
// held out when evalPaths is nil), limiting each evaluation split to limit
// records (0: all). The scorer's tokenizer and template are those of the
// data.
func loadTasks(df *textDataFlags, modelDir string, taskPaths, evalPaths []string, seqLen, vocab, limit int, log io.Writer) ([]continual.Task, continual.Scorer, error) {
	var tasks []continual.Task
	var scorer continual.Scorer
	for i, path := range taskPaths {
		d := *df
		if evalPaths != nil {
			d.evalData = evalPaths[i]
		}
		td, err := d.openData(path, modelDir, seqLen, vocab, io.Discard)
		if err != nil {
			return nil, scorer, err
		}
		if td.Train.Len() == 0 {
			return nil, scorer, fmt.Errorf("task file %s has no records", path)
		}
		scorer.Tokenizer, scorer.Template = td.Tok, td.Tmpl
		t := continual.Task{Name: taskName(path)}
		answered := textdata.IsConversational(td.Train.Format)
		evalFile := path
		if evalPaths != nil {
			evalFile = evalPaths[i]
			if td.Eval.Len() == 0 {
				return nil, scorer, fmt.Errorf("evaluation file %s has no records", evalFile)
			}
			t.Train, t.Eval = td.Train.Examples, td.Eval
			if answered = answered && textdata.IsConversational(td.Eval.Format); answered {
				if t.Convs, _, err = textdata.ReadConversations(evalFile, td.Eval.Format); err != nil {
					return nil, scorer, err
				}
			}
		} else {
			var convs []textdata.Conversation
			if answered {
				if convs, _, err = textdata.ReadConversations(path, td.Train.Format); err != nil {
					return nil, scorer, err
				}
			}
			if t.Train, t.Eval, t.Convs, err = holdOut(td.Train, convs); err != nil {
				return nil, scorer, err
			}
		}
		if limit > 0 {
			t.Eval.Examples = t.Eval.Examples[:min(limit, t.Eval.Len())]
			if t.Convs != nil {
				t.Convs = t.Convs[:min(limit, len(t.Convs))]
			}
		}
		kind := "exact match"
		if t.Convs == nil {
			kind = "loss"
		}
		fmt.Fprintf(log, "task %s: %d training examples from %s; %d evaluation records from %s (%s)\n", t.Name, len(t.Train), path, t.Eval.Len(), evalFile, kind)
		tasks = append(tasks, t)
	}
	return tasks, scorer, nil
}

// holdOutEvery is the period of the default evaluation split: every 10th
// record is held out.
const holdOutEvery = 10

// holdOut splits a task's examples (and, for data with answers, its
// conversations, one per record) into training examples and the held-out
// evaluation split: the 10th, 20th, ... record.
func holdOut(ds *data.Dataset, convs []textdata.Conversation) ([]data.Example, *data.Dataset, []textdata.Conversation, error) {
	n := ds.Len()
	if convs != nil {
		n = len(convs)
	}
	if n < holdOutEvery {
		return nil, nil, nil, fmt.Errorf("%s: %d records; holding out every %dth for evaluation needs at least %d (or give --eval-data)", ds.Name, n, holdOutEvery, holdOutEvery)
	}
	eval := &data.Dataset{Name: ds.Name + " (held out)", Format: ds.Format}
	var trainEx []data.Example
	if convs == nil { // text blocks: by position
		for i, ex := range ds.Examples {
			if i%holdOutEvery == holdOutEvery-1 {
				eval.Examples = append(eval.Examples, ex)
			} else {
				trainEx = append(trainEx, ex)
			}
		}
		return trainEx, eval, nil, nil
	}
	held := map[data.Loc]bool{}
	var evalConvs []textdata.Conversation
	for i, c := range convs {
		if i%holdOutEvery == holdOutEvery-1 {
			held[c.Loc] = true
			evalConvs = append(evalConvs, c)
		}
	}
	for _, ex := range ds.Examples {
		if held[ex.Loc] {
			eval.Examples = append(eval.Examples, ex)
		} else {
			trainEx = append(trainEx, ex)
		}
	}
	return trainEx, eval, evalConvs, nil
}

// taskName is a task file's name without its folder and extension.
func taskName(path string) string {
	base := filepath.Base(path)
	return strings.TrimSuffix(base, filepath.Ext(base))
}

// maxNewTokens is --max-new-tokens, or when 0 the longest reference
// answer's token count plus 4.
func maxNewTokens(flagValue int, tok tokenizer.Tokenizer, tasks []continual.Task) (int, error) {
	if flagValue > 0 || tok == nil {
		return max(flagValue, 1), nil
	}
	longest := 0
	for _, t := range tasks {
		for _, c := range t.Convs {
			ids, err := tok.Encode(c.Messages[len(c.Messages)-1].Content, false)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", c.Loc, err)
			}
			longest = max(longest, len(ids))
		}
	}
	return longest + 4, nil
}

// printContinualTable prints the accuracy matrix (or losses) and the
// summaries.
func printContinualTable(w io.Writer, r *continual.Result) {
	width := 8
	for _, n := range r.Tasks {
		width = max(width, len(n)+2)
	}
	fmt.Fprintf(w, "\nstrategy %s: accuracy %% (loss for tasks without answers) on each task (columns) after training each task (rows)\n", r.Strategy)
	fmt.Fprintf(w, "%-*s", width+6, "")
	for _, n := range r.Tasks {
		fmt.Fprintf(w, "%*s", width, n)
	}
	fmt.Fprintln(w)
	for i, row := range r.Acc {
		fmt.Fprintf(w, "after %-*s", width, r.RowLabel(i))
		for j, v := range row {
			if math.IsNaN(v) {
				fmt.Fprintf(w, "%*.3f", width, r.EvalLoss[i][j])
			} else {
				fmt.Fprintf(w, "%*.1f", width, 100*v)
			}
		}
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "avg_acc %s  bwt %s  forgetting %s\n", pct(r.AvgAcc), pct(r.BWT), pct(r.Forgetting))
}

// pct formats a fraction as a percentage, "n/a" for NaN.
func pct(v float64) string {
	if math.IsNaN(v) {
		return "n/a"
	}
	return fmt.Sprintf("%.1f%%", 100*v)
}
