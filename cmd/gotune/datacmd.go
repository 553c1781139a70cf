package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"strings"

	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/synth"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
)

func init() {
	register(&command{
		Name:    "data",
		Summary: "make and inspect datasets: data synth, data show",
		Run:     runData,
	})
}

const dataUsage = `Usage:
  gotune data synth --task NAME --n N --out FILE [--eval-n M --eval-out FILE] [--seed S]
  gotune data show (--data FILE | --dataset NAMES) [--model PATH | --tokenizer PATH] [--template T] [--n N] [--json] [--packing]

Subcommands:
  synth   write a synthetic task with exact answers as instruction JSONL
  show    print how examples are tokenized and which tokens are trained on

Run 'gotune data <subcommand> --help' for its flags.`

func runData(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		return &usageError{msg: "missing subcommand (synth or show)"}
	}
	switch args[0] {
	case "synth":
		return runDataSynth(e, args[1:])
	case "show":
		return runDataShow(e, args[1:])
	case "-h", "-help", "--help", "help":
		fmt.Fprintln(e.Stdout, dataUsage)
		return nil
	}
	return &usageError{msg: fmt.Sprintf("unknown subcommand %q (want synth or show)", args[0])}
}

const synthDescription = `
Writes examples of a synthetic task in the instruction format
({"instruction", "input", "output"}), deterministically from --seed. Every
example has exactly one right answer, so "gotune eval" can score exact
match. With --eval-n, a second file holds M further examples whose
instruction and input appear nowhere in the training file.

Tasks:
  reverse     reverse the letters of a word
  sort        sort the letters of a word
  upper       write a word in capitals
  double      double every letter
  add         add two numbers below 100
  lookup      find a key's value in a list of key=value pairs
  cipher:K    map letters through substitution cipher number K (any
              non-negative integer; each key is a different task)`

func runDataSynth(e *env, args []string) error {
	fs := newFlagSet("data synth", "gotune data synth --task NAME --n N --out FILE [flags]", synthDescription)
	task := fs.String("task", "", "task `NAME`: "+strings.Join(synth.Names(), ", ")+" (required)")
	n := fs.Int("n", 1000, "number of training examples")
	out := fs.String("out", "", "training output `FILE` (JSONL; required)")
	evalN := fs.Int("eval-n", 0, "number of evaluation examples (0: none)")
	evalOut := fs.String("eval-out", "", "evaluation output `FILE` (required with --eval-n)")
	seed := fs.Uint64("seed", 1, "random seed")
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	switch {
	case *task == "":
		return &usageError{msg: "--task is required (one of " + strings.Join(synth.Names(), ", ") + ")"}
	case *out == "":
		return &usageError{msg: "--out is required"}
	case *n < 1:
		return &usageError{msg: fmt.Sprintf("--n must be at least 1, got %d", *n)}
	case *evalN < 0:
		return &usageError{msg: fmt.Sprintf("--eval-n must not be negative, got %d", *evalN)}
	case *evalN > 0 && *evalOut == "":
		return &usageError{msg: "--eval-n needs --eval-out FILE"}
	case *evalN == 0 && *evalOut != "":
		return &usageError{msg: "--eval-out needs --eval-n M"}
	case *evalOut != "" && *evalOut == *out:
		return &usageError{msg: "--eval-out must differ from --out"}
	}
	t, err := synth.Lookup(*task)
	if err != nil {
		return &usageError{msg: "--task: " + strings.TrimPrefix(err.Error(), "synth: ")}
	}
	trainEx, evalEx, err := synthSplit(t, *n, *evalN, *seed)
	if err != nil {
		return err
	}
	if err := synth.WriteFile(*out, trainEx); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "wrote %d %s examples to %s\n", len(trainEx), t.Name(), *out)
	if *evalN > 0 {
		if err := synth.WriteFile(*evalOut, evalEx); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "wrote %d %s evaluation examples to %s (none of their inputs is in %s)\n", len(evalEx), t.Name(), *evalOut, *out)
	}
	return nil
}

// synthSplit draws n training examples and m evaluation examples of t
// from one seeded stream: the first n, then the next examples whose
// instruction and input do not occur among the training ones (nor
// earlier in the evaluation set), so evaluation measures generalisation,
// not recall.
func synthSplit(t synth.Task, n, m int, seed uint64) (trainEx, evalEx []synth.Example, err error) {
	key := func(x synth.Example) string { return x.Instruction + "\x00" + x.Input }
	total := n + m
	for {
		all := synth.Generate(t, total, seed)
		trainEx = all[:n]
		seen := map[string]bool{}
		for _, x := range trainEx {
			seen[key(x)] = true
		}
		evalEx = evalEx[:0]
		for _, x := range all[n:] {
			if len(evalEx) == m {
				break
			}
			if !seen[key(x)] {
				seen[key(x)] = true
				evalEx = append(evalEx, x)
			}
		}
		if len(evalEx) == m {
			return trainEx, evalEx, nil
		}
		// Draw further down the same stream; give up when the task has
		// run out of distinct inputs.
		if total >= 4*(n+m)+1000 {
			return nil, nil, fmt.Errorf("task %s: could not find %d evaluation examples distinct from the %d training ones (found %d); ask for fewer", t.Name(), m, n, len(evalEx))
		}
		total *= 2
	}
}

