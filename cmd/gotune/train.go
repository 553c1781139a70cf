package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/runcard"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/peft"
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

Config files: --config FILE reads settings from YAML or JSON, one key per
flag (its name with - or _: lora_r, batch-size) or LLaMA-Factory's name for
the same setting (model_name_or_path, finetuning_type lora|freeze|full,
lora_rank, lora_target (all = all-linear), learning_rate, num_train_epochs
(whole numbers), max_steps, per_device_train_batch_size,
gradient_accumulation_steps, cutoff_len, lr_scheduler_type (linear, cosine,
constant, constant_with_warmup), warmup_ratio, output_dir, dataset and
eval_dataset (paths of data files: dataset_info.json names are not read),
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
	shuffle, gradCheckpoint                 bool
	overwrite                               bool
	text                                    textDataFlags
	save                                    saveFlags
}

// defaultSeqLen is --seq-len's default; it is lowered to the model's
// maximum when that is shorter.
const defaultSeqLen = 512

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
	f.text.define(fs, true)
	f.save.define(fs, "weights of --method full or freeze")
}

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
		return train.Config{}, &usageError{msg: err.Error()}
	}
	return c, nil
}

// trainMethod is a --method of "gotune train". Each method lives in its
// own file and registers itself with registerMethod from init.
type trainMethod struct {
	// Name is the --method value.
	Name string
	// Flags, if set, defines the method's own flags (e.g. --lora-r) on the
	// train flag set, so they appear in "gotune train --help".
	Flags func(fs *flag.FlagSet)
	// Apply prepares a freshly loaded model: it marks what trains (adding
	// modules if the method has any) and returns what saves the result
	// into --out; nil means the whole model (full weights).
	Apply func(m model.Model, seed uint64) (train.Saver, error)
}

var methods = map[string]*trainMethod{}

// defineMethodFlags defines every method's own flags on fs.
func defineMethodFlags(fs *flag.FlagSet) {
	for _, name := range slices.Sorted(maps.Keys(methods)) {
		if methods[name].Flags != nil {
			methods[name].Flags(fs)
		}
	}
}

// registerMethod adds a --method.
func registerMethod(m *trainMethod) {
	if _, dup := methods[m.Name]; dup {
		panic("gotune: method " + m.Name + " registered twice")
	}
	methods[m.Name] = m
}

func init() {
	registerMethod(&trainMethod{
		Name:  "full",
		Flags: defineAdapterFlags,
		Apply: func(m model.Model, _ uint64) (train.Saver, error) {
			if initAdapterDir != "" {
				return nil, &usageError{msg: "--init-adapter: --method full trains the base weights and takes no adapter; merge it first (gotune merge) or train with the adapter's method"}
			}
			for _, p := range m.Params() {
				model.SetTrainable(p, true)
			}
			return nil, nil
		},
	})
}

