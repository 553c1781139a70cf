package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/engine/train"
)

// textDataFlags are the dataset flags of "gotune train" (and eval) for
// data in text formats: --format, --template, --tokenizer, --eval-data,
// --eval-every.
type textDataFlags struct {
	format, template, tokenizer, evalData string
	evalEvery                             int
}

// textDataHelp describes the formats for command descriptions.
const textDataHelp = `Data formats (JSONL, one object a line; detected from the first line's keys,
or chosen with --format):
  instruction   {"instruction", "output", optional "input" and "system"}
  chat          {"messages": [{"role": "system"|"user"|"assistant", "content"}, ...]}
  text          {"text"}, or a .txt file: packed into blocks of --seq-len tokens
  pretokenized  {"input_ids", optional "labels" (-100 = not trained on)}
Instruction and chat data are laid out with a chat template (--template) and
train on the assistant's replies only; text trains on every token.`

func (f *textDataFlags) define(fs *flag.FlagSet, withEval bool) {
	fs.StringVar(&f.format, "format", textdata.Auto, "data format: "+strings.Join(textdata.FormatNames(), ", ")+" (auto: from the first line's keys; .txt files are text)")
	fs.StringVar(&f.template, "template", "auto", "chat template for instruction and chat data: auto (from the tokenizer's chat_template, else plain), "+strings.Join(chat.Names(), ", "))
	fs.StringVar(&f.tokenizer, "tokenizer", "", "tokenizer `PATH` for text data: tokenizer.json, a folder holding one, or a llama2.c tokenizer.bin (default: the model's)")
	if withEval {
		fs.StringVar(&f.evalData, "eval-data", "", "validation data `FILE` (same formats); its loss is reported as eval_loss")
		fs.IntVar(&f.evalEvery, "eval-every", 0, "evaluate on --eval-data every N steps (0: after the last step only)")
	}
}

// trainData is what openData read.
type trainData struct {
	train, eval *data.Dataset
	tok         tokenizer.Tokenizer // nil for pre-tokenized data without --tokenizer
	tmpl        chat.Template       // nil unless instruction or chat data was read
}

// openData reads the training file (and --eval-data) in any format, for a
// model whose files are in modelPath with vocabulary vocab; seqLen is the
// block length text is packed into. Notes (the template chosen) go to log.
func (f *textDataFlags) openData(dataPath, modelPath string, seqLen, vocab int, log io.Writer) (*trainData, error) {
	if f.evalEvery < 0 {
		return nil, &usageError{msg: fmt.Sprintf("--eval-every must not be negative, got %d", f.evalEvery)}
	}
	if f.evalEvery > 0 && f.evalData == "" {
		return nil, &usageError{msg: "--eval-every needs --eval-data"}
	}
	// Check --template's name even when the data (pre-tokenized) does not
	// use it, so a typo is reported rather than silently ignored.
	if f.template != "" && f.template != "auto" {
		if _, err := chat.Lookup(f.template); err != nil {
			return nil, &usageError{msg: "--template: " + err.Error()}
		}
	}
	paths := []string{dataPath}
	if f.evalData != "" {
		paths = append(paths, f.evalData)
	}
	needTok := f.tokenizer != ""
	for _, p := range paths {
		format := f.format
		if format == "" || format == textdata.Auto {
			var err error
			if format, err = textdata.Detect(p); err != nil {
				return nil, err
			}
		}
		needTok = needTok || format != textdata.Pretokenized
	}
	td := &trainData{}
	opts := textdata.Options{Format: f.format, SeqLen: seqLen, VocabSize: vocab}
	if needTok {
		var err error
		if td.tok, err = loadTokenizer(f.tokenizer, modelPath); err != nil {
			return nil, err
		}
		tmpl, note, err := chooseTemplate(f.template, td.tok)
		if err != nil {
			return nil, err
		}
		opts.Tokenizer, opts.Template = td.tok, tmpl
		td.tmpl = tmpl
		defer func() {
			if td.train != nil && textdata.IsConversational(td.train.Format) {
				fmt.Fprintln(log, note)
			}
		}()
	}
	var err error
	if td.train, err = textdata.Open(dataPath, opts); err != nil {
		return nil, err
	}
	if f.evalData != "" {
		if td.eval, err = textdata.Open(f.evalData, opts); err != nil {
			return nil, fmt.Errorf("--eval-data: %w", err)
		}
	}
	return td, nil
}

// evalEveryConfig returns the trainer's Config.EvalEvery for the flags:
// --eval-every, or "after the last step only" (a period no run reaches)
// when --eval-data is given without it.
func (f *textDataFlags) evalEveryConfig() int {
	switch {
	case f.evalData == "":
		return 0
	case f.evalEvery > 0:
		return f.evalEvery
	default:
		return math.MaxInt32
	}
}

// evalLossFunc returns a trainer EvalFunc reporting the mean token loss
// of ds as "eval_loss" (batches in file order, truncated to seqLen like
// the training data), or nil when ds is nil.
func evalLossFunc(m engine.CausalLM, ds *data.Dataset, batchSize, seqLen int, padID int32) (train.EvalFunc, *data.Loader, error) {
	if ds == nil {
		return nil, nil, nil
	}
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: batchSize, SeqLen: seqLen, PadID: padID})
	if err != nil {
		return nil, nil, fmt.Errorf("--eval-data: %w", err)
	}
	return func(ctx context.Context, step int) (map[string]float64, error) {
		loss, _, err := train.EvalLoss(m, loader)
		if err != nil {
			return nil, err
		}
		return map[string]float64{train.EvalLossMetric: loss}, nil
	}, loader, nil
}
