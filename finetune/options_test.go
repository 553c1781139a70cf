package finetune_test

import (
	"context"
	"errors"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
)

// TestMethodOptionErrors checks that invalid method options and
// precision come back as *OptionError naming the option by its field
// path, or through Names by the caller's name for it.
func TestMethodOptionErrors(t *testing.T) {
	cases := []struct {
		option string
		set    func(*finetune.JobOptions)
		want   string // after the option's name
	}{
		{"LoRA.Rank", func(o *finetune.JobOptions) { o.LoRA.Rank = 0 }, " must be at least 1, got 0"},
		{"LoRA.Alpha", func(o *finetune.JobOptions) { o.LoRA.Alpha = -1 }, " must be a positive number, got -1"},
		{"LoRA.Dropout", func(o *finetune.JobOptions) { o.LoRA.Dropout = 1 }, " must be in [0, 1), got 1"},
		{"LoRA.Init", func(o *finetune.JobOptions) { o.LoRA.Init = "zeros" }, ` must be kaiming or gaussian, got "zeros"`},
		{"LoRA.Targets", func(o *finetune.JobOptions) { o.LoRA.Targets = []string{"all-linear", "q_proj"} }, ` "all-linear" cannot be combined with other names`},
		{"Precision", func(o *finetune.JobOptions) { o.Precision = "fp16" }, ` "fp16": want bf16, fp32 or auto`},
		{"Packing", func(o *finetune.JobOptions) { o.Packing, o.Method = true, "ptuning" }, ` cannot be used with Method ptuning: its virtual tokens sit in front of each sequence, and packed examples would share them (Method prefix keeps its prefix visible to every packed example)`},
	}
	for _, tc := range cases {
		t.Run(tc.option, func(t *testing.T) {
			for _, names := range []finetune.Names{nil, {tc.option: "--the-flag"}} {
				o := finetune.JobOptions{
					MethodOptions: finetune.DefaultMethodOptions(),
					Model:         "../testdata/tiny/llama", Method: "lora", Out: t.TempDir(),
					Data:      finetune.DataOptions{Train: "../testdata/tiny/data.jsonl"},
					Train:     train.Config{Steps: 1, GradAccum: 1, LR: 1e-2, Schedule: train.Constant, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
					BatchSize: 1, SeqLen: 16,
				}
				o.Names = names
				tc.set(&o)
				_, err := finetune.Run(context.Background(), o)
				var oe *finetune.OptionError
				require.True(t, errors.As(err, &oe), "got %v", err)
				assert.Equal(t, tc.option, oe.Option)
				assert.Equal(t, names.Of(tc.option)+tc.want, err.Error())
			}
		})
	}
}