func runTrain(ctx context.Context, e *env, args []string) error {
	var f trainFlags
	fs := newFlagSet("train", "gotune train --model DIR --data FILE [flags]", trainDescription)
	f.define(fs)
	var qf quantizeFlags
	qf.define(fs)
	methodFlags := methodFlagNames()
	defineMethodFlags(fs)
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

	// Check everything cheap before loading anything.
	switch {
	case f.modelDir == "":
		return &usageError{msg: "--model is required"}
	case f.dataPath == "":
		return &usageError{msg: "--data is required"}
	case f.out == "":
		return &usageError{msg: "--out must not be empty"}
	case f.batchSize < 1:
		return &usageError{msg: fmt.Sprintf("--batch-size must be at least 1, got %d", f.batchSize)}
	case f.seqLen < 2:
		return &usageError{msg: fmt.Sprintf("--seq-len must be at least 2, got %d", f.seqLen)}
	case f.keepBest && f.text.evalData == "":
		return &usageError{msg: "--keep-best needs --eval-data"}
	case f.evalExactMatch < 0:
		return &usageError{msg: fmt.Sprintf("--eval-exact-match must not be negative, got %d", f.evalExactMatch)}
	case f.evalExactMatch > 0 && f.text.evalData == "":
		return &usageError{msg: "--eval-exact-match needs --eval-data"}
	case f.earlyStoppingPatience > 0 && f.text.evalEvery == 0:
		return &usageError{msg: "--early-stopping-patience needs --eval-data and --eval-every"}
	}
	if !validDevice(f.device) {
		return &usageError{msg: fmt.Sprintf("unknown --device %q (want auto, cpu, cuda or cuda:N)", f.device)}
	}
	if _, err := engine.ParsePrecision(f.precision, false); err != nil {
		return &usageError{msg: err.Error()}
	}
	method, ok := methods[f.method]
	if !ok {
		return &usageError{msg: fmt.Sprintf("unknown --method %q (available: %s)", f.method, methodNames())}
	}
	tcfg, err := f.optimizerConfig()
	if err != nil {
		return err
	}
	tcfg.OutDir, tcfg.EvalEvery, tcfg.SaveEvery, tcfg.SaveTotalLimit = f.out, f.text.evalEveryConfig(), f.saveEvery, f.saveTotalLimit
	tcfg.KeepBest, tcfg.EarlyStoppingPatience = f.keepBest, f.earlyStoppingPatience
	if err := tcfg.Validate(); err != nil {
		return &usageError{msg: err.Error()}
	}
	schedule := tcfg.Schedule
	saveOpts, err := f.save.options()
	if err != nil {
		return err
	}
	otherMethods := otherMethodFlags(methodFlags, methodFlags[f.method])
	if f.printConfig {
		return writeResolvedConfig(e.Stdout, fs, otherMethods, nil)
	}
	if _, err := os.Stat(f.dataPath); err != nil {
		return fmt.Errorf("--data: %w", err)
	}
	if same, err := sameDir(f.modelDir, f.out); err == nil && same {
		return fmt.Errorf("--out %s is the model directory: saving would overwrite the model being trained; choose another --out", f.out)
	}
	lock, err := claimOutDir(f, e)
	if err != nil {
		return err
	}
	defer lock.Release()

	// --resume: find the checkpoint before anything heavy, and refuse a
	// different method at once.
	var ckpt string
	ckptAdapter := false
	if f.resume != "" {
		c, st, skipped, err := train.FindCheckpoint(f.resume)
		if err != nil {
			return fmt.Errorf("--resume: %w", err)
		}
		for _, s := range skipped {
			fmt.Fprintf(e.Stderr, "warning: --resume: skipping the incomplete checkpoint %s\n", s)
		}
		for _, s := range st.Settings {
			if s.Name == "--method" && s.Value != f.method {
				return fmt.Errorf("--resume %s: the checkpoint was trained with --method %s, not %s", c, s.Value, f.method)
			}
		}
		ckpt = c
		if _, err := os.Stat(filepath.Join(ckpt, peft.ConfigFile)); err == nil {
			ckptAdapter = true
			if initAdapterDir != "" {
				fmt.Fprintf(e.Stderr, "note: --init-adapter %s is ignored: the adapter comes from the checkpoint %s\n", initAdapterDir, ckpt)
			}
			initAdapterDir = ckpt
		}
		fmt.Fprintf(e.Stdout, "resuming from %s (step %d of %d)\n", ckpt, st.Step, st.TotalSteps)
	}

	hc, err := hfconfig.Load(f.modelDir)
	if err != nil {
		return err
	}
	seqLen := f.seqLen
	if seqLen > hc.MaxPos {
		switch {
		case !set["seq-len"]:
			seqLen = hc.MaxPos
		case hc.IsGPT2():
			return fmt.Errorf("--seq-len %d is longer than the model's %d positions (n_positions in %s)", f.seqLen, hc.MaxPos, filepath.Join(f.modelDir, "config.json"))
		default:
			fmt.Fprintf(e.Stderr, "warning: --seq-len %d is longer than the model's max_position_embeddings %d\n", f.seqLen, hc.MaxPos)
		}
	}

	// Data before weights: a bad line is reported without waiting for a
	// large checkpoint to load.
	td, err := f.text.openData(f.dataPath, f.modelDir, seqLen, hc.VocabSize, e.Stdout)
	if err != nil {
		return err
	}
	if f.evalExactMatch > 0 && !conversational(td.eval) {
		return fmt.Errorf("--eval-exact-match: %s is %s data, which has no answers to match (instruction or chat data has)", f.text.evalData, td.eval.Format)
	}
	ds := td.train
	padID := int32(0)
	if hc.PadTokenID != nil && *hc.PadTokenID >= 0 && *hc.PadTokenID < hc.VocabSize {
		padID = int32(*hc.PadTokenID)
	}
	loader, err := data.NewLoader(ds, data.LoaderConfig{
		BatchSize: f.batchSize, SeqLen: seqLen, Shuffle: f.shuffle, Seed: f.seed, PadID: padID,
	})
	if err != nil {
		return err
	}
	st := loader.Stats()
	fmt.Fprintf(e.Stdout, "data: %d sequences, %d tokens from %s; %d batches per epoch\n", ds.Len(), ds.Tokens(), f.dataPath, loader.BatchesPerEpoch())
	fmt.Fprintln(e.Stdout, st.TruncationMessage())
	if st.Skipped > 0 {
		fmt.Fprintf(e.Stderr, "warning: skipped %d of %d sequences with no token to train on (one token long, or every label after the first is -100)\n", st.Skipped, st.Sequences)
	}

	be, err := openDevice(f.device, func(s string) { fmt.Fprintln(e.Stderr, s) })
	if err != nil {
		return err
	}
	defer be.Close()
	// A resumed full or freeze run continues from the checkpoint's model;
	// an adapter method loads its adapter from the checkpoint in Apply
	// (initAdapterDir, set above) on top of the base --model.
	weightsDir := f.modelDir
	if ckpt != "" && !ckptAdapter {
		weightsDir = ckpt
	}
	// The precision is resolved before loading: under bf16 the weights are
	// stored in bfloat16 as they are read (model.Options.Storage).
	tcfg.Precision, _ = engine.ParsePrecision(f.precision, onGPU(be))
	fmt.Fprintf(e.Stdout, "precision: %s\n", tcfg.Precision)
	m, err := model.LoadWithOptions(weightsDir, be, model.Options{Storage: tcfg.Precision.ActDType()})
	if err != nil {
		return err
	}
	if err := qf.apply(m, f.method, e.Stdout); err != nil {
		return err
	}
	saver, err := method.Apply(m, f.seed)
	if err != nil {
		return err
	}
	m.SetGradCheckpoint(f.gradCheckpoint)
	if ckpt != "" && saver == nil && ckptAdapter {
		return fmt.Errorf("--resume %s: the checkpoint holds an adapter, but --method %s trains the model's own weights", ckpt, f.method)
	}
	if ckpt != "" && saver != nil && !ckptAdapter {
		return fmt.Errorf("--resume %s: the checkpoint holds a whole model (no %s), but --method %s trains an adapter", ckpt, peft.ConfigFile, f.method)
	}
	tcfg.Settings = runSettings(fs, methodFlags[f.method], methodFlags, seqLen, ds)
	baseFP, err := model.Fingerprint(f.modelDir)
	if err != nil {
		return err
	}
	tcfg.Settings = append(tcfg.Settings, train.Setting{Name: "base model (fingerprint of --model)", Value: baseFP})
	var ckptSaver, bestSaver train.Saver
	if saver == nil && f.saveEvery > 0 {
		// A full checkpoint is usable on its own, like the final save.
		ckptSaver = saverFunc(func(dir string) error {
			// Always float32, whatever --save-dtype says: these are the
			// exact weights a resumed run continues from.
			if err := m.SaveWithOptions(dir, model.SaveOptions{DType: "F32", MaxShardBytes: saveOpts.MaxShardBytes}); err != nil {
				return err
			}
			_, err := copyTokenizerFiles(f.modelDir, dir)
			return err
		})
	}
	fullWeights := saver == nil
	if fullWeights {
		// auto means the base --model's torch_dtype, also when the
		// weights were resumed from a (float32) checkpoint.
		if saveOpts, err = saveOpts.Resolve(hc.TorchDtype); err != nil {
			return &usageError{msg: err.Error()}
		}
		saver = fullSaver{m, saveOpts}
		// The best model is used on its own too: it gets the tokenizer.
		bestSaver = saverFunc(func(dir string) error {
			if err := saver.Save(dir); err != nil {
				return err
			}
			_, err := copyTokenizerFiles(f.modelDir, dir)
			return err
		})
	} else if set["save-dtype"] || set["max-shard-size"] {
		return &usageError{msg: fmt.Sprintf("--save-dtype and --max-shard-size apply to full-weight checkpoints (--method full or freeze); --method %s saves an adapter folder", f.method)}
	}
	evalFn, _, err := evalLossFunc(m, td.eval, f.batchSize, seqLen, padID)
	if err != nil {
		return err
	}
	tr, err := train.New(m, loader, tcfg, train.Options{Log: e.Stdout, Saver: saver, Eval: evalFn, CheckpointSaver: ckptSaver, BestSaver: bestSaver})
	if err != nil {
		return err
	}
	defer tr.Close()
	if err := checkOutSpace(tr, m, fullWeights, saveOpts, f.out, e); err != nil {
		return err
	}
	if ckpt != "" {
		info, err := tr.Resume(ckpt)
		if err != nil {
			return err
		}
		for _, w := range info.Warnings {
			fmt.Fprintf(e.Stderr, "warning: --resume: %s\n", w)
		}
	}
	fmt.Fprintf(e.Stdout, "model: %s (%s) on %s\n", f.modelDir, hc.Arch, be.Name())
	fmt.Fprintln(e.Stdout, train.ParamSummary(m.Params()))
	fmt.Fprintf(e.Stdout, "training: method %s, %d steps of %d×%d sequences of ≤%d tokens, lr %g (%s, %d warmup)\n",
		f.method, tr.TotalSteps(), f.gradAccum, f.batchSize, seqLen, f.lr, schedule, tr.WarmupSteps())
	if err := saveResolvedConfig(f.out, fs, otherMethods, map[string]any{"seq-len": seqLen}); err != nil {
		return err
	}

	res, err := tr.Run(ctx)
	if err != nil {
		return err
	}
	if n := len(res.CheckpointErrors); n > 0 {
		fmt.Fprintf(e.Stderr, "warning: %d checkpoint(s) could not be written (the first: %v); the final result was saved\n", n, res.CheckpointErrors[0])
	}
	if n := len(res.History); n > 0 {
		last := res.History[n-1]
		peak := ""
		if res.PeakMemBytes > 0 {
			peak = ", peak memory " + engine.FormatMiB(res.PeakMemBytes)
		}
		fmt.Fprintf(e.Stdout, "done: %d steps in %s, final loss %.6f%s\n", res.Steps, res.Elapsed.Round(time.Millisecond), last.Loss, peak)
	}
	what := "the adapter"
	if fullWeights {
		what = "the trained weights"
		if d := describeSaved(m, saveOpts, f.out); d != "" {
			what += " (" + d + ")"
		}
		// A full checkpoint is used on its own (gotune eval and generate
		// look for the tokenizer beside the weights), so it gets the base
		// model's tokenizer files, as gotune merge and Hugging Face's
		// Trainer.save_model do.
		n, err := copyTokenizerFiles(f.modelDir, f.out)
		if err != nil {
			return fmt.Errorf("saving the tokenizer files to %s: %w", f.out, err)
		}
		if n > 0 {
			what += fmt.Sprintf(" (with %d tokenizer files)", n)
		}
	}
	outputs := train.MetricsFile
	if len(res.History) > 0 { // no plot is drawn when no step ran
		outputs += ", " + train.LossPlotFile
	}
	var exact *generate.ExactMatchResult
	if f.evalExactMatch > 0 && !res.Interrupted {
		if exact, err = trainExactMatch(ctx, m, td, f.text.evalData, f.evalExactMatch); err != nil {
			return err
		}
		fmt.Fprintf(e.Stdout, "eval exact match: %d/%d = %.1f%% (greedy)\n", exact.Correct, exact.Total, 100*exact.Accuracy())
	}
	card := &trainCard{exactMatch: exact, f: &f, fs: fs, args: args, hc: hc, m: m, be: be, ds: ds, res: res, total: tr.TotalSteps(), seqLen: seqLen, adapter: !fullWeights,
		precision: tcfg.Precision, skip: otherMethods, own: methodFlags[f.method], resumed: ckpt != ""}
	if err := card.write(); err != nil {
		return err
	}
	outputs += ", " + configFileName + ", " + runcard.CardFile + " and " + runcard.SummaryFile
	fmt.Fprintf(e.Stdout, "saved %s, %s to %s\n", what, outputs, f.out)
	if res.BestStep > 0 && f.keepBest {
		fmt.Fprintf(e.Stdout, "best eval_loss %.6f after step %d: saved to %s\n", res.BestEvalLoss, res.BestStep, filepath.Join(f.out, train.BestDir))
	}
	if res.Interrupted {
		return errInterrupted
	}
	return nil
}

