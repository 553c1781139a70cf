package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"
	"time"

	"github.com/gotune/gotune/engine/fewshot"
	"github.com/gotune/gotune/engine/synth"
)

func init() {
	register(&command{
		Name:    "meta-train",
		Summary: "meta-learn an adapter initialisation that adapts to a new task from k examples (Reptile, first-order MAML)",
		Run:     runMetaTrain,
	})
}

const metaTrainDescription = `
Meta-learns the initial values of a parameter-efficient method's trainable
parameters (LoRA; bottleneck adapters, prefix, prompt and P-Tuning alike)
over a family of tasks, so that a few steps on k examples of a new task
adapt it. Each meta-step draws --meta-batch tasks, and from each a support
set of --shots examples and a query set of --query others; it adapts a copy
of the parameters θ with --inner-steps steps (--inner-opt, --inner-lr) on
the support set, then updates θ:
  reptile  θ ← θ + ε·(φ̄ − θ), φ̄ the mean adapted parameters;
  fomaml   a step of --outer-opt (Adam by default, or SGD: θ ← θ − ε·ḡ)
           on ḡ, the mean gradient of the query loss at the adapted
           parameters (first-order MAML);
with ε = --outer-lr annealed linearly to 0 over --meta-steps.

Tasks: --tasks a.jsonl,b.jsonl,... or --tasks-dir DIR (one task per file, in
any format gotune train reads; at least --shots + --query examples each), or
--synth-family cipher: a substitution cipher with a freshly drawn key for
every task (keys >= 2^20; smaller keys such as the demo's cipher:7 are
never drawn, so they stay held out).

Meta-validation: before, every --eval-every meta-steps and after, the k-shot
exact-match accuracy (adapt --inner-steps steps on --shots examples, score
--eval-query others) on --eval-tasks meta-training tasks and on every
held-out task of --val-tasks (files) or --val-synth-tasks (synthetic task
names; default with --synth-family cipher: cipher:1000..1003; an empty
--val-synth-tasks= scores none).

Writes into --out:
  adapter_config.json, adapter_model.safetensors
                 the learned initialisation, a PEFT adapter folder: pass it
                 as --init-adapter to gotune train or gotune eval --few-shot
  metrics.jsonl  one line per meta-step (meta_step, outer_lr, support_loss,
                 adapted_loss, query_loss, elapsed_s) and per evaluation
                 (eval: true, train_acc, val_acc, val_acc_std)

Runs in float32. Reproducible from --seed.`

