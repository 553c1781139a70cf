package finetune_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
	"github.com/gotune/gotune/internal/fieldpaths"
)

// TestOptionErrors checks that wrong options (checked by Run, by the
// trainer's and the methods' validation, and against the model) come
// back as *OptionError naming the option by its field path in
// JobOptions, or through Names by the caller's name for it, and every
// other option the message names likewise.
func TestOptionErrors(t *testing.T) {
	cases := []struct {
		option string
		others []string // further options the message names
		method string   // "" : lora
		set    func(*finetune.JobOptions)
		want   string // with Names nil
	}{
		{"LoRA.Rank", nil, "", func(o *finetune.JobOptions) { o.LoRA.Rank = 0 }, "LoRA.Rank must be at least 1, got 0"},
		{"LoRA.Alpha", nil, "", func(o *finetune.JobOptions) { o.LoRA.Alpha = -1 }, "LoRA.Alpha must be a positive number, got -1"},
		{"LoRA.Dropout", nil, "", func(o *finetune.JobOptions) { o.LoRA.Dropout = 1 }, "LoRA.Dropout must be in [0, 1), got 1"},
		{"LoRA.Init", nil, "", func(o *finetune.JobOptions) { o.LoRA.Init = "zeros" }, `LoRA.Init must be kaiming or gaussian, got "zeros"`},
		{"LoRA.Targets", nil, "", func(o *finetune.JobOptions) { o.LoRA.Targets = []string{"all-linear", "q_proj"} }, `LoRA.Targets "all-linear" cannot be combined with other names`},
		{"LoRA.Rank", nil, "", func(o *finetune.JobOptions) { o.LoRA.Rank = 100000 },
			"LoRA.Rank 100000 exceeds the rank of model.layers.0.self_attn.q_proj's 64×64 weight: use at most 64"},
		{"Precision", nil, "", func(o *finetune.JobOptions) { o.Precision = "fp16" }, `Precision "fp16": want bf16, fp32 or auto`},

		{"Train.LR", nil, "", func(o *finetune.JobOptions) { o.Train.LR = -1 }, "Train.LR must be a non-negative number, got -1"},
		{"Train.Steps", []string{"Train.Epochs"}, "", func(o *finetune.JobOptions) { o.Train.Steps = 0 }, "Train.Steps is 0 and Train.Epochs 0: nothing to train; set one of them to a positive number"},
		{"Train.WarmupRatio", []string{"Train.WarmupSteps"}, "", func(o *finetune.JobOptions) { o.Train.WarmupRatio, o.Train.WarmupSteps = 0.1, 2 },
			"Train.WarmupRatio and Train.WarmupSteps exclude each other (got 0.1 and 2)"},
		{"Train.Schedule", nil, "", func(o *finetune.JobOptions) { o.Train.Schedule = "step" }, `Train.Schedule "step" is not a learning-rate schedule (want constant, linear, cosine)`},
		{"Train.SaveTotalLimit", nil, "", func(o *finetune.JobOptions) { o.Train.SaveTotalLimit = -1 }, "Train.SaveTotalLimit must not be negative (0 keeps every checkpoint), got -1"},
		{"Parallel.Zero", nil, "", func(o *finetune.JobOptions) { o.Parallel = &train.Parallel{Zero: 3} }, "Parallel.Zero must be 0, 1 or 2, got 3"},

		{"Freeze.TrainableLayers", nil, "freeze", func(o *finetune.JobOptions) { o.Freeze.TrainableLayers = 5 }, "Freeze.TrainableLayers is 5, but the model has 2 layers"},
		{"Freeze.Modules", nil, "freeze", func(o *finetune.JobOptions) { o.Freeze.Modules = []string{"attn"} },
			`Freeze.Modules "attn": no such module in the layers (they have: input_layernorm, mlp, post_attention_layernorm, self_attn)`},
		{"Freeze.TrainableLayers", []string{"Freeze.Extra"}, "freeze", func(o *finetune.JobOptions) { o.Freeze.TrainableLayers = 0 },
			"Freeze.TrainableLayers is 0 and Freeze.Extra names no module: nothing to train"},
		{"Bottleneck.Variant", nil, "adapter", func(o *finetune.JobOptions) { o.Bottleneck.Variant = "serial" },
			`Bottleneck.Variant "serial": unknown adapter variant (want houlsby, pfeiffer, parallel, series or parallel-normed)`},
		{"Bottleneck.ReductionFactor", nil, "adapter", func(o *finetune.JobOptions) { o.Bottleneck.ReductionFactor = -1 }, "Bottleneck.ReductionFactor must be at least 1, got -1"},
		{"Prompt.NumVirtualTokens", nil, "prompt", func(o *finetune.JobOptions) { o.Prompt.NumVirtualTokens = 0 }, "Prompt.NumVirtualTokens must be positive, got 0"},
		{"Prompt.NumVirtualTokens", nil, "prompt", func(o *finetune.JobOptions) { o.Prompt.NumVirtualTokens = 1000 },
			"Prompt.NumVirtualTokens 1000 is more than the model's 128 positions (max_position_embeddings)"},
		{"Prompt.Init", nil, "prompt", func(o *finetune.JobOptions) { o.Prompt.Init = "zeros" }, `Prompt.Init "zeros": unknown prompt initialisation (want random or text)`},
		{"Prompt.EncoderLayers", nil, "ptuning", func(o *finetune.JobOptions) { o.Prompt.EncoderLayers = -1 }, "Prompt.EncoderLayers must not be negative, got -1"},
		{"Prompt.NumVirtualTokens", nil, "prefix", func(o *finetune.JobOptions) { o.Prompt.NumVirtualTokens = 1000 },
			"Prompt.NumVirtualTokens 1000 is more than the model's 128 positions (max_position_embeddings)"},
		{"Prefix.Layers", nil, "prefix", func(o *finetune.JobOptions) { o.Prefix.Layers = []int{1, 1} }, "Prefix.Layers lists layer 1 twice"},
		{"Packing", []string{"Method"}, "ptuning", func(o *finetune.JobOptions) { o.Packing = true },
			"Packing cannot be used with Method ptuning: its virtual tokens sit in front of each sequence, and packed examples would share them (Method prefix keeps its prefix visible to every packed example)"},
	}
	for _, tc := range cases {
		t.Run(tc.want, func(t *testing.T) {
			named := append([]string{tc.option}, tc.others...)
			for _, p := range named {
				require.True(t, fieldpaths.Has(finetune.JobOptions{}, p), "%s is not an option of JobOptions", p)
			}
			flags := finetune.Names{}
			for _, p := range named {
				flags[p] = "<" + p + ">"
			}
			for _, names := range []finetune.Names{nil, flags} {
				o := finetune.JobOptions{
					MethodOptions: finetune.DefaultMethodOptions(),
					Model:         "../testdata/tiny/llama", Method: "lora", Out: t.TempDir(),
					Data:      finetune.DataOptions{Train: "../testdata/tiny/data.jsonl"},
					Train:     train.Config{Steps: 1, GradAccum: 1, LR: 1e-2, Schedule: train.Constant, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
					BatchSize: 1, SeqLen: 16,
				}
				if tc.method != "" {
					o.Method = tc.method
				}
				o.Names = names
				tc.set(&o)
				_, err := finetune.Run(context.Background(), o)
				var oe *finetune.OptionError
				require.True(t, errors.As(err, &oe), "got %v", err)
				assert.Equal(t, tc.option, oe.Option)
				assert.Equal(t, renamed(tc.want, names), err.Error())
			}
		})
	}
}

// renamed returns msg with each option path names maps replaced by its
// name, the longest paths first.
func renamed(msg string, names finetune.Names) string {
	paths := make([]string, 0, len(names))
	for p := range names {
		paths = append(paths, p)
	}
	slices.SortFunc(paths, func(a, b string) int { return len(b) - len(a) })
	for _, p := range paths {
		msg = strings.ReplaceAll(msg, p, names[p])
	}
	return msg
}