// claimOutDir creates --out, locks it for this run and makes sure it holds
// no other run: a folder with contents needs --resume (continue that run)
// or --overwrite (move them aside first). The lock is held until the
// command returns.
func claimOutDir(f trainFlags, e *env) (*fsutil.Lock, error) {
	if err := os.MkdirAll(f.out, 0o755); err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	lock, err := fsutil.LockDir(f.out)
	if err != nil {
		return nil, fmt.Errorf("--out: %w", err)
	}
	prev, err := train.PreviousRun(f.out, configFileName)
	if err != nil {
		lock.Release()
		return nil, fmt.Errorf("--out: %w", err)
	}
	switch {
	case len(prev) == 0 || f.resume != "":
		return lock, nil
	case f.overwrite:
		aside, err := fsutil.MoveAside(f.out, fsutil.LockFile)
		if err != nil {
			lock.Release()
			return nil, fmt.Errorf("--overwrite: %w", err)
		}
		fmt.Fprintf(e.Stderr, "note: --overwrite: moved the previous contents of %s to %s\n", f.out, aside)
		return lock, nil
	}
	lock.Release()
	shown := prev
	if len(shown) > 4 {
		shown = append(slices.Clone(shown[:4]), fmt.Sprintf("and %d more", len(prev)-4))
	}
	return nil, fmt.Errorf("--out %s already holds files (%s): add --resume %s to continue that run, or --overwrite to move them aside first (nothing is deleted)", f.out, strings.Join(shown, ", "), f.out)
}

