package finetune

import (
	"context"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/engine/train"
)

// DataOptions say what a job trains and evaluates on.
type DataOptions struct {
	// Train is the training data file (JSONL, a JSON array or Parquet in a
	// textdata format, or .txt). Empty: the Dataset registry entries.
	Train string
	// Dataset, instead of Train, names entries of DatasetDir's
	// dataset_info.json (LLaMA-Factory's registry), comma-separated; a
	// path of an existing data file also works.
	Dataset string
	// DatasetDir is the folder holding dataset_info.json.
	DatasetDir string
	// Eval, if set, is validation data; its loss is reported as eval_loss.
	Eval string
	// EvalEvery evaluates every N steps (0: after the last step only).
	EvalEvery int
	// Format is a textdata format name, or "" / textdata.Auto.
	Format string
	// Template is "" / "auto" (the model's own chat_template, else plain),
	// a template FILE.jinja, or a built-in name.
	Template string
	// Tokenizer is the tokenizer's path (default: the model's).
	Tokenizer string
}

// Data is what OpenData read.
type Data struct {
	Train, Eval *data.Dataset
	Tok         tokenizer.Tokenizer // nil for pre-tokenized data without a tokenizer
	Tmpl        chat.Template       // nil unless instruction or chat data was read
}

// OpenData reads o.Train (and o.Eval) in any format, for a model whose
// files are in modelPath with vocabulary vocab; seqLen is the block
// length text is packed into. Notes (the template chosen) go to log.
// Options are named in errors through names.
func OpenData(o DataOptions, modelPath string, seqLen, vocab int, log io.Writer, names Names) (*Data, error) {
	if o.EvalEvery < 0 {
		return nil, optionErrorf("Data.EvalEvery", "%s must not be negative, got %d", names.Of("Data.EvalEvery"), o.EvalEvery)
	}
	if o.EvalEvery > 0 && o.Eval == "" {
		return nil, optionErrorf("Data.EvalEvery", "%s needs %s", names.Of("Data.EvalEvery"), names.Of("Data.Eval"))
	}
	// Check the template's name even when the data (pre-tokenized) does
	// not use it, so a typo is reported rather than silently ignored.
	if o.Template != "" && o.Template != "auto" && !chat.IsFile(o.Template) {
		if _, err := chat.Lookup(o.Template); err != nil {
			return nil, optionErrorf("Data.Template", "%s: %v", names.Of("Data.Template"), err)
		}
	}
	trainPath, err := o.source(names)
	if err != nil {
		return nil, err
	}
	var paths []string
	if trainPath != "" {
		paths = append(paths, trainPath)
	}
	if o.Eval != "" {
		paths = append(paths, o.Eval)
	}
	needTok := o.Tokenizer != "" || trainPath == ""
	for _, p := range paths {
		format := o.Format
		if format == "" || format == textdata.Auto {
			var err error
			if format, err = textdata.Detect(p); err != nil {
				return nil, FieldOptionError(err, dataOption, names)
			}
		}
		needTok = needTok || format != textdata.Pretokenized
	}
	td := &Data{}
	opts := textdata.Options{Format: o.Format, SeqLen: seqLen, VocabSize: vocab}
	if needTok {
		var err error
		if td.Tok, err = LoadTokenizer(o.Tokenizer, modelPath, names); err != nil {
			return nil, err
		}
		tmpl, note, err := ChooseTemplate(o.Template, td.Tok, names)
		if err != nil {
			return nil, err
		}
		opts.Tokenizer, opts.Template = td.Tok, tmpl
		td.Tmpl = tmpl
		defer func() {
			if td.Train != nil && textdata.IsConversational(td.Train.Format) {
				fmt.Fprintln(log, note)
			}
		}()
	}
	if trainPath == "" {
		td.Train, err = textdata.OpenRegistry(o.DatasetDir, strings.Split(o.Dataset, ","), opts)
	} else {
		td.Train, err = textdata.Open(trainPath, opts)
	}
	if err != nil {
		return nil, FieldOptionError(err, dataOption, names)
	}
	if o.Eval != "" {
		if td.Eval, err = textdata.Open(o.Eval, opts); err != nil {
			if _, ok := fielderr.As(err); ok {
				return nil, FieldOptionError(err, dataOption, names)
			}
			return nil, fmt.Errorf("%s: %w", names.Of("Data.Eval"), err)
		}
	}
	return td, nil
}

