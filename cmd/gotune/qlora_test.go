package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
)

// qloraGolden is testdata/golden/qlora/golden.json (testdata/golden/qlora.py):
// the golden LoRA run on llama-gqa with NF4 double-quantized projections,
// under gotune's fp32 and bf16 policies, and (fp32) the same run unquantized.
type qloraGolden struct {
	Runs map[string]struct {
		Losses               []float64 `json:"losses"`
		GradNorms            []float64 `json:"grad_norms"`
		UnquantizedLosses    []float64 `json:"unquantized_losses"`
		UnquantizedGradNorms []float64 `json:"unquantized_grad_norms"`
	} `json:"runs"`
}

// Tolerances of QLoRA runs against the PyTorch goldens, which round at
// gotune's points (bf16 x and dy into every quantized product) but sum in
// float64: a float32 sum on the other side of a bfloat16 rounding
// boundary moves an operand by one bfloat16 unit (2^-8).
const (
	// qloraFirstLossTol bounds the first step's loss (forward only;
	// measured at most 2e-8); the quantization itself moves it by 5e-3.
	qloraFirstLossTol = 1e-6
	// qloraStepTol bounds later losses and every gradient norm (measured:
	// 1e-8 under fp32, at most 1.8e-3 under bf16).
	qloraStepTol = 1.0 / (1 << 8)
)

// TestQLoRAMatchesGolden trains the golden LoRA run with --quantize nf4
// (double quantization) on the CPU under both precisions, and through
// the emulated GPU under fp32 (the kernel path of QuantGemm), and
// compares the trajectories with PyTorch's on the dequantized weights.
func TestQLoRAMatchesGolden(t *testing.T) {
	raw, err := os.ReadFile(filepath.Join(goldenDir, "qlora", "golden.json"))
	require.NoError(t, err)
	var g qloraGolden
	require.NoError(t, json.Unmarshal(raw, &g))
	base, err := golden.Load(filepath.Join(goldenDir, "llama-gqa"))
	require.NoError(t, err)
	sets, err := golden.LoadMethods(filepath.Join(goldenDir, golden.MethodsDir))
	require.NoError(t, err)
	var args func(out string) []string
	for _, s := range sets {
		if s.Meta.Name == "lora" {
			args = func(out string) []string { return methodTrainArgs(t, s, base, methodFlags, out) }
		}
	}
	require.NotNil(t, args)
	cases := []struct{ name, policy, device string }{
		{"cpu-fp32", "fp32", "cpu"}, {"cpu-bf16", "bf16", "cpu"}, {"cuda-fp32", "fp32", "cuda"}, {"cuda-bf16", "bf16", "cuda"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var env []string
			if c.device == "cuda" {
				env = []string{"GOTUNE_LIBCUDA=" + cudaDriver(t)}
			}
			run := g.Runs[c.policy]
			out := filepath.Join(t.TempDir(), "out")
			r := runGotuneEnv(t, env, append(args(out), "--quantize", "nf4", "--precision", c.policy, "--device", c.device)...)
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			require.Contains(t, r.stdout, "quantized: nf4 (double quant true), 14 projections")
			ms, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
			require.NoError(t, err)
			require.Len(t, ms, len(run.Losses))
			rel := func(a, b float64) float64 { return math.Abs(a-b) / math.Abs(b) }
			if c.policy == "fp32" {
				gap := rel(g.Runs["fp32"].UnquantizedLosses[0], run.Losses[0])
				assert.Greater(t, gap, 10*qloraFirstLossTol, "quantized and unquantized first-step losses are too close to tell apart")
			}
			for i, m := range ms {
				tol := qloraStepTol
				if i == 0 {
					tol = qloraFirstLossTol
				}
				t.Logf("step %d: loss %.3g, grad norm %.3g relative to the golden", i+1, rel(m.Loss, run.Losses[i]), rel(m.GradNorm, run.GradNorms[i]))
				assert.LessOrEqual(t, rel(m.Loss, run.Losses[i]), tol, "step %d loss %.8g, golden %.8g", i+1, m.Loss, run.Losses[i])
				assert.LessOrEqual(t, rel(m.GradNorm, run.GradNorms[i]), qloraStepTol, "step %d grad norm %.8g, golden %.8g", i+1, m.GradNorm, run.GradNorms[i])
			}
		})
	}
}

// TestQLoRAMerge merges the golden LoRA adapter into llama-gqa's NF4
// dequantized base (gotune merge --quantize nf4) and compares the merged
// projections with PyTorch's Wdq + s·B·A; the other quantized projections
// hold their dequantized weights (not the original ones).
func TestQLoRAMerge(t *testing.T) {
	out := filepath.Join(t.TempDir(), "merged")
	base := filepath.Join(goldenDir, "llama-gqa")
	r := runGotune(t, "merge", "--model", base, "--adapter", filepath.Join(goldenDir, golden.MethodsDir, "lora"),
		"--quantize", "nf4", "--out", out)
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	got, err := safetensors.Open(filepath.Join(out, "model.safetensors"))
	require.NoError(t, err)
	defer got.Close()
	want, err := safetensors.Open(filepath.Join(goldenDir, "qlora", "quant.safetensors"))
	require.NoError(t, err)
	defer want.Close()
	orig, err := safetensors.Open(filepath.Join(base, "model.safetensors"))
	require.NoError(t, err)
	defer orig.Close()
	merged := 0
	for _, name := range want.Names() {
		if !strings.HasPrefix(name, "merged.") {
			continue
		}
		merged++
		w, _, err := want.Float32(name)
		require.NoError(t, err)
		g, _, err := got.Float32(strings.TrimPrefix(name, "merged."))
		require.NoError(t, err)
		assert.Less(t, relDiff(g, w), 1e-6, name)
	}
	assert.Equal(t, 4, merged)
	g, _, err := got.Float32("model.layers.0.mlp.down_proj.weight")
	require.NoError(t, err)
	o, _, err := orig.Float32("model.layers.0.mlp.down_proj.weight")
	require.NoError(t, err)
	d := relDiff(g, o)
	assert.True(t, d > 1e-3 && d < 0.2, "down_proj differs from the original by %.3g: not its NF4 dequantization", d)
}
