package main

import (
	"flag"
	"strings"

	"github.com/gotune/gotune/finetune"
)

// optionFlags names the library's options (package finetune, by field
// path) by the flags that set them: the library's errors and messages
// name options through it, so the CLI's name flags. It is also read
// backwards (explicitOptions): the flags given are the options given.
var optionFlags = finetune.Names{
	"Method": "--method", "InitAdapter": "--init-adapter", "Seed": "--seed",

	"Model": "--model", "Quantize": "--quantize", "Data.Train": "--data", "Data.Dataset": "--dataset", "Data.Eval": "--eval-data", "Data.EvalEvery": "--eval-every",
	"Data.Format": "--format", "Data.Template": "--template", "Data.Tokenizer": "--tokenizer",
	"Out": "--out", "Overwrite": "--overwrite", "Resume": "--resume", "BatchSize": "--batch-size", "SeqLen": "--seq-len",
	"Shuffle": "--shuffle", "Packing": "--packing", "GradCheckpoint": "--grad-checkpoint", "Precision": "--precision",
	"Train.KeepBest": "--keep-best", "Train.EarlyStoppingPatience": "--early-stopping-patience",
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