// dataOption maps textdata.Options' fields (Format, Template, Tokenizer)
// to the options that set them.
var dataOption = optionsOf("Data", nil)

// source returns the data file to read: Train, or Dataset when it names
// an existing file; "" means Dataset's registry entries.
func (o DataOptions) source(names Names) (string, error) {
	switch {
	case o.Dataset == "":
		if o.Train == "" {
			return "", optionErrorf("Data.Train", "%s or %s is required", names.Of("Data.Train"), names.Of("Data.Dataset"))
		}
		return o.Train, nil
	case o.Train != "":
		return "", optionErrorf("Data.Dataset", "%s and %s are alternatives; give one", names.Of("Data.Train"), names.Of("Data.Dataset"))
	}
	if st, err := os.Stat(o.Dataset); err == nil && !st.IsDir() {
		return o.Dataset, nil
	}
	return "", nil
}

// Describe names the training data for messages and the model card.
func (o DataOptions) Describe() string {
	if o.Train != "" {
		return o.Train
	}
	return o.Dataset + " (" + filepath.Join(o.DatasetDir, textdata.RegistryFile) + ")"
}

// LoadTokenizer loads the tokenizer at path, or when it is empty the
// tokenizer next to the model: in a Hugging Face folder (tokenizer.json),
// or in the folder of a llama2.c checkpoint (tokenizer.bin or a single
// tok*.bin).
func LoadTokenizer(path, modelPath string, names Names) (tokenizer.Tokenizer, error) {
	if path != "" {
		tok, err := tokenizer.Load(path)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", names.Of("Data.Tokenizer"), err)
		}
		return tok, nil
	}
	dir := modelPath
	if info, err := os.Stat(modelPath); err == nil && !info.IsDir() {
		dir = filepath.Dir(modelPath)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("no tokenizer found with the model (%v); pass %s PATH", err, names.Of("Data.Tokenizer"))
	}
	return tok, nil
}

// ChooseTemplate returns the chat template name says ("" or "auto": the
// model's own chat template, else plain; a FILE.jinja; or a built-in
// name) with a note saying which it is.
func ChooseTemplate(name string, tok tokenizer.Tokenizer, names Names) (chat.Template, string, error) {
	t, note, err := chat.Resolve(name, tok, names.Of("Data.Template"))
	if err != nil && !chat.IsFile(name) && name != "" && name != "auto" {
		return nil, "", optionErrorf("Data.Template", "%s: %v", names.Of("Data.Template"), err)
	}
	return t, note, err
}

// EvalEveryConfig returns the trainer's Config.EvalEvery for o:
// EvalEvery, or "after the last step only" (a period no run reaches)
// when Eval is given without it.
func (o DataOptions) EvalEveryConfig() int {
	switch {
	case o.Eval == "":
		return 0
	case o.EvalEvery > 0:
		return o.EvalEvery
	default:
		return math.MaxInt32
	}
}

// EvalLossFunc returns a trainer EvalFunc reporting the mean token loss
// of ds as "eval_loss" (batches in file order, truncated to seqLen like
// the training data), or nil when ds is nil.
func EvalLossFunc(m engine.CausalLM, ds *data.Dataset, batchSize, seqLen int, padID int32) (train.EvalFunc, *data.Loader, error) {
	if ds == nil {
		return nil, nil, nil
	}
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: batchSize, SeqLen: seqLen, PadID: padID})
	if err != nil {
		return nil, nil, err
	}
	return func(ctx context.Context, step int) (map[string]float64, error) {
		loss, _, err := train.EvalLoss(m, loader)
		if err != nil {
			return nil, err
		}
		return map[string]float64{train.EvalLossMetric: loss}, nil
	}, loader, nil
}
