package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/internal/compare"
	"github.com/gotune/gotune/internal/demo"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// demoDir is the bundled demo model, from this package's folder.
var demoDir = filepath.Join("../..", demo.Dir)

// compareData writes a small instruction training file and a held-out
// one for the demo model.
func compareData(t *testing.T) (train, eval string) {
	t.Helper()
	dir := t.TempDir()
	train, eval = filepath.Join(dir, "train.jsonl"), filepath.Join(dir, "eval.jsonl")
	r := runGotune(t, "data", "synth", "--task", "cipher:7", "--n", "16", "--eval-n", "2", "--seed", "1", "--out", train, "--eval-out", eval)
	require.Equal(t, 0, r.code, r.stderr)
	return train, eval
}

// TestCompare runs every method for a few steps on the demo model, on the
// CPU and (with GOTUNE_LIBCUDA, the emulator under make test) on the
// CUDA backend, and checks compare.json and compare.png.
func TestCompare(t *testing.T) {
	trainPath, evalPath := compareData(t)
	devices := map[string][]string{"cpu": {noDriver}}
	if lib := os.Getenv("GOTUNE_LIBCUDA"); lib != "" {
		devices["cuda"] = []string{"GOTUNE_LIBCUDA=" + lib}
	}
	for dev, env := range devices {
		t.Run(dev, func(t *testing.T) {
			out := t.TempDir()
			// The emulator runs kernels on the CPU, slowly: short sequences there.
			seqLen := map[string]string{"cpu": "128", "cuda": "48"}[dev]
			r := runGotuneEnv(t, env, "compare", "--methods", "full,freeze,lora,dora,adapter,prefix,ptuning,prompt",
				"--model", demoDir, "--data", trainPath, "--eval-data", evalPath, "--eval-every", "1", "--steps", "2",
				"--batch-size", "2", "--seq-len", seqLen, "--max-new-tokens", "2", "--num-virtual-tokens", "4",
				"--device", dev, "--out", out)
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			raw, err := os.ReadFile(filepath.Join(out, compare.JSONFile))
			require.NoError(t, err)
			var rep compare.Report
			require.NoError(t, json.Unmarshal(raw, &rep))
			require.Len(t, rep.Methods, 8)
			for _, m := range rep.Methods {
				assert.Positive(t, m.TrainableParams, m.Method)
				assert.LessOrEqual(t, m.TrainableParams, m.TotalParams, m.Method)
				assert.Positive(t, m.PeakMemBytes, m.Method)
				assert.Positive(t, m.TokensPerS, m.Method)
				assert.Positive(t, m.TrainLoss, m.Method)
				require.NotNil(t, m.EvalLoss, m.Method)
				require.NotNil(t, m.ExactMatch, m.Method)
				require.Len(t, m.EvalCurve, 2, m.Method)
				assert.Equal(t, []int{1, 2}, []int{m.EvalCurve[0].Step, m.EvalCurve[1].Step}, m.Method)
				assert.Equal(t, m.EvalCurve[1].Loss, *m.EvalLoss, m.Method)
			}
			assert.Equal(t, rep.Methods[0].TrainableParams, rep.Methods[0].TotalParams, "full trains everything")
			_, err = os.Stat(filepath.Join(out, compare.PlotFile))
			require.NoError(t, err)
		})
	}
}

// TestCompareBadInput checks the one-line errors.
func TestCompareBadInput(t *testing.T) {
	trainPath, _ := compareData(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--methods", "full,qlora"}, "--methods: unknown method qlora (available: full, freeze, lora, dora, adapter, prefix, ptuning, prompt)"},
		{[]string{"--methods", "lora,lora"}, "--methods: method lora is listed twice"},
		{[]string{"--methods", "adapter", "--adapter-layers", "9"}, "--adapter-layers: layer 9 does not exist: the model has 4 layers (0..3)"},
		{[]string{"--methods", "lora", "--lora-targets", "c_attn"}, "c_attn"},
		{[]string{"--methods", "full", "--method-lr", "lora=1e-3"}, "--method-lr: lora is not one of --methods (full)"},
	} {
		args := append([]string{"compare", "--model", demoDir, "--data", trainPath, "--steps", "2", "--out", t.TempDir()}, tc.args...)
		r := runGotune(t, args...)
		assert.NotEqual(t, 0, r.code, tc.args)
		assert.Contains(t, r.stderr, tc.want, tc.args)
		assert.NotContains(t, r.stderr, "goroutine", tc.args)
	}
}