// checkOutSpace estimates what the run will write into out (the result
// in its saved dtype, the checkpoints kept) and refuses to start when the
// disk cannot hold the result and one checkpoint; it warns when it cannot
// hold everything the run would keep.
func checkOutSpace(tr *train.Trainer, m model.Model, fullWeights bool, saveOpts model.SaveOptions, out string, e *env) error {
	var all, trainable int64
	for _, p := range m.Params() {
		all += int64(p.W.Len())
	}
	for _, p := range tr.Trainable() {
		trainable += int64(p.W.Len())
	}
	final, ckptWeights := 4*trainable, 4*trainable // an adapter, float32
	if fullWeights {
		size, _ := safetensors.DTypeSize(saveOpts.DType)
		final, ckptWeights = int64(size)*all, 4*all
	}
	warning, err := train.CheckDisk(out, tr.DiskNeed(final, ckptWeights))
	if err != nil {
		return fmt.Errorf("--out: %w", err)
	}
	if warning != "" {
		fmt.Fprintf(e.Stderr, "warning: --out: %s\n", warning)
	}
	return nil
}

// trainOutOfMemoryHint follows an out-of-device-memory error of "gotune
// train" (see finish): the flags that lower the memory a step needs.
const trainOutOfMemoryHint = "try --grad-checkpoint, a smaller --batch-size or --seq-len"

