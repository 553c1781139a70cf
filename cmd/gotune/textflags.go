package main

import (
	"flag"
	"io"
	"strings"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/finetune"
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
                "value"}, ...], optional "system" and "tools"}
  chat          {"messages": [{"role": "system"|"user"|"assistant"|"tool", "content",
                optional "tool_calls", "tool_call_id", "name", "reasoning_content"}, ...],
                optional "tools"} (OpenAI's form)
  text          {"text"}, or a .txt file: packed into blocks of --seq-len tokens
  pretokenized  {"input_ids", optional "labels" (-100 = not trained on)}
Files may also be a JSON array of such records (.json) or Parquet (.parquet,
as the Hugging Face hub stores datasets). Instruction, sharegpt and chat data
are laid out with a chat template (--template) and train on the assistant's
replies (function calls included) only; a model's own template sees tools,
tool calls and reasoning as transformers passes them. Text trains on every
token.
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
type trainData = finetune.Data

// openData reads the training file (and --eval-data) in any format, for a
// model whose files are in modelPath with vocabulary vocab; seqLen is the
// block length text is packed into. Notes (the template chosen) go to log.
func (f *textDataFlags) openData(dataPath, modelPath string, seqLen, vocab int, log io.Writer) (*trainData, error) {
	return finetune.OpenData(f.options(dataPath), modelPath, seqLen, vocab, log, optionFlags)
}

// options returns the library's data options of the flags.
func (f *textDataFlags) options(dataPath string) finetune.DataOptions {
	return finetune.DataOptions{Train: dataPath, Dataset: f.dataset, DatasetDir: f.datasetDir, Eval: f.evalData, EvalEvery: f.evalEvery,
		Format: f.format, Template: f.template, Tokenizer: f.tokenizer}
}

// evalEveryConfig returns the trainer's Config.EvalEvery for the flags.
func (f *textDataFlags) evalEveryConfig() int { return f.options("").EvalEveryConfig() }
