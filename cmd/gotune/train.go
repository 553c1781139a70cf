package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"strings"

	"github.com/gotune/gotune/engine/runcard"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
)

func init() {
	register(&command{
		Name:            "train",
		Summary:         "fine-tune a model on a JSONL dataset",
		Run:             runTrain,
		OutOfMemoryHint: trainOutOfMemoryHint,
	})
}

const trainDescription = `
Fine-tunes a Hugging Face checkpoint folder (config.json plus
model.safetensors or a sharded model.safetensors.index.json) of a
LLaMA-family (Llama, Mistral, Qwen2) or GPT-2 model on a JSONL file, and
writes into --out:
  metrics.jsonl       one JSON object per optimizer step: step, loss (mean
                      over the step's counted tokens, before the update), lr,
                      grad_norm (before clipping), tokens, tokens_per_s,
                      elapsed_s, epoch, peak_mem_bytes (the most memory
                      the device's tensors held during the step: weights,
                      gradients, optimizer state and activations)
  loss.png            the loss curve
  config.json, model.safetensors
                      the trained model, loadable by Hugging Face transformers,
                      with the base model's tokenizer files; stored in the base
                      model's torch_dtype unless --save-dtype says otherwise,
                      and split into shards with model.safetensors.index.json
                      when larger than --max-shard-size
                      (an adapter --method writes its adapter folder instead)
  config.yaml         the resolved settings (defaults < --config < flags);
                      "gotune train --config OUT/config.yaml" reruns the run
  README.md, summary.json
                      the model card: base model, method and settings, data,
                      steps, final and best losses, eval loss, time, hardware,
                      the command; summary.json holds the same as JSON
  best/               with --keep-best: the model after the evaluation with
                      the lowest eval_loss (OUT itself holds the last step's)

` + textDataHelp + `
Sequences longer than --seq-len are truncated (the count is reported) and
batches are right-padded with ignored labels. Blank lines and unknown
fields are errors. The last batch of an epoch may be smaller.
--packing fills the sequences with several short examples each, packed once
at load by first-fit decreasing (--shuffle then permutes the packed
sequences): each token attends only to its own example's tokens (and a
--method prefix prefix), positions restart at 0 for each example, no
example's first token is predicted from the one before, and the loss is
the mean over the same tokens, so every example's loss and gradient are
those it has alone. Evaluation batches are not packed.

Config files: --config FILE reads settings from YAML or JSON, one key per
flag (its name with - or _: lora_r, batch-size) or LLaMA-Factory's name for
the same setting (model_name_or_path, finetuning_type lora|freeze|full,
lora_rank, lora_target (all = all-linear), learning_rate, num_train_epochs
(whole numbers), max_steps, per_device_train_batch_size,
gradient_accumulation_steps, cutoff_len, neat_packing (= packing),
lr_scheduler_type (linear, cosine,
constant, constant_with_warmup), warmup_ratio, output_dir, dataset and
eval_dataset (a path of a data file), dataset (entries of dataset_dir's
dataset_info.json, or a data file's path),
eval_steps, save_steps, logging_steps, bf16, load_best_model_at_end,
early_stopping_steps, ...). Flags on the command line win over the file.
Paths are relative to the working directory, as on the command line. An
unknown or repeated key is an error naming the file and line. See examples/.

Semantics follow PyTorch and the Hugging Face Trainer: the loss of a step is
the mean over all counted tokens of its --grad-accum micro-batches; AdamW
(decoupled weight decay, not applied to biases and norm weights); clipping
of the global gradient norm; the schedule's warmup starts at learning rate 0.
Ctrl-C stops after the current step and still saves.

Checkpoints and resuming: --save-every N writes --out/checkpoint-<step>/
every N optimizer steps (and on Ctrl-C): the model (or the adapter folder),
trainer_state.safetensors (the AdamW moments) and trainer_state.json (step,
data position, schedule, the settings that must match), the latter last.
A checkpoint is assembled in a hidden folder and renamed into place, so a
crash never leaves a half-written one. --save-total-limit K keeps the newest K.
--resume DIR continues a run exactly where a checkpoint left it: DIR is a
checkpoint-<step> folder, or an output folder whose newest complete
checkpoint is used. Give the same command line plus --resume: --model is
still the base model (its tokenizer, and for adapter methods its weights);
the trained weights come from the checkpoint (a full or freeze run loads
the checkpoint's model, an adapter method loads its adapter as
--init-adapter would). Settings that change the trajectory (--lr, the
schedule and its length, --batch-size, --grad-accum, --seed, --shuffle, the
tokenized data, method flags, ...) must match the checkpoint's; others
(--log-every, --out, --device, ...) only warn. metrics.jsonl keeps its lines
up to the checkpoint's step and is appended to.`