// saverFunc adapts a function to train.Saver.
type saverFunc func(dir string) error

func (f saverFunc) Save(dir string) error { return f(dir) }

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
}

// runSettings lists the settings a checkpoint records and a resume must
// match: every flag (flags of other methods, and those in harmlessFlags,
// only warn), the effective --seq-len, and a fingerprint of the tokenized
// training data.
func runSettings(fs *flag.FlagSet, own map[string]bool, byMethod map[string]map[string]bool, seqLen int, ds *data.Dataset) []train.Setting {
	other := otherMethodFlags(byMethod, own)
	var out []train.Setting
	fs.VisitAll(func(fl *flag.Flag) {
		v := fl.Value.String()
		if fl.Name == "seq-len" {
			v = fmt.Sprint(seqLen)
		}
		out = append(out, train.Setting{Name: "--" + fl.Name, Value: v, Harmless: harmlessFlags[fl.Name] || other[fl.Name] && !own[fl.Name]})
	})
	return append(out, train.Setting{Name: "training data (tokenized)", Value: train.DataFingerprint(ds)})
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
	for name, m := range methods {
		out[name] = map[string]bool{}
		if m.Flags == nil {
			continue
		}
		scratch := flag.NewFlagSet(name, flag.ContinueOnError)
		m.Flags(scratch)
		scratch.VisitAll(func(fl *flag.Flag) { out[name][fl.Name] = true })
	}
	return out
}

func methodNames() string {
	return strings.Join(slices.Sorted(maps.Keys(methods)), ", ")
}

// sameDir reports whether a and b name the same existing directory.
func sameDir(a, b string) (bool, error) {
	sa, err := os.Stat(a)
	if err != nil {
		return false, err
	}
	sb, err := os.Stat(b)
	if err != nil {
		return false, err
	}
	return os.SameFile(sa, sb), nil
}