const showDescription = `
Reads a dataset the way "gotune train" does and prints its first examples
token by token: the text of each run of tokens, with the runs that are
trained on (labels) between ⟦ and ⟧ and special tokens written out. Use it
to check a chat template and the label mask before training. With --json it
prints every example (or the first --n) as one JSON line,
{"input_ids": [...], "labels": [...]} (-100: not trained on), which is
also gotune's pre-tokenized format, so any tool can check the tokenization.

With --packing it shows the sequences "gotune train --packing" trains on
(examples truncated to --seq-len and packed into sequences of --seq-len
tokens): --json prints one line per packed sequence with "position_ids"
(restarting at 0 for each example), "segment_ids" (the example of each
token within the sequence: attention stays inside one id), "examples"
(their 0-based indices in the dataset) and "labels" with -100 at each
example's first token, so that shifting them left gives exactly the
targets trained on (transformers' DataCollatorWithFlattening writes them
the same way). The text output starts with what packing saves at
--batch-size: batches per epoch, and padding tokens in the first epoch as
train shuffles it with --seed, unpacked and packed.

` + textDataHelp

func runDataShow(e *env, args []string) error {
	fs := newFlagSet("data show", "gotune data show --data FILE [--model PATH | --tokenizer PATH] [flags]", showDescription)
	dataPath := fs.String("data", "", "data `FILE` (required)")
	modelPath := fs.String("model", "", "model `PATH` whose tokenizer (and chat template) to use")
	var df textDataFlags
	df.define(fs, false)
	df.defineRegistry(fs)
	n := fs.Int("n", -1, "number of examples to print (default 3, or every example with --json; 0: every example)")
	asJSON := fs.Bool("json", false, "print each example's input_ids and labels as one JSON line, and nothing else")
	seqLen := fs.Int("seq-len", 512, "block length for packing text, and with --packing the packed sequences' length")
	packing := fs.Bool("packing", false, "show the packed sequences --packing trains on: "+packingHelp)
	batchSize := fs.Int("batch-size", 8, "sequences per batch, for --packing's count of batches and padding")
	seed := fs.Uint64("seed", 42, "seed of the shuffled epoch --packing counts padding in (train's --seed)")
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	if *dataPath == "" && df.dataset == "" {
		return &usageError{msg: "--data or --dataset is required"}
	}
	if *modelPath == "" && df.tokenizer == "" && *dataPath != "" {
		format, err := textdata.Detect(*dataPath)
		if err != nil {
			return err
		}
		if df.format != textdata.Auto && df.format != "" {
			format = df.format
		}
		if format != textdata.Pretokenized {
			return &usageError{msg: "--model or --tokenizer is required to tokenize " + format + " data"}
		}
	}
	notes := e.Stdout
	if *asJSON {
		notes = io.Discard
	}
	td, err := df.openData(*dataPath, *modelPath, *seqLen, 0, notes)
	if err != nil {
		return err
	}
	limit := *n
	if limit < 0 && !*asJSON {
		limit = 3
	}
	if *packing {
		return showPacked(e.Stdout, td, packedView{seqLen: *seqLen, batchSize: *batchSize, seed: *seed}, limit, *asJSON)
	}
	exs := td.Train.Examples
	if limit > 0 && limit < len(exs) {
		exs = exs[:limit]
	}
	if *asJSON {
		return writeExamplesJSON(e.Stdout, exs)
	}
	fmt.Fprintln(e.Stdout, "data: "+textdata.Summary(td.Train))
	for _, ex := range exs {
		labelled := 0
		for _, l := range ex.Labels {
			if l != data.IgnoreIndex {
				labelled++
			}
		}
		fmt.Fprintf(e.Stdout, "--- %s (%d tokens, %d with labels)\n", ex.Loc, len(ex.InputIDs), labelled)
		showExample(e.Stdout, td.Tok, ex)
	}
	return nil
}

// writeExamplesJSON writes one {"input_ids", "labels"} line per example.
func writeExamplesJSON(w io.Writer, exs []data.Example) error {
	enc := json.NewEncoder(w)
	for _, ex := range exs {
		line := struct {
			InputIDs []int32 `json:"input_ids"`
			Labels   []int32 `json:"labels"`
		}{ex.InputIDs, ex.Labels}
		if err := enc.Encode(line); err != nil {
			return err
		}
	}
	return nil
}

