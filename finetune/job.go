package finetune

import (
	"io"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/quant"
	"github.com/gotune/gotune/engine/runcard"
	"github.com/gotune/gotune/engine/train"
)

// DefaultSeqLen is the sequence length when JobOptions.SeqLen is 0 (or
// the model's maximum, when that is shorter).
const DefaultSeqLen = 512

// ConfigFile is the resolved-settings file a caller may write into Out
// (the CLI's config.yaml); with an empty metrics file it alone does not
// make Out a previous run.
const ConfigFile = "config.yaml"

// JobOptions describe a fine-tuning run: what Run does with them is what
// "gotune train" does with its flags (which map onto these fields).
type JobOptions struct {
	// MethodOptions: the method's settings, Seed (also the data order's),
	// InitAdapter, Explicit and Names.
	MethodOptions

	// Model is the base model's folder (Hugging Face layout).
	Model string
	// Method names the method in Methods (nil: the built-in Methods()).
	Method  string
	Methods Registry
	// Data is what the run trains and evaluates on.
	Data DataOptions
	// Backend computes (nil: the CPU backend). Run does not close it.
	Backend engine.Backend
	// Precision is bf16, fp32 or auto ("": auto = bf16 on CUDA).
	Precision string
	// Train holds the optimizer, schedule and length (Steps or Epochs),
	// checkpoints (SaveEvery, SaveTotalLimit), KeepBest and
	// EarlyStoppingPatience; Run sets OutDir, EvalEvery, Precision and
	// Settings.
	Train train.Config
	// BatchSize is sequences per micro-batch; SeqLen the most tokens per
	// sequence (0: DefaultSeqLen, capped at the model's maximum).
	BatchSize, SeqLen int
	// Shuffle the data each epoch (seeded by Seed).
	Shuffle bool
	// Packing lays several examples end to end in each sequence of
	// SeqLen tokens (first-fit decreasing, fixed at load) with attention
	// kept inside each example and positions restarting at 0, so each
	// example trains as it would alone with less padding and fewer steps
	// per epoch (LLaMA-Factory's neat_packing; see data.Pack). Methods
	// with virtual tokens in front of each sequence refuse it. Evaluation
	// batches are not packed.
	Packing bool
	// GradCheckpoint recomputes activations in the backward pass.
	GradCheckpoint bool
	// Quantize quantizes the frozen base at load as bitsandbytes does
	// (QLoRA); Format quant.None (the zero value) keeps it as it is.
	// Methods that train the base weights (full, freeze) refuse it.
	Quantize quant.Options
	// Out is the output folder. It is locked for the run; holding a
	// previous run it needs Resume or Overwrite (moved aside to
	// Out.old-N).
	Out       string
	Overwrite bool
	// Resume is a checkpoint folder, or an output folder whose newest
	// complete checkpoint the run continues from.
	Resume string
	// Save stores full weights (methods that train the model's own).
	Save model.SaveOptions
	// EvalExactMatch scores greedy exact match on the first N records of
	// Data.Eval after training (0: off).
	EvalExactMatch int
	// Log receives progress; Warn warnings and notes (nil: discarded).
	Log, Warn io.Writer
	// Parallel, if set, trains data-parallel across its communicator's
	// ranks (engine/train); only rank 0 reports and saves.
	Parallel *train.Parallel
	// Record names the run's settings for checkpoints and the model card
	// (nil: Run's own description of these options).
	Record Recorder
}

// Recorder describes a run in its caller's terms; the CLI's records its
// flags.
type Recorder interface {
	// Settings lists what a checkpoint records and a resume must match,
	// besides the tokenized data and base model fingerprints Run adds; it
	// must include the method under the name Names gives "Method".
	Settings(seqLen int) []train.Setting
	// Card fills the model card's Command, Settings and MethodSettings.
	Card(seqLen int, c *runcard.Card)
	// Started is called when everything is loaded and checked, just
	// before the first step.
	Started(seqLen int) error
}

// Result is what a finished (or interrupted) job did.
type Result struct {
	*train.Result
	// SeqLen is the sequence length the run used.
	SeqLen int
	// TotalSteps is the run's length in optimizer steps.
	TotalSteps int
	// Adapter reports whether Out holds an adapter (else full weights).
	Adapter bool
	// ExactMatch is the EvalExactMatch score (nil when not asked for).
	ExactMatch *generate.ExactMatchResult
}

// name returns how messages name option.
func (o *JobOptions) name(option string) string { return o.Names.Of(option) }

// Check validates the options that need no file (Run calls it first):
// an *OptionError names the first wrong one.
func (o *JobOptions) Check() error {
	switch {
	case o.Model == "":
		return optionErrorf("Model", "%s is required", o.name("Model"))
	case o.Data.Train == "" && o.Data.Dataset == "":
		return optionErrorf("Data.Train", "%s or %s is required", o.name("Data.Train"), o.name("Data.Dataset"))
	case o.Out == "":
		return optionErrorf("Out", "%s must not be empty", o.name("Out"))
	case o.BatchSize < 1:
		return optionErrorf("BatchSize", "%s must be at least 1, got %d", o.name("BatchSize"), o.BatchSize)
	case o.SeqLen != 0 && o.SeqLen < 2:
		return optionErrorf("SeqLen", "%s must be at least 2, got %d", o.name("SeqLen"), o.SeqLen)
	case o.Train.KeepBest && o.Data.Eval == "":
		return optionErrorf("Train.KeepBest", "%s needs %s", o.name("Train.KeepBest"), o.name("Data.Eval"))
	case o.EvalExactMatch < 0:
		return optionErrorf("EvalExactMatch", "%s must not be negative, got %d", o.name("EvalExactMatch"), o.EvalExactMatch)
	case o.EvalExactMatch > 0 && o.Data.Eval == "":
		return optionErrorf("EvalExactMatch", "%s needs %s", o.name("EvalExactMatch"), o.name("Data.Eval"))
	case o.Train.EarlyStoppingPatience > 0 && o.Data.EvalEvery == 0:
		return optionErrorf("Train.EarlyStoppingPatience", "%s needs %s and %s", o.name("Train.EarlyStoppingPatience"), o.name("Data.Eval"), o.name("Data.EvalEvery"))
	}
	if err := o.checkPacking(); err != nil {
		return err
	}
	if _, err := engine.ParsePrecision(o.Precision, false); err != nil {
		return optionErrorf("Precision", "%s %q: want bf16, fp32 or auto", o.name("Precision"), o.Precision)
	}
	return nil
}

// checkPacking refuses Packing with a method that puts virtual tokens in
// front of every sequence.
func (o *JobOptions) checkPacking() error {
	methods := o.Methods
	if methods == nil {
		methods = Methods()
	}
	if m, ok := methods[o.Method]; ok && o.Packing && m.VirtualTokens {
		return optionErrorf("Packing", "%s cannot be used with %s %s: its virtual tokens sit in front of each sequence, and packed examples would share them (%s prefix keeps its prefix visible to every packed example)", o.name("Packing"), o.name("Method"), o.Method, o.name("Method"))
	}
	return nil
}