// trainFlags are the flags of "gotune train".
type trainFlags struct {
	modelDir, dataPath, method, device, out string
	precision                               string
	steps, epochs, batchSize, gradAccum     int
	seqLen, warmup, logEvery                int
	saveEvery, saveTotalLimit               int
	resume                                  string
	lr, weightDecay, beta1, beta2, eps      float64
	maxGradNorm, warmupRatio                float64
	keepBest                                bool
	earlyStoppingPatience, evalExactMatch   int
	config                                  string
	printConfig                             bool
	schedule                                string
	seed                                    uint64
	shuffle, gradCheckpoint, packing        bool
	overwrite                               bool
	zero                                    int
	text                                    textDataFlags
	save                                    saveFlags
}

// defaultSeqLen is --seq-len's default; it is lowered to the model's
// maximum when that is shorter.
const defaultSeqLen = finetune.DefaultSeqLen

func (f *trainFlags) define(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "read settings from a YAML or JSON `FILE` (keys: these flags' names, with - or _, or LLaMA-Factory's names; flags given here override it)")
	fs.BoolVar(&f.printConfig, "print-config", false, "print the resolved settings (defaults < --config < flags) as YAML and exit")
	fs.StringVar(&f.modelDir, "model", "", "`DIR` of the model to fine-tune, in Hugging Face layout (required)")
	fs.StringVar(&f.dataPath, "data", "", "training data `FILE`: JSONL in one of the formats below, or a .txt file (required)")
	fs.StringVar(&f.method, "method", "full", "fine-tuning `method`: "+methodNames()+" (full: all weights train)")
	fs.IntVar(&f.steps, "steps", 0, "number of optimizer steps; when > 0 it overrides --epochs")
	fs.IntVar(&f.epochs, "epochs", 1, "number of passes over the data (used when --steps is 0)")
	f.defineOptimizer(fs)
	fs.StringVar(&f.out, "out", "out", "output `DIR` (created if needed)")
	fs.IntVar(&f.saveEvery, "save-every", 0, "write a resumable checkpoint to --out/checkpoint-<step> every N optimizer steps (0: never)")
	fs.IntVar(&f.saveTotalLimit, "save-total-limit", 0, "keep only the newest K checkpoints (0: keep all)")
	fs.BoolVar(&f.overwrite, "overwrite", false, "train into an --out folder that holds a previous run: its contents are first moved to a new sibling folder OUT.old-N (nothing is deleted)")
	fs.StringVar(&f.resume, "resume", "", "continue training from a checkpoint `DIR` (a checkpoint-<step> folder, or an output folder: its newest complete checkpoint)")
	fs.BoolVar(&f.keepBest, "keep-best", false, "after each evaluation with a new lowest eval_loss, save the model into --out/"+train.BestDir+" (needs --eval-data; --out itself keeps the last step's model)")
	fs.IntVar(&f.evalExactMatch, "eval-exact-match", 0, "after training, score greedy exact match on the first N records of --eval-data (instruction or chat data) for the model card (0: off)")
	fs.IntVar(&f.earlyStoppingPatience, "early-stopping-patience", 0, "stop after N evaluations in a row without a new lowest eval_loss (needs --eval-data and --eval-every; 0: never)")
	fs.BoolVar(&f.packing, "packing", false, packingHelp)
	f.text.define(fs, true)
	f.text.defineRegistry(fs)
	f.save.define(fs, "weights of --method full or freeze")
}

