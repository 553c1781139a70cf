package main

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
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

// qloraSetup reads the QLoRA golden and returns it with the arguments
// of the golden LoRA run on llama-gqa writing to out.
func qloraSetup(t *testing.T) (qloraGolden, func(out string) []string) {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(goldenDir, "qlora", "golden.json"))
	require.NoError(t, err)
	var g qloraGolden
	require.NoError(t, json.Unmarshal(raw, &g))
	base, err := golden.Load(filepath.Join(goldenDir, "llama-gqa"))
	require.NoError(t, err)
	sets, err := golden.LoadMethods(filepath.Join(goldenDir, golden.MethodsDir))
	require.NoError(t, err)
	for _, s := range sets {
		if s.Meta.Name == "lora" {
			return g, func(out string) []string { return methodTrainArgs(t, s, base, methodFlags, out) }
		}
	}
	require.FailNow(t, "no golden lora run")
	return g, nil
}

func relErr(a, b float64) float64 { return math.Abs(a-b) / math.Abs(b) }

// checkQLoRATrajectory compares a run's metrics with golden losses and
// gradient norms (qloraFirstLossTol for the first loss, qloraStepTol
// for the rest).
func checkQLoRATrajectory(t *testing.T, ms []train.StepMetrics, losses, norms []float64) {
	t.Helper()
	require.Len(t, ms, len(losses))
	for i, m := range ms {
		tol := qloraStepTol
		if i == 0 {
			tol = qloraFirstLossTol
		}
		t.Logf("step %d: loss %.3g, grad norm %.3g relative to the golden", i+1, relErr(m.Loss, losses[i]), relErr(m.GradNorm, norms[i]))
		assert.LessOrEqual(t, relErr(m.Loss, losses[i]), tol, "step %d loss %.8g, golden %.8g", i+1, m.Loss, losses[i])
		assert.LessOrEqual(t, relErr(m.GradNorm, norms[i]), qloraStepTol, "step %d grad norm %.8g, golden %.8g", i+1, m.GradNorm, norms[i])
	}
}

// TestQLoRAMatchesGolden trains the golden LoRA run with --quantize nf4
// (double quantization) on the CPU under both precisions, and through
// the emulated GPU under fp32 (the kernel path of QuantGemm), and
// compares the trajectories with PyTorch's on the dequantized weights.
func TestQLoRAMatchesGolden(t *testing.T) {
	g, args := qloraSetup(t)
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
			if c.policy == "fp32" {
				gap := relErr(g.Runs["fp32"].UnquantizedLosses[0], run.Losses[0])
				assert.Greater(t, gap, 10*qloraFirstLossTol, "quantized and unquantized first-step losses are too close to tell apart")
			}
			checkQLoRATrajectory(t, ms, run.Losses, run.GradNorms)
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

// TestQLoRAMergeBitsandbytes merges the golden LoRA adapter into the
// bitsandbytes NF4 checkpoint of llama-gqa (read quantized, no
// --quantize): the merged weights are those of merging into the float
// base quantized by --quantize nf4 (the same codes), the saved
// config.json has no quantization_config, and the folder loads as a
// float checkpoint.
func TestQLoRAMergeBitsandbytes(t *testing.T) {
	dir := t.TempDir()
	adapter := filepath.Join(goldenDir, golden.MethodsDir, "lora")
	fromBnb, fromFloat := filepath.Join(dir, "bnb"), filepath.Join(dir, "float")
	r := runGotune(t, "merge", "--model", filepath.Join(goldenDir, "qlora-bnb-nf4"), "--adapter", adapter, "--out", fromBnb)
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	r = runGotune(t, "merge", "--model", filepath.Join(goldenDir, "llama-gqa"), "--adapter", adapter, "--quantize", "nf4", "--out", fromFloat)
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)

	raw, err := os.ReadFile(filepath.Join(fromBnb, "config.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "quantization_config")
	got, err := safetensors.Open(filepath.Join(fromBnb, "model.safetensors"))
	require.NoError(t, err)
	defer got.Close()
	want, err := safetensors.Open(filepath.Join(fromFloat, "model.safetensors"))
	require.NoError(t, err)
	defer want.Close()
	require.Equal(t, want.Names(), got.Names())
	for _, name := range want.Names() {
		w, _, err := want.Float32(name)
		require.NoError(t, err)
		g, _, err := got.Float32(name)
		require.NoError(t, err)
		assert.Equal(t, w, g, name)
	}
	m, err := model.Load(fromBnb, cpu.New())
	require.NoError(t, err, "the merged folder loads as a float checkpoint")
	assert.Nil(t, m.Config().Quantization)
}

// TestQLoRABitsandbytesCheckpoint trains the golden LoRA run on
// llama-gqa saved as a bitsandbytes NF4 (double quant) checkpoint — no
// --quantize: the base is read quantized — and compares the trajectory
// with the fp32 QLoRA golden (the same codes, quantized from the float32
// base), on the CPU and through the emulated GPU. Full fine-tuning of
// such a base is refused.
func TestQLoRABitsandbytesCheckpoint(t *testing.T) {
	g, loraArgs := qloraSetup(t)
	args := func(out string) []string {
		a := loraArgs(out)
		a[slices.Index(a, "--model")+1] = filepath.Join(goldenDir, "qlora-bnb-nf4")
		return a
	}
	run := g.Runs["fp32"]
	for _, device := range []string{"cpu", "cuda"} {
		t.Run(device, func(t *testing.T) {
			var env []string
			if device == "cuda" {
				env = []string{"GOTUNE_LIBCUDA=" + cudaDriver(t)}
			}
			out := filepath.Join(t.TempDir(), "out")
			r := runGotuneEnv(t, env, append(args(out), "--precision", "fp32", "--device", device)...)
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			ms, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
			require.NoError(t, err)
			require.Len(t, ms, len(run.Losses))
			checkQLoRATrajectory(t, ms, run.Losses, run.GradNorms)
		})
	}
	t.Run("full-refused", func(t *testing.T) {
		a := args(filepath.Join(t.TempDir(), "out"))
		a[slices.Index(a, "--method")+1] = "full"
		r := runGotune(t, a...)
		require.NotEqual(t, 0, r.code)
		first, _, _ := strings.Cut(r.stderr, "\n")
		assert.Contains(t, first, "--method full trains the base weights, but the model's base is bitsandbytes-quantized")
		assert.NotContains(t, r.stderr, "goroutine")
	})
}
