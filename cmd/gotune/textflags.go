package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
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
	// dataset and datasetDir select entries of a LLaMA-Factory registry
	// (--dataset, --dataset-dir) instead of --data.
	dataset, datasetDir string
}

// textDataHelp describes the formats for command descriptions.
const textDataHelp = `Data formats (JSONL, one object a line; detected from the first line's keys,
or chosen with --format):
  instruction   {"instruction", "output", optional "input", "system" and
                "history": [[prompt, response], ...]} (alpaca)
  sharegpt      {"conversations": [{"from": "human"|"gpt"|"system"|"function_call"|"observation",
                "value"}, ...], optional "system"}
  chat          {"messages": [{"role": "system"|"user"|"assistant", "content"}, ...]}
  text          {"text"}, or a .txt file: packed into blocks of --seq-len tokens
  pretokenized  {"input_ids", optional "labels" (-100 = not trained on)}
Files may also be a JSON array of such records (.json) or Parquet (.parquet,
as the Hugging Face hub stores datasets). Instruction, sharegpt and chat data
are laid out with a chat template (--template) and train on the assistant's
replies (function calls included) only; text trains on every token.
--dataset a,b --dataset-dir DIR reads entries of DIR/dataset_info.json as
LLaMA-Factory does (file_name, formatting alpaca|sharegpt, columns, tags).`

func (f *textDataFlags) define(fs *flag.FlagSet, withEval bool) {
	fs.StringVar(&f.format, "format", textdata.Auto, "data format: "+strings.Join(textdata.FormatNames(), ", ")+" (auto: from the first line's keys; .txt files are text)")
	fs.StringVar(&f.template, "template", "auto", "chat template for instruction and chat data: auto (the model's own chat_template from tokenizer_config.json, rendered as transformers does; plain when it has none), a template `FILE`.jinja, or a built-in one: "+strings.Join(chat.Names(), ", "))
	fs.StringVar(&f.tokenizer, "tokenizer", "", "tokenizer `PATH` for text data: tokenizer.json, a folder holding one, or a llama2.c tokenizer.bin (default: the model's)")
	if withEval {
		fs.StringVar(&f.evalData, "eval-data", "", "validation data `FILE` (same formats); its loss is reported as eval_loss")
		fs.IntVar(&f.evalEvery, "eval-every", 0, "evaluate on --eval-data every N steps (0: after the last step only)")
	}
}

// defineRegistry adds --dataset and --dataset-dir (commands that read
// their data only through openData: train, data show).
func (f *textDataFlags) defineRegistry(fs *flag.FlagSet) {
	fs.StringVar(&f.dataset, "dataset", "", "comma-separated `NAMES` of datasets in --dataset-dir's dataset_info.json (LLaMA-Factory's registry), read instead of --data (a path of a data file also works)")
	fs.StringVar(&f.datasetDir, "dataset-dir", "data", "folder `DIR` holding dataset_info.json, for --dataset")
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
	if f.template != "" && f.template != "auto" && !chat.IsFile(f.template) {
		if _, err := chat.Lookup(f.template); err != nil {
			return nil, &usageError{msg: "--template: " + err.Error()}
		}
	}
	dataPath, err := f.dataSource(dataPath)
	if err != nil {
		return nil, err
	}
	var paths []string
	if dataPath != "" {
		paths = append(paths, dataPath)
	}
	if f.evalData != "" {
		paths = append(paths, f.evalData)
	}
	needTok := f.tokenizer != "" || dataPath == ""
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
	if dataPath == "" {
		td.train, err = textdata.OpenRegistry(f.datasetDir, strings.Split(f.dataset, ","), opts)
	} else {
		td.train, err = textdata.Open(dataPath, opts)
	}
	if err != nil {
		return nil, err
	}
	if f.evalData != "" {
		if td.eval, err = textdata.Open(f.evalData, opts); err != nil {
			return nil, fmt.Errorf("--eval-data: %w", err)
		}
	}
	return td, nil
}

// dataSource returns the data file to read: dataPath (--data), or
// --dataset when it names an existing file; "" means --dataset's
// registry entries.
func (f *textDataFlags) dataSource(dataPath string) (string, error) {
	switch {
	case f.dataset == "":
		if dataPath == "" {
			return "", &usageError{msg: "--data or --dataset is required"}
		}
		return dataPath, nil
	case dataPath != "":
		return "", &usageError{msg: "--data and --dataset are alternatives; give one"}
	}
	if st, err := os.Stat(f.dataset); err == nil && !st.IsDir() {
		return f.dataset, nil
	}
	return "", nil
}

// describe names the training data for messages and the model card.
func (f *textDataFlags) describe(dataPath string) string {
	if dataPath != "" {
		return dataPath
	}
	return f.dataset + " (" + filepath.Join(f.datasetDir, textdata.RegistryFile) + ")"
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