// packingHelp describes --packing (train and data show).
const packingHelp = "pack several examples end to end into each sequence of --seq-len tokens (first-fit decreasing), with attention kept inside each example and positions restarting at 0: each example trains as it would alone, with less padding and fewer steps per epoch (LLaMA-Factory's neat_packing; not with --method prompt or ptuning)"

// defineOptimizer defines the flags of how a model trains (batches,
// optimizer, schedule, device, precision, progress), which every
// training command shares.
func (f *trainFlags) defineOptimizer(fs *flag.FlagSet) {
	fs.IntVar(&f.batchSize, "batch-size", 8, "sequences per micro-batch")
	fs.IntVar(&f.gradAccum, "grad-accum", 1, "micro-batches accumulated per optimizer step")
	fs.IntVar(&f.seqLen, "seq-len", defaultSeqLen, "maximum tokens per sequence; longer ones are truncated (if the flag is not given, capped at the model's max_position_embeddings)")
	fs.Float64Var(&f.lr, "lr", 5e-5, "peak learning rate")
	fs.StringVar(&f.schedule, "lr-schedule", "linear", "learning-rate schedule after warmup: constant, linear (decay to 0) or cosine")
	fs.IntVar(&f.warmup, "warmup-steps", 0, "steps of linear warmup from learning rate 0")
	fs.Float64Var(&f.warmupRatio, "warmup-ratio", 0, "warmup as a share of the run's steps (rounded up); excludes --warmup-steps")
	fs.Float64Var(&f.weightDecay, "weight-decay", 0, "AdamW decoupled weight decay (weight matrices and embeddings only)")
	fs.Float64Var(&f.beta1, "adam-beta1", 0.9, "AdamW beta1")
	fs.Float64Var(&f.beta2, "adam-beta2", 0.999, "AdamW beta2")
	fs.Float64Var(&f.eps, "adam-eps", 1e-8, "AdamW epsilon")
	fs.Float64Var(&f.maxGradNorm, "max-grad-norm", 1.0, "clip the global gradient norm to this value; 0 turns clipping off")
	fs.Uint64Var(&f.seed, "seed", 42, "random seed (data order; method initialisation)")
	fs.BoolVar(&f.shuffle, "shuffle", true, "shuffle the data each epoch with a seeded permutation; --shuffle=false keeps file order")
	fs.StringVar(&f.device, "device", "auto", deviceHelp)
	fs.IntVar(&f.zero, "zero", 0, zeroHelp)
	fs.BoolVar(&f.gradCheckpoint, "grad-checkpoint", false, "gradient checkpointing: keep only each layer's input and recompute its activations in the backward pass (activation memory of one layer instead of all, about one more forward pass of compute; gradients are bit-identical)")
	fs.StringVar(&f.precision, "precision", "auto", precisionHelp)
	fs.IntVar(&f.logEvery, "log-every", 10, "print a progress line every N steps (0: never)")
}

// optimizerConfig returns the trainer settings of the flags
// defineOptimizer defines (and --steps, --epochs), checked.
func (f *trainFlags) optimizerConfig() (train.Config, error) {
	schedule, err := train.ParseSchedule(f.schedule)
	if err != nil {
		return train.Config{}, &usageError{msg: "--lr-schedule: " + err.Error()}
	}
	c := train.Config{
		Steps: f.steps, Epochs: f.epochs, GradAccum: f.gradAccum,
		LR: f.lr, Schedule: schedule, WarmupSteps: f.warmup, WarmupRatio: f.warmupRatio,
		WeightDecay: f.weightDecay, Beta1: f.beta1, Beta2: f.beta2, Eps: f.eps,
		MaxGradNorm: f.maxGradNorm, LogEvery: f.logEvery,
	}
	if err := c.Validate(); err != nil {
		return train.Config{}, fieldUsageError(err, finetune.TrainOption, optionFlags)
	}
	return c, nil
}