func runMetaTrain(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("meta-train", "gotune meta-train --model DIR (--tasks FILES | --tasks-dir DIR | --synth-family cipher) --out DIR [flags]", metaTrainDescription)
	var f fewShotFlags
	f.define(fs)
	algo := fs.String("algo", "reptile", "meta-learning algorithm: reptile or fomaml")
	tasks := fs.String("tasks", "", "comma-separated task `FILES` (one task each)")
	tasksDir := fs.String("tasks-dir", "", "`DIR` whose every file is one task")
	family := fs.String("synth-family", "", "synthetic task family, a fresh task per draw: "+strings.Join(synth.FamilyNames(), ", "))
	valTasks := fs.String("val-tasks", "", "comma-separated held-out task `FILES` for meta-validation")
	valSynth := fs.String("val-synth-tasks", "", "comma-separated held-out synthetic task `names` for meta-validation (e.g. cipher:1000,cipher:1001)")
	shots := fs.Int("shots", 8, "support examples per task (k)")
	query := fs.Int("query", 8, "query examples per task (FOMAML's outer loss; reported for Reptile)")
	metaBatch := fs.Int("meta-batch", 4, "tasks per meta-step")
	metaSteps := fs.Int("meta-steps", 100, "meta-steps")
	innerSteps := fs.Int("inner-steps", 8, "adaptation steps per task")
	outerLR := fs.Float64("outer-lr", 0, "outer step size ε at the first meta-step, annealed linearly to 0 (0: 1 for reptile, 0.01 for fomaml)")
	outerOpt := fs.String("outer-opt", "adam", "fomaml's outer update: adam (on the mean query gradient, moments kept across meta-steps) or sgd (θ ← θ − ε·ḡ); reptile always interpolates")
	evalEvery := fs.Int("eval-every", 0, "k-shot evaluation every N meta-steps (0: before and after only)")
	evalTasks := fs.Int("eval-tasks", 4, "meta-training tasks in each k-shot evaluation")
	evalQuery := fs.Int("eval-query", 32, "held-out examples scored per task in each k-shot evaluation")
	out := fs.String("out", "", "output `DIR` (required)")
	logEvery := fs.Int("log-every", 10, "print a progress line every N meta-steps (0: never)")
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	a, err := fewshot.ParseAlgo(*algo)
	if err != nil {
		return &usageError{msg: "--algo: " + err.Error()}
	}
	if *outerLR == 0 {
		*outerLR = map[fewshot.Algo]float64{fewshot.Reptile: 1, fewshot.FOMAML: 0.01}[a]
	}
	if *outerOpt != "adam" && *outerOpt != "sgd" {
		return &usageError{msg: fmt.Sprintf("--outer-opt must be adam or sgd, got %q", *outerOpt)}
	}
	inner, err := f.inner(*innerSteps, "inner-steps")
	if err != nil {
		return err
	}
	cfg := fewshot.MetaConfig{
		Inner: inner, Outer: fewshot.OuterConfig{Algo: a, LR: *outerLR, Steps: *metaSteps, Adam: *outerOpt == "adam"},
		MetaBatch: *metaBatch, Shots: *shots, Query: *query, Seed: f.seed,
		EvalEvery: *evalEvery, EvalTasks: *evalTasks, EvalQuery: *evalQuery, LogEvery: *logEvery, OutDir: *out,
	}
	if err := cfg.Validate(); err != nil {
		return fieldUsageError(err, nil, metaConfigFlags)
	}
	if *logEvery < 0 {
		return &usageError{msg: fmt.Sprintf("--log-every must not be negative, got %d", *logEvery)}
	}
	switch {
	case *out == "":
		return &usageError{msg: "--out is required"}
	case (*tasks != "" || *tasksDir != "") == (*family != ""):
		return &usageError{msg: "give the meta-training tasks as --tasks or --tasks-dir, or as --synth-family (one kind)"}
	}
	var fam synth.Family
	if *family != "" {
		if fam, err = synth.LookupFamily(*family); err != nil {
			return &usageError{msg: "--synth-family: " + strings.TrimPrefix(err.Error(), "synth: ")}
		}
		explicit := false
		fs.Visit(func(fl *flag.Flag) { explicit = explicit || fl.Name == "val-synth-tasks" })
		if *valTasks == "" && *valSynth == "" && !explicit {
			*valSynth = "cipher:1000,cipher:1001,cipher:1002,cipher:1003"
		}
	}
	trainPaths, err := taskPaths("tasks", *tasks, "tasks-dir", *tasksDir)
	if err != nil {
		return err
	}
	valPaths, err := taskPaths("val-tasks", *valTasks, "tasks-dir", "")
	if err != nil {
		return err
	}

	s, err := f.setup(func(msg string) { fmt.Fprintln(e.Stderr, msg) })
	if err != nil {
		return err
	}
	defer s.be.Close()
	need := *shots + *query
	var src fewshot.Source
	if fam != nil {
		src = fewshot.FamilySource{Family: fam, Encoding: s.enc}
	} else {
		ts, err := loadMetaTasks(trainPaths, s.textOpts, need, fmt.Sprintf("--shots %d + --query %d", *shots, *query))
		if err != nil {
			return err
		}
		src = fewshot.FileSource(ts)
	}
	val, err := s.scoredTasks("val-tasks", valPaths, *shots, "shots", "val-synth-tasks", *valSynth, *shots+*evalQuery, f.seed^0x5a17)
	if err != nil {
		return err
	}

	scorer := &fewshot.Scorer{Model: s.m, Params: s.params, Inner: inner, Batching: s.batching, Encoding: s.enc}
	fmt.Fprintf(e.Stdout, "model: %s on %s; method %s: %s\n", f.modelPath, s.be.Name(), f.method, trainParamsLine(s))
	fmt.Fprintf(e.Stdout, "meta-training: %s, %d meta-steps of %d tasks, k = %d support + %d query examples, %d inner %s steps of lr %g, outer lr %g (linear to 0); %d held-out tasks\n",
		a, *metaSteps, *metaBatch, *shots, *query, *innerSteps, inner.Optimizer, inner.LR, *outerLR, len(val))
	start := time.Now()
	res, err := fewshot.MetaTrain(ctx, scorer, src, val, cfg, e.Stdout)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return errInterrupted
		}
		return err
	}
	if err := s.saver.Save(*out); err != nil {
		return fmt.Errorf("saving to %s: %w", *out, err)
	}
	fmt.Fprintf(e.Stdout, "done: %d meta-steps in %s; saved the initialisation (PEFT adapter folder, use it as --init-adapter) and %s to %s\n",
		res.Steps, time.Since(start).Round(100*time.Millisecond), fewshot.MetricsFile, *out)
	if res.Interrupted {
		return errInterrupted
	}
	return nil
}
