package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
	"github.com/gotune/gotune/internal/compare"
)

func init() {
	register(&command{
		Name:            "compare",
		Summary:         "train several methods with the same budget and compare memory, speed, loss and accuracy",
		Run:             runCompare,
		OutOfMemoryHint: trainOutOfMemoryHint,
	})
}

const compareDescription = `
Trains each --methods entry on a fresh copy of --model with the same data,
steps, batch and optimiser (the path of "gotune train"), then prints and
writes to --out/compare.json, per method: trainable parameters, peak device
memory, tokens/s, final train and eval loss and exact-match accuracy on
--eval-data (instruction or chat data); --out/compare.png overlays the
methods' eval-loss curves (every --eval-every steps). Each method's
metrics.jsonl and loss.png go to --out/<method>/; no weights are saved.
Methods: full, freeze, lora, dora (lora with --use-dora), adapter, prompt,
ptuning, prefix; their flags (--lora-r, --adapter-variant, ...) apply as in
"gotune train". Every method is first applied to the model once, so one
that does not fit it fails before anything trains.`

// compareMethodNames are the accepted --methods entries.
var compareMethodNames = []string{"full", "freeze", "lora", "dora", "adapter", "prefix", "ptuning", "prompt"}

// compareApply returns the Apply of a --methods entry: the train
// method's with the method flags' options, with dora as lora with
// --use-dora forced on (and lora with it forced off).
func compareApply(mf *methodFlagSet, name, modelDir string) func(model.Model, uint64) (train.Saver, error) {
	method := name
	if name == "dora" {
		method = "lora"
	}
	return func(m model.Model, seed uint64) (train.Saver, error) {
		return mf.apply(method, m, modelDir, seed, func(o *finetune.MethodOptions) {
			if method == "lora" {
				o.LoRA.DoRA = name == "dora"
			}
		})
	}
}

// parseMethodLRs parses --method-lr "full=1e-4,freeze=1e-4".
func parseMethodLRs(s string, names []string) (map[string]float64, error) {
	out := map[string]float64{}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, f := range strings.Split(s, ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(f), "=")
		lr, err := strconv.ParseFloat(v, 64)
		if !ok || err != nil || lr <= 0 {
			return nil, &usageError{msg: fmt.Sprintf("--method-lr: %q is not METHOD=LR with a positive LR", f)}
		}
		if !slices.Contains(names, k) {
			return nil, &usageError{msg: fmt.Sprintf("--method-lr: %s is not one of --methods (%s)", k, strings.Join(names, ","))}
		}
		out[k] = lr
	}
	return out, nil
}