func runTrain(ctx context.Context, e *env, args []string) (err error) {
	var f trainFlags
	fs := newFlagSet("train", "gotune train --model DIR --data FILE [flags]", trainDescription)
	f.define(fs)
	var qf quantizeFlags
	qf.define(fs)
	byMethod := methodFlagNames()
	mf := defineMethodFlags(fs)
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	set := setFlags(fs)
	if f.config != "" {
		if err := applyConfigFile(fs, f.config, set); err != nil {
			return err
		}
		set = setFlags(fs)
	}
	// The checks of flags the library does not see, and the cheap ones
	// --print-config must pass, before anything else.
	if !validDevice(f.device) {
		return &usageError{msg: fmt.Sprintf("unknown --device %q (want auto, cpu, cuda or cuda:N)", f.device)}
	}
	if err := checkPrecision(f.precision); err != nil {
		return err
	}
	if _, err := methodRegistry.Lookup(f.method, optionFlags); err != nil {
		return err
	}
	par, err := prepareParallel(&f) // torchrun, Slurm, Open MPI, gotune launch
	if err != nil {
		return err
	}
	defer par.removeTempOut()
	tcfg, err := f.optimizerConfig()
	if err != nil {
		return err
	}
	tcfg.SaveEvery, tcfg.SaveTotalLimit = f.saveEvery, f.saveTotalLimit
	tcfg.KeepBest, tcfg.EarlyStoppingPatience = f.keepBest, f.earlyStoppingPatience
	saveOpts, err := f.save.options()
	if err != nil {
		return err
	}
	rec := &trainRecorder{f: &f, fs: fs, args: args, own: byMethod[f.method], byMethod: byMethod}
	mo, err := mf.options(f.modelDir, f.seed)
	if err != nil {
		return err
	}
	o := finetune.JobOptions{
		MethodOptions: mo,
		Model:         f.modelDir, Method: f.method, Methods: methodRegistry,
		Data:      f.text.options(f.dataPath),
		Precision: f.precision, Train: tcfg, BatchSize: f.batchSize, Shuffle: f.shuffle, Packing: f.packing,
		GradCheckpoint: f.gradCheckpoint, Out: f.out, Overwrite: f.overwrite, Resume: f.resume,
		Save: saveOpts, EvalExactMatch: f.evalExactMatch, Log: e.Stdout, Warn: e.Stderr, Record: rec,
	}
	if o.Quantize, err = qf.options(); err != nil {
		return &usageError{msg: err.Error()}
	}
	if set["seq-len"] {
		// Given: used as it is; the default is capped at the model's.
		o.SeqLen = f.seqLen
		if f.seqLen < 2 {
			return &usageError{msg: fmt.Sprintf("--seq-len must be at least 2, got %d", f.seqLen)}
		}
	}
	if err := o.Check(); err != nil {
		return err
	}
	if f.printConfig {
		return writeResolvedConfig(e.Stdout, fs, rec.otherMethods(), nil)
	}
	be, err := openDevice(f.device, func(s string) { fmt.Fprintln(e.Stderr, s) })
	if err != nil {
		return err
	}
	defer be.Close()
	if err := par.join(ctx, be, e); err != nil {
		return err
	}
	defer func() { err = par.end(err) }() // before be.Close: the communicator uses the device
	o.Backend, o.Parallel = be, par.options()
	res, err := finetune.Run(ctx, o)
	if err != nil {
		return err
	}
	if res.Interrupted {
		return errInterrupted
	}
	return nil
}

// trainRecorder describes a "gotune train" run by its flags: the
// settings a checkpoint records (by flag name, so checkpoints of earlier
// versions resume), the model card's settings, and config.yaml.
type trainRecorder struct {
	f        *trainFlags
	fs       *flag.FlagSet
	args     []string
	own      map[string]bool            // the method's flags
	byMethod map[string]map[string]bool // every method's flags
}

// otherMethods returns the flags only other methods define.
func (r *trainRecorder) otherMethods() map[string]bool { return otherMethodFlags(r.byMethod, r.own) }

// Settings records every flag (see runSettings).
func (r *trainRecorder) Settings(seqLen int) []train.Setting {
	return runSettings(r.fs, r.own, r.byMethod, seqLen)
}