// packedLine is one packed sequence as data show --json --packing prints
// it.
type packedLine struct {
	InputIDs    []int32 `json:"input_ids"`
	Labels      []int32 `json:"labels"`
	PositionIDs []int32 `json:"position_ids"`
	SegmentIDs  []int32 `json:"segment_ids"`
	Examples    []int   `json:"examples"`
}

// packedSequences returns the first limit (0: all) packed sequences of
// loader (built with batch size 1, so a batch is one unpadded sequence),
// with labels unshifted from its targets.
func packedSequences(loader *data.Loader, limit int) []packedLine {
	n := loader.Sequences()
	if limit > 0 {
		n = min(n, limit)
	}
	out := make([]packedLine, n)
	for i := range out {
		b := loader.Batch(0, i)
		labels := append([]int32{data.IgnoreIndex}, b.Targets[:b.T-1]...)
		out[i] = packedLine{b.InputIDs, labels, b.Positions, b.Segments, b.Packs[0]}
	}
	return out
}

// packedView is how data show --packing lays out and counts the data:
// train's --seq-len, --batch-size and --seed.
type packedView struct {
	seqLen, batchSize int
	seed              uint64
}

// showPacked prints the packed sequences of td's training data: with
// asJSON one line each, else a summary of what packing saves and the
// first limit sequences, example by example.
func showPacked(w io.Writer, td *trainData, v packedView, limit int, asJSON bool) error {
	seqLen := v.seqLen
	if seqLen < 2 || v.batchSize < 1 {
		return &usageError{msg: fmt.Sprintf("--packing needs --seq-len >= 2 and --batch-size >= 1 (got %d, %d)", seqLen, v.batchSize)}
	}
	packed, err := data.NewLoader(td.Train, data.LoaderConfig{BatchSize: 1, SeqLen: seqLen, Packing: true})
	if err != nil {
		return err
	}
	seqs := packedSequences(packed, limit)
	if asJSON {
		enc := json.NewEncoder(w)
		for _, s := range seqs {
			if err := enc.Encode(s); err != nil {
				return err
			}
		}
		return nil
	}
	fmt.Fprintln(w, "data: "+textdata.Summary(td.Train))
	fmt.Fprintln(w, packed.Stats().PackingMessage())
	for _, line := range packingGain(td.Train, v) {
		fmt.Fprintln(w, line)
	}
	for i, s := range seqs {
		fmt.Fprintf(w, "=== sequence %d: %d tokens, examples %v\n", i, len(s.InputIDs), s.Examples)
		at := 0
		for _, ex := range s.Examples {
			n := min(len(td.Train.Examples[ex].InputIDs), seqLen)
			part := data.Example{InputIDs: s.InputIDs[at : at+n], Labels: td.Train.Examples[ex].Labels[:n]}
			fmt.Fprintf(w, "--- %s (%d tokens, positions 0..%d)\n", td.Train.Examples[ex].Loc, n, n-1)
			showExample(w, td.Tok, part)
			at += n
		}
	}
	return nil
}

// packingGain compares the first epoch of ds as train shuffles it, at
// v's batch size, unpacked and packed (both padded to each batch's
// longest sequence, as train pads): batches (optimizer steps without
// --grad-accum) and padding tokens.
func packingGain(ds *data.Dataset, v packedView) []string {
	var lines []string
	for _, packing := range []bool{false, true} {
		l, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: v.batchSize, SeqLen: v.seqLen, Shuffle: true, Seed: v.seed, Packing: packing})
		if err != nil {
			return nil
		}
		slots, tokens := l.EpochSlots(0), l.Stats().Tokens
		name := "unpacked"
		if packing {
			name = "packed  "
		}
		lines = append(lines, fmt.Sprintf("%s: %d batches of %d per epoch; epoch 0 (shuffled, --seed %d): %d token positions, %d of them padding (%.1f%%)",
			name, l.BatchesPerEpoch(), v.batchSize, v.seed, slots, slots-tokens, 100*float64(slots-tokens)/float64(slots)))
	}
	return lines
}

// showExample prints the runs of trained and untrained tokens of ex.
func showExample(w io.Writer, tok tokenizer.Tokenizer, ex data.Example) {
	var b strings.Builder
	for start := 0; start < len(ex.InputIDs); {
		trained := ex.Labels[start] != data.IgnoreIndex
		end := start
		for end < len(ex.InputIDs) && (ex.Labels[end] != data.IgnoreIndex) == trained {
			end++
		}
		var text string
		if tok != nil {
			ids := make([]int, end-start)
			for i := range ids {
				ids[i] = int(ex.InputIDs[start+i])
			}
			text = tok.DecodeWithSpecial(ids)
		} else {
			parts := make([]string, end-start)
			for i := range parts {
				parts[i] = fmt.Sprint(ex.InputIDs[start+i])
			}
			text = "[" + strings.Join(parts, " ") + "]"
		}
		if trained {
			text = "⟦" + text + "⟧"
		}
		b.WriteString(text)
		start = end
	}
	fmt.Fprintln(w, b.String())
}
