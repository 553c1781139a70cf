package finetune_test

import (
	"context"
	"testing"

	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
	"github.com/stretchr/testify/require"
)

// TestResumeMismatchNamesOptions checks that resuming with a setting that
// changes the trajectory is refused, naming the library's option (not a
// CLI flag) and both values.
func TestResumeMismatchNamesOptions(t *testing.T) {
	out := t.TempDir() + "/run"
	opts := func(lr float64) finetune.JobOptions {
		return finetune.JobOptions{
			MethodOptions: finetune.DefaultMethodOptions(),
			Model:         "../testdata/tiny/llama", Method: "lora", Out: out,
			Data:      finetune.DataOptions{Train: "../testdata/tiny/data.jsonl"},
			Train:     train.Config{Steps: 2, SaveEvery: 1, GradAccum: 1, LR: lr, Schedule: train.Constant, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
			BatchSize: 1, SeqLen: 16,
		}
	}
	_, err := finetune.Run(context.Background(), opts(1e-2))
	require.NoError(t, err)
	o := opts(2e-2)
	o.Train.Steps, o.Resume = 3, out
	_, err = finetune.Run(context.Background(), o)
	require.Error(t, err)
	require.Contains(t, err.Error(), "Train.LR is 0.02 here but 0.01 in the checkpoint")
	require.NotContains(t, err.Error(), "--lr")
}