// Card lists the command line, the method's flags and the other flags
// that differ from their defaults (or always matter).
func (r *trainRecorder) Card(seqLen int, card *runcard.Card) {
	card.Command = "gotune train " + shellJoin(r.args)
	skip := r.otherMethods()
	r.fs.VisitAll(func(fl *flag.Flag) {
		v := fl.Value.String()
		if fl.Name == "seq-len" {
			v = fmt.Sprint(seqLen)
		}
		switch {
		case skip[fl.Name] || cardNever[fl.Name]:
		case r.own[fl.Name]:
			if v != "" {
				card.MethodSettings[fl.Name] = v
			}
		case cardAlways[fl.Name] || v != fl.DefValue:
			card.Settings[fl.Name] = v
		}
	})
}

// Started writes config.yaml (the resolved settings) into --out.
func (r *trainRecorder) Started(seqLen int) error {
	return saveResolvedConfig(r.f.out, r.fs, r.otherMethods(), map[string]any{"seq-len": seqLen})
}

// trainOutOfMemoryHint follows an out-of-device-memory error of "gotune
// train" (see finish): the flags that lower the memory a step needs.
const trainOutOfMemoryHint = "try --grad-checkpoint, a smaller --batch-size or --seq-len"

// harmlessFlags may differ between a run and its resumption without
// changing the training trajectory (the data flags are covered by the
// tokenized-data fingerprint; --steps and --epochs by the schedule
// length the trainer records; --model is the base, whose weights a full
// resume does not use).
var harmlessFlags = map[string]bool{
	"out": true, "log-every": true, "eval-every": true, "eval-data": true, "device": true, "grad-checkpoint": true,
	"save-every": true, "save-total-limit": true, "resume": true, "init-adapter": true, "overwrite": true,
	"model": true, "data": true, "format": true, "template": true, "tokenizer": true,
	"steps": true, "epochs": true, "save-dtype": true, "max-shard-size": true,
	"config": true, "print-config": true, "keep-best": true, "early-stopping-patience": true, "eval-exact-match": true,
	"zero": true,
}

// runSettings lists the settings a checkpoint records and a resume must
// match: every flag (flags of other methods, and those in harmlessFlags,
// only warn) and the effective --seq-len (the job adds a fingerprint of
// the tokenized training data).
func runSettings(fs *flag.FlagSet, own map[string]bool, byMethod map[string]map[string]bool, seqLen int) []train.Setting {
	other := otherMethodFlags(byMethod, own)
	var out []train.Setting
	fs.VisitAll(func(fl *flag.Flag) {
		v := fl.Value.String()
		if fl.Name == "seq-len" {
			v = fmt.Sprint(seqLen)
		}
		out = append(out, train.Setting{Name: "--" + fl.Name, Value: v, Harmless: harmlessFlags[fl.Name] || other[fl.Name] && !own[fl.Name]})
	})
	return out
}

// setFlags returns the names of the flags that were set (on the command
// line, or from --config).
func setFlags(fs *flag.FlagSet) map[string]bool {
	set := map[string]bool{}
	fs.Visit(func(fl *flag.Flag) { set[fl.Name] = true })
	return set
}

// otherMethodFlags returns the flags that only methods other than the one
// whose flags are own define.
func otherMethodFlags(byMethod map[string]map[string]bool, own map[string]bool) map[string]bool {
	other := map[string]bool{}
	for _, names := range byMethod {
		for n := range names {
			if !own[n] {
				other[n] = true
			}
		}
	}
	return other
}

// methodFlagNames returns the flags each method defines, found by
// defining them on a scratch flag set (before the real one, whose
// definitions reset the shared variables to their defaults again).
func methodFlagNames() map[string]map[string]bool {
	out := map[string]map[string]bool{}
	for name := range methodRegistry {
		out[name] = map[string]bool{}
		def := methodFlagDefs[name]
		if def == nil {
			continue
		}
		scratch := flag.NewFlagSet(name, flag.ContinueOnError)
		def(&methodFlagSet{opts: finetune.DefaultMethodOptions()}, scratch)
		scratch.VisitAll(func(fl *flag.Flag) { out[name][fl.Name] = true })
	}
	return out
}

func methodNames() string {
	return strings.Join(methodRegistry.Names(), ", ")
}
