package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"github.com/gotune/gotune/engine/fewshot"
)

// "gotune eval --few-shot k": k-shot adaptation and exact match per
// held-out task. runEval hands its arguments here when --few-shot is
// among them.

const fewShotEvalDescription = `
Few-shot evaluation: for each task, starts from the method's initialisation
(--init-adapter DIR, e.g. written by gotune meta-train, or the method's
fresh initialisation when it is not given), adapts --adapt-steps steps
(--inner-opt, --inner-lr) on --few-shot k examples of the task, and scores
exact match (greedy replies, as gotune eval) on --query others of the same
task; the parameters go back to the initialisation before the next task.
Prints each task's accuracy and the mean, standard deviation, minimum and
maximum across tasks.

Tasks: --tasks a.jsonl,b.jsonl,... or --tasks-dir DIR (instruction or chat
data, one task per file, at least k + 1 examples each), and/or
--synth-tasks cipher:7,cipher:8,... (synthetic tasks, k + --query examples
drawn each). The support examples are drawn from --seed.

--in-context: the baseline without training: no adaptation; each query
example is prompted with the k support examples in front, as earlier turns
of one conversation laid out by the chat template (plain: one <s>, then
each example's {instruction}\n{input}\n{output}</s> in turn), and the
greedy reply is scored; the held-out loss is the answer's loss in that
context. Prompts longer than the model's context are an error (reduce k).`

// fewShotRequested reports whether args ask for few-shot evaluation.
func fewShotRequested(args []string) bool {
	for _, a := range args {
		if a == "--" {
			return false
		}
		name, _, _ := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if strings.HasPrefix(a, "-") && name == "few-shot" {
			return true
		}
	}
	return false
}

func runFewShotEval(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("eval", "gotune eval --few-shot K --model DIR (--tasks FILES | --tasks-dir DIR | --synth-tasks NAMES) [flags]", fewShotEvalDescription)
	var f fewShotFlags
	f.define(fs)
	k := fs.Int("few-shot", 0, "support examples per task (k)")
	steps := fs.Int("adapt-steps", 8, "adaptation steps on the k examples (0: score the initialisation as it is)")
	tasks := fs.String("tasks", "", "comma-separated task `FILES` (one task each)")
	tasksDir := fs.String("tasks-dir", "", "`DIR` whose every file is one task")
	synthNames := fs.String("synth-tasks", "", "comma-separated synthetic task `names` (e.g. cipher:7,cipher:8)")
	query := fs.Int("query", 50, "held-out examples scored per task (files: at most this many of the examples not drawn as support; 0: all of them)")
	inContext := fs.Bool("in-context", false, "in-context k-shot prompting instead of adapting: the k support examples go in front of each query prompt (no training)")
	maxNew := fs.Int("max-new-tokens", 0, "most tokens generated per answer (0: the longest expected answer plus 4)")
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	switch {
	case *k < 1:
		return &usageError{msg: fmt.Sprintf("--few-shot must be at least 1, got %d", *k)}
	case *query < 0 || *maxNew < 0:
		return &usageError{msg: "--query and --max-new-tokens must not be negative"}
	case *tasks == "" && *tasksDir == "" && *synthNames == "":
		return &usageError{msg: "--few-shot needs tasks: --tasks, --tasks-dir or --synth-tasks"}
	}
	inner, err := f.inner(*steps, "adapt-steps")
	if err != nil {
		return err
	}
	paths, err := taskPaths("tasks", *tasks, "tasks-dir", *tasksDir)
	if err != nil {
		return err
	}
	s, err := f.setup(func(msg string) { fmt.Fprintln(e.Stderr, msg) })
	if err != nil {
		return err
	}
	defer s.be.Close()
	nSynth := *k + *query
	if *query == 0 {
		nSynth = *k + 50
	}
	list, err := s.scoredTasks("tasks", paths, *k, "few-shot", "synth-tasks", *synthNames, nSynth, f.seed^0x5e1d)
	if err != nil {
		return err
	}

	scorer := &fewshot.Scorer{Model: s.m, Params: s.params, Inner: inner, Batching: s.batching, Encoding: s.enc, MaxNewTokens: *maxNew}
	init := "a fresh initialisation"
	if dir := f.methods.opts.InitAdapter; dir != "" {
		init = dir
	}
	fmt.Fprintf(e.Stdout, "model: %s on %s; method %s from %s: %s\n", f.modelPath, s.be.Name(), f.method, init, trainParamsLine(s))
	score := scorer.Score
	if *inContext {
		score = scorer.ScoreInContext
		fmt.Fprintf(e.Stdout, "few-shot: k = %d in context (no adaptation), %d tasks\n", *k, len(list))
	} else {
		fmt.Fprintf(e.Stdout, "few-shot: k = %d, %d %s steps of lr %g per task, %d tasks\n", *k, *steps, inner.Optimizer, inner.LR, len(list))
	}
	rng := rand.New(rand.NewPCG(f.seed, 0xf5e7))
	var accs, losses []float64
	start := time.Now()
	for i, t := range list {
		q := *query
		if q == 0 || q > len(t.Examples)-*k {
			q = len(t.Examples) - *k
		}
		sp, err := t.Split(rng, *k, q)
		if err != nil {
			return err
		}
		r, err := score(ctx, t, sp)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return errInterrupted
			}
			return err
		}
		accs, losses = append(accs, r.Accuracy()), append(losses, r.QueryLoss)
		fmt.Fprintf(e.Stdout, "task %d/%d %s: exact match %d/%d = %.1f%%, held-out loss %.4f%s\n",
			i+1, len(list), t.Name, r.Correct, r.Total, 100*r.Accuracy(), r.QueryLoss, adaptNote(*inContext, r))
	}
	sum := fewshot.Summarise(accs)
	ls := fewshot.Summarise(losses)
	fmt.Fprintf(e.Stdout, "%d-shot exact match over %d tasks: mean %.1f%%, std %.1f, min %.1f%%, max %.1f%%; held-out loss mean %.4f, std %.4f\n",
		*k, sum.N, 100*sum.Mean, 100*sum.Std, 100*sum.Min, 100*sum.Max, ls.Mean, ls.Std)
	fmt.Fprintf(e.Stderr, "evaluated in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// adaptNote is the support-loss part of a task's line (nothing in context).
func adaptNote(inContext bool, r fewshot.ScoreResult) string {
	if inContext {
		return " (in context)"
	}
	return fmt.Sprintf(" (support loss %.4f before adapting, %.4f at the last step)", r.SupportLoss, r.AdaptedLoss)
}
