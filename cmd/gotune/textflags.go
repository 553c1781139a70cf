package main

import (
	"flag"
	"github.com/gotune/gotune/finetune"
	"io"
	"strings"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/textdata"
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
type trainData = finetune.Data

// openData reads the training file (and --eval-data) in any format, for a
// model whose files are in modelPath with vocabulary vocab; seqLen is the
// block length text is packed into. Notes (the template chosen) go to log.
func (f *textDataFlags) openData(dataPath, modelPath string, seqLen, vocab int, log io.Writer) (*trainData, error) {
	return finetune.OpenData(f.options(dataPath), modelPath, seqLen, vocab, log, optionFlags)
}

// options returns the library's data options of the flags.
func (f *textDataFlags) options(dataPath string) finetune.DataOptions {
	return finetune.DataOptions{Train: dataPath, Eval: f.evalData, EvalEvery: f.evalEvery,
		Format: f.format, Template: f.template, Tokenizer: f.tokenizer}
}

// evalEveryConfig returns the trainer's Config.EvalEvery for the flags.
func (f *textDataFlags) evalEveryConfig() int { return f.options("").EvalEveryConfig() }