func runCompare(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("compare", "gotune compare --methods LIST --model DIR --data FILE --eval-data FILE --steps N --out DIR [flags]", compareDescription)
	list := fs.String("methods", "", "comma-separated methods to compare: "+strings.Join(compareMethodNames, ", ")+" (required)")
	modelDir := fs.String("model", "", "`DIR` of the base model, in Hugging Face layout (required)")
	dataPath := fs.String("data", "", "training data `FILE` (required)")
	steps := fs.Int("steps", 100, "optimizer steps per method")
	batchSize := fs.Int("batch-size", 8, "sequences per step")
	seqLen := fs.Int("seq-len", defaultSeqLen, "maximum tokens per sequence (capped at the model's maximum)")
	lr := fs.Float64("lr", 1e-3, "peak learning rate of every method (see --method-lr)")
	methodLR := fs.String("method-lr", "", "per-method learning rates overriding --lr, e.g. full=1e-4,freeze=1e-4")
	schedName := fs.String("lr-schedule", "linear", "constant, linear or cosine")
	warmup := fs.Int("warmup-steps", 0, "steps of linear warmup")
	maxGradNorm := fs.Float64("max-grad-norm", 1.0, "gradient clipping norm (0: off)")
	seed := fs.Uint64("seed", 42, "seed of the data order and the methods' initialisation")
	maxNew := fs.Int("max-new-tokens", 64, "most tokens generated per answer for exact match")
	device := fs.String("device", "auto", deviceHelp)
	precision := fs.String("precision", "auto", precisionHelp)
	gradCkpt := fs.Bool("grad-checkpoint", false, "gradient checkpointing for every method")
	out := fs.String("out", "compare", "output `DIR`")
	logEvery := fs.Int("log-every", 0, "print a progress line every N steps (0: never)")
	var df textDataFlags
	df.define(fs, true)
	mf := defineMethodFlags(fs)
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	switch {
	case *list == "":
		return &usageError{msg: "--methods is required"}
	case *modelDir == "":
		return &usageError{msg: "--model is required"}
	case *dataPath == "":
		return &usageError{msg: "--data is required"}
	case *steps < 1:
		return &usageError{msg: fmt.Sprintf("--steps must be at least 1, got %d", *steps)}
	case *batchSize < 1 || *seqLen < 2 || *maxNew < 1:
		return &usageError{msg: "--batch-size and --max-new-tokens must be at least 1, --seq-len at least 2"}
	case mf.opts.InitAdapter != "":
		return &usageError{msg: "--init-adapter does not apply to compare: every method starts fresh"}
	}
	names, err := compare.ParseMethods(*list, compareMethodNames)
	if err != nil {
		return &usageError{msg: "--methods: " + err.Error()}
	}
	lrs, err := parseMethodLRs(*methodLR, names)
	if err != nil {
		return err
	}
	if !validDevice(*device) {
		return &usageError{msg: fmt.Sprintf("unknown --device %q (want auto, cpu, cuda or cuda:N)", *device)}
	}
	if err := checkPrecision(*precision); err != nil {
		return err
	}
	schedule, err := train.ParseSchedule(*schedName)
	if err != nil {
		return &usageError{msg: "--lr-schedule: " + err.Error()}
	}
	hc, err := hfconfig.Load(*modelDir)
	if err != nil {
		return err
	}
	warnConfig(e.Stderr, hc)
	sl := min(*seqLen, hc.MaxPos)
	td, err := df.openData(*dataPath, *modelDir, sl, hc.VocabSize, e.Stdout)
	if err != nil {
		return err
	}
	be, err := openDevice(*device, func(s string) { fmt.Fprintln(e.Stderr, s) })
	if err != nil {
		return err
	}
	defer be.Close()
	prec, _ := engine.ParsePrecision(*precision, onGPU(be))
	padID := int32(0)
	if hc.PadTokenID != nil && *hc.PadTokenID >= 0 && *hc.PadTokenID < hc.VocabSize {
		padID = int32(*hc.PadTokenID)
	}
	cfg := &compare.Config{
		Load:      func() (model.Model, error) { return model.Load(*modelDir, be) },
		TrainData: td.Train, EvalData: td.Eval,
		Loader: data.LoaderConfig{BatchSize: *batchSize, SeqLen: sl, Shuffle: true, Seed: *seed, PadID: padID},
		Train: train.Config{
			Steps: *steps, GradAccum: 1, LR: *lr, Schedule: schedule, WarmupSteps: *warmup,
			Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: *maxGradNorm, LogEvery: *logEvery,
			EvalEvery: df.evalEvery, Precision: prec,
		},
		TrainName: trainFlag, Seed: *seed, GradCheckpoint: *gradCkpt, Out: *out, Log: e.Stdout,
	}
	for _, n := range names {
		cfg.Methods = append(cfg.Methods, compare.Method{Name: n, Apply: compareApply(mf, n, *modelDir), LR: lrs[n]})
	}
	if err := cfg.Train.Validate(); err != nil {
		return fieldUsageError(err, finetune.TrainOption, optionFlags)
	}
	if td.Eval != nil && textdata.IsConversational(td.Eval.Format) {
		convs, _, err := textdata.ReadConversations(df.evalData, td.Eval.Format)
		if err != nil {
			return err
		}
		cfg.Exact = &compare.ExactMatch{Tok: td.Tok, Tmpl: td.Tmpl, Convs: convs, MaxNew: *maxNew}
	}
	if err := compare.Check(cfg); err != nil {
		return err
	}
	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "comparing %s on %s (%s, %s): %d steps of %d sequences of ≤%d tokens each\n",
		strings.Join(names, ", "), *modelDir, be.Name(), prec, *steps, *batchSize, sl)
	results, err := compare.Run(ctx, cfg)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errInterrupted
		}
		return err
	}
	if err := compare.WriteTable(e.Stdout, results); err != nil {
		return err
	}
	rep := &compare.Report{Steps: *steps, BatchSize: *batchSize, SeqLen: sl, EvalEvery: df.evalEvery, Device: be.Name(), Methods: results}
	if err := compare.WriteReport(*out, rep); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "saved %s and %s to %s\n", compare.JSONFile, compare.PlotFile, *out)
	return nil
}
