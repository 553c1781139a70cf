package main

import (
	"flag"
	"strings"

	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/finetune"
)

// optionFlags names the library's options (package finetune, by field
// path) by the flags that set them: the library's errors and messages
// name options through it, so the CLI's name flags. It is also read
// backwards (explicitOptions): the flags given are the options given.
var optionFlags = finetune.Names{
	"Method": "--method", "InitAdapter": "--init-adapter", "Seed": "--seed",

	"Model": "--model", "Quantize": "--quantize", "Data.Train": "--data", "Data.Dataset": "--dataset", "Data.DatasetDir": "--dataset-dir", "Data.Eval": "--eval-data", "Data.EvalEvery": "--eval-every",
	"Data.Format": "--format", "Data.Template": "--template", "Data.Tokenizer": "--tokenizer",
	"Out": "--out", "Overwrite": "--overwrite", "Resume": "--resume", "BatchSize": "--batch-size", "SeqLen": "--seq-len",
	"Shuffle": "--shuffle", "Packing": "--packing", "GradCheckpoint": "--grad-checkpoint", "Precision": "--precision",
	"Train.KeepBest": "--keep-best", "Train.EarlyStoppingPatience": "--early-stopping-patience",
	"Train.Steps": "--steps", "Train.Epochs": "--epochs", "Train.GradAccum": "--grad-accum",
	"Train.LR": "--lr", "Train.Schedule": "--lr-schedule", "Train.WarmupSteps": "--warmup-steps", "Train.WarmupRatio": "--warmup-ratio",
	"Train.WeightDecay": "--weight-decay", "Train.Beta1": "--adam-beta1", "Train.Beta2": "--adam-beta2", "Train.Eps": "--adam-eps",
	"Train.MaxGradNorm": "--max-grad-norm", "Train.LogEvery": "--log-every",
	"Train.SaveEvery": "--save-every", "Train.SaveTotalLimit": "--save-total-limit", "Parallel.Zero": "--zero",
	"EvalExactMatch": "--eval-exact-match", "Save.DType": "--save-dtype", "Save.MaxShardBytes": "--max-shard-size",

	"LoRA.Rank": "--lora-r", "LoRA.Alpha": "--lora-alpha", "LoRA.Dropout": "--lora-dropout",
	"LoRA.Targets": "--lora-targets", "LoRA.RSLoRA": "--use-rslora", "LoRA.DoRA": "--use-dora", "LoRA.Init": "--lora-init",

	"Freeze.TrainableLayers": "--freeze-trainable-layers", "Freeze.Modules": "--freeze-trainable-modules",
	"Freeze.Extra": "--freeze-extra-modules",

	"Bottleneck.Variant": "--adapter-variant", "Bottleneck.ReductionFactor": "--adapter-reduction-factor",
	"Bottleneck.Activation": "--adapter-activation", "Bottleneck.Scaling": "--adapter-scaling",
	"Bottleneck.Init": "--adapter-init", "Bottleneck.Layers": "--adapter-layers",

	"Prompt.NumVirtualTokens": "--num-virtual-tokens", "Prompt.EncoderHidden": "--encoder-hidden-size",
	"Prompt.Init": "--prompt-init", "Prompt.InitText": "--prompt-init-text",
	"Prompt.Encoder": "--encoder-reparameterization", "Prompt.EncoderLayers": "--encoder-num-layers",

	"Prefix.Layers": "--prefix-layers", "Prefix.Projection": "--prefix-projection",
}

// explicitOptions returns the options whose flags were set on fs (on the
// command line, or from --config).
func explicitOptions(fs *flag.FlagSet) finetune.Explicit {
	byFlag := map[string]string{}
	for opt, fl := range optionFlags {
		byFlag[strings.TrimPrefix(fl, "--")] = opt
	}
	x := finetune.Explicit{}
	fs.Visit(func(f *flag.Flag) {
		if opt, ok := byFlag[f.Name]; ok {
			x[opt] = true
		}
	})
	return x
}

// The flags of the library structs other commands fill, by field path:
// generate.Options (gotune generate), fewshot.MetaConfig (gotune
// meta-train) and continual.Config (gotune continual).
var (
	generateOptionFlags = finetune.Names{
		"MaxNewTokens": "--max-new-tokens", "Temperature": "--temperature", "TopK": "--top-k", "TopP": "--top-p", "Seed": "--seed",
	}
	metaConfigFlags = finetune.Names{
		"Outer.Algo": "--algo", "Outer.LR": "--outer-lr", "Outer.Steps": "--meta-steps", "Outer.Adam": "--outer-opt",
		"Inner.Steps": "--inner-steps", "Inner.LR": "--inner-lr", "Inner.Optimizer": "--inner-opt", "Inner.MaxGradNorm": "--max-grad-norm",
		"MetaBatch": "--meta-batch", "Shots": "--shots", "Query": "--query", "Seed": "--seed",
		"EvalEvery": "--eval-every", "EvalTasks": "--eval-tasks", "EvalQuery": "--eval-query", "LogEvery": "--log-every", "OutDir": "--out",
	}
	continualConfigFlags = finetune.Names{
		"Strategy": "--strategy", "Steps": "--steps", "BatchSize": "--batch-size", "SeqLen": "--seq-len", "Seed": "--seed",
		"ReplaySize": "--replay-size", "ReplayRatio": "--replay-ratio",
		"EWCLambda": "--ewc-lambda", "EWCOnline": "--ewc-online", "EWCGamma": "--ewc-gamma", "FisherSamples": "--fisher-samples",
		"OLoRALambda": "--olora-lambda", "Scorer.MaxNewTokens": "--max-new-tokens",
	}
)

// fieldUsageError returns err, an error of a library struct's validation,
// as a *usageError: a *fielderr.Error names the flags that set the fields
// (its paths first mapped by path, when not nil, then named by flags).
func fieldUsageError(err error, path func(string) string, flags finetune.Names) error {
	fe, ok := fielderr.As(err)
	if !ok {
		return &usageError{msg: err.Error()}
	}
	if path != nil {
		fe = fe.Map(path)
	}
	return &usageError{msg: fe.Message(flags.Of)}
}

// trainFlag names a train.Config field by its flag, for the trainer's
// run-time hints (train.Options.Name).
func trainFlag(field string) string { return optionFlags.Of(finetune.TrainOption(field)) }
