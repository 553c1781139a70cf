package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"strings"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/train"
)

func init() {
	register(&command{
		Name:    "eval",
		Summary: "evaluate a model on a dataset: loss, and exact-match accuracy",
		Run:     runEval,
	})
}

const evalDescription = `
Evaluates a model on a dataset file and prints:
  loss         the mean cross-entropy of the tokens training would score
               (the replies of instruction and chat data; every token of
               text), and its perplexity;
  exact match  for instruction and chat data, where the last reply is the
               one right answer: the share of records whose greedy reply
               (laid out with the chat template, stopped at end of
               sequence) equals it, ignoring surrounding white space.

With --few-shot K it evaluates fast adaptation instead: per task, K examples
to adapt on and held-out ones to score (see gotune eval --few-shot 1 --help).

` + textDataHelp

func runEval(ctx context.Context, e *env, args []string) error {
	if fewShotRequested(args) {
		return runFewShotEval(ctx, e, args)
	}
	fs := newFlagSet("eval", "gotune eval --model PATH [--adapter DIR] --data FILE [flags]", evalDescription)
	modelPath := fs.String("model", "", modelPathHelp+" (required)")
	adapter := fs.String("adapter", "", "adapter `DIR` to apply (written by gotune train with a parameter-efficient --method)")
	dataPath := fs.String("data", "", "evaluation data `FILE` (required)")
	var df textDataFlags
	df.define(fs, false)
	maxNew := fs.Int("max-new-tokens", 64, "most tokens generated per answer for exact match")
	exact := fs.String("exact-match", "auto", "score exact match: auto (for instruction and chat data), on, off")
	seqLen := fs.Int("seq-len", 0, "maximum tokens per sequence for the loss; longer ones are truncated and counted (0: the model's maximum)")
	batchSize := fs.Int("batch-size", 8, "sequences per forward pass for the loss")
	limit := fs.Int("limit", 0, "evaluate the first N records only (0: all)")
	show := fs.Int("show", 3, "print N answers (wrong ones first)")
	device := fs.String("device", "auto", deviceHelp)
	precision := fs.String("precision", "auto", precisionHelp)
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	switch {
	case *modelPath == "":
		return &usageError{msg: "--model is required"}
	case *dataPath == "":
		return &usageError{msg: "--data is required"}
	case *maxNew < 1:
		return &usageError{msg: fmt.Sprintf("--max-new-tokens must be at least 1, got %d", *maxNew)}
	case *exact != "auto" && *exact != "on" && *exact != "off":
		return &usageError{msg: fmt.Sprintf("--exact-match must be auto, on or off, got %q", *exact)}
	case *seqLen < 0 || *seqLen == 1:
		return &usageError{msg: fmt.Sprintf("--seq-len must be 0 or at least 2, got %d", *seqLen)}
	case *batchSize < 1:
		return &usageError{msg: fmt.Sprintf("--batch-size must be at least 1, got %d", *batchSize)}
	case *limit < 0 || *show < 0:
		return &usageError{msg: "--limit and --show must not be negative"}
	}
	if !validDevice(*device) {
		return &usageError{msg: fmt.Sprintf("unknown --device %q (want auto, cpu, cuda or cuda:N)", *device)}
	}
	if err := checkPrecision(*precision); err != nil {
		return err
	}
	be, err := openDevice(*device, func(string) {})
	if err != nil {
		return err
	}
	defer be.Close()
	prec, _ := engine.ParsePrecision(*precision, onGPU(be))
	m, err := loadModel(*modelPath, be, prec)
	if err != nil {
		return err
	}
	if *adapter != "" {
		if err := loadAdapter(m, *adapter); err != nil {
			return err
		}
	}
	if err := inferencePrecision(m, prec); err != nil {
		return err
	}
	sl := *seqLen
	if sl == 0 || sl > m.Config().MaxPos {
		sl = m.Config().MaxPos
	}
	td, err := df.openData(*dataPath, *modelPath, sl, m.Config().VocabSize, e.Stdout)
	if err != nil {
		return err
	}
	if td.Tok != nil {
		if err := checkVocab(td.Tok, m); err != nil {
			return err
		}
	}
	ds := td.Train
	if *limit > 0 && *limit < len(ds.Examples) {
		ds.Examples = ds.Examples[:*limit]
	}
	fmt.Fprintln(e.Stdout, "data: "+textdata.Summary(ds))

	start := time.Now()
	if err := reportLoss(e.Stdout, m, ds, *batchSize, sl); err != nil {
		return err
	}
	conversational := textdata.IsConversational(ds.Format)
	switch {
	case *exact == "off":
	case !conversational && *exact == "on":
		return fmt.Errorf("--exact-match on: %s is %s data, which has no answers to match (instruction or chat data has)", *dataPath, ds.Format)
	case conversational:
		convs, _, err := textdata.ReadConversations(*dataPath, ds.Format)
		if err != nil {
			return err
		}
		if *limit > 0 && *limit < len(convs) {
			convs = convs[:*limit]
		}
		res, err := generate.ExactMatch(ctx, m, td.Tok, td.Tmpl, convs, *maxNew, nil)
		if err != nil {
			if errors.Is(err, context.Canceled) {
				return errInterrupted
			}
			return err
		}
		fmt.Fprintf(e.Stdout, "exact match: %d/%d = %.1f%% (greedy, at most %d new tokens, chat template %s)\n",
			res.Correct, res.Total, 100*res.Accuracy(), *maxNew, td.Tmpl.Name())
		printSamples(e.Stdout, res.Samples, *show, true)
	}
	fmt.Fprintf(e.Stderr, "evaluated in %s\n", time.Since(start).Round(time.Millisecond))
	return nil
}

// reportLoss prints the mean token loss of ds and the truncation count.
func reportLoss(w io.Writer, m model.Model, ds *data.Dataset, batchSize, seqLen int) error {
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: batchSize, SeqLen: seqLen})
	if err != nil {
		return err
	}
	st := loader.Stats()
	if st.Truncated > 0 || st.Skipped > 0 {
		fmt.Fprintln(w, st.TruncationMessage())
	}
	if st.Skipped > 0 {
		fmt.Fprintf(w, "skipped %d of %d sequences with no scored token\n", st.Skipped, st.Sequences)
	}
	loss, tokens, err := train.EvalLoss(m, loader)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "loss: %.4f (perplexity %.3g) over %d tokens\n", loss, math.Exp(loss), tokens)
	return nil
}

// printSamples prints up to n samples, wrong answers first, with their
// file:line when withLoc.
func printSamples(w io.Writer, samples []generate.Sample, n int, withLoc bool) {
	var wrong, right []generate.Sample
	for _, s := range samples {
		if s.Correct {
			right = append(right, s)
		} else {
			wrong = append(wrong, s)
		}
	}
	for i, s := range append(wrong, right...) {
		if i == n {
			break
		}
		mark, extra := "✓", ""
		if !s.Correct {
			mark, extra = "✗", fmt.Sprintf(" (expected %q)", s.Answer)
		}
		loc := ""
		if withLoc {
			loc = s.Loc.String() + "  "
		}
		fmt.Fprintf(w, "  %s %s%s → %q%s\n", mark, loc, oneLine(s.Prompt, 60), s.Got, extra)
	}
}

// oneLine shortens text to one line of at most n runes for display.
func oneLine(s string, n int) string {
	s = strings.Join(strings.Fields(s), " ")
	if r := []rune(s); len(r) > n {
		return string(r[:n-1]) + "…"
	}
	return s
}
