package benchtrain

import (
	"bytes"
	"context"
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/cuda"
	"github.com/gotune/gotune/internal/benchutil"
)

// TestMain runs the GPU code path on the emulator when it is built.
func TestMain(m *testing.M) {
	benchutil.UseEmulator("../..")
	os.Exit(m.Run())
}

func tinyOptions(device string) Options {
	return Options{Device: device, Presets: []string{"tiny"}, Steps: 2, Warmup: 1, Seed: 3}
}

func TestPresetSizes(t *testing.T) {
	cases, err := Plan(Options{Presets: []string{"0.5b", "1.5b"}, Methods: []Method{Full, LoRA}})
	require.NoError(t, err)
	require.Len(t, cases, 4)
	for _, c := range cases {
		want := map[string]float64{"0.5b": 0.5e9, "1.5b": 1.5e9}[c.Preset]
		// "About 0.5B and 1.5B parameters": within 10%.
		assert.InDelta(t, want, float64(c.Shape.Params()), 0.1*want, c.Key())
		assert.Equal(t, 2048, c.Seq, c.Key())
		assert.Equal(t, c.Batch*c.Seq, c.TokensPerStep, c.Key())
		if c.Method == LoRA {
			assert.Equal(t, c.Shape.LoRAParams(16), c.TrainableParams, c.Key())
			assert.Less(t, c.FLOPsPerToken, c.Shape.FLOPsPerToken(Full, 16, c.Seq), c.Key())
		}
	}
}

// TestFLOPsByHand checks the formula on the tiny preset against a count
// written out term by term.
func TestFLOPsByHand(t *testing.T) {
	s := shapeOf(presets[0].Sizes) // vocab 256, hidden 64, 2 layers, 4/2 heads of 16, MLP 176
	perLayer := 64.0*64 + 2*64*32 + 64*64 + 3*64*176
	n := 2*perLayer + 256*64
	attn := 6 * 2 * 64.0 * 64 // 6·L·T·(H·d) at T = 64
	assert.Equal(t, 6*n+attn, s.FLOPsPerToken(Full, 8, 64))
	lora := 2 * 8 * (64 + 64 + 64 + 32 + 64 + 32 + 64 + 64 + 64 + 176 + 64 + 176 + 176 + 64.0)
	assert.Equal(t, 4*n+6*lora+attn, s.FLOPsPerToken(LoRA, 8, 64))
}

func TestCPURun(t *testing.T) {
	o := tinyOptions("cpu")
	o.PeakTFLOPS = 0.5
	rep, err := Run(context.Background(), o)
	require.NoError(t, err)
	require.Len(t, rep.Results, 2)
	assert.Equal(t, "--peak-tflops", rep.PeakSource)
	for _, r := range rep.Results {
		assert.Empty(t, r.Error)
		assert.Len(t, r.StepMs, 2, r.Key())
		assert.Greater(t, r.TokensPerS, 0.0, r.Key())
		assert.InDelta(t, float64(r.TokensPerStep)/(r.MedianStepMs/1e3), r.TokensPerS, 1e-6*r.TokensPerS)
		assert.InDelta(t, r.TFLOPS/0.5, r.MFU, 1e-12, r.Key())
		// Random weights: the loss starts near ln(vocab).
		assert.InDelta(t, math.Log(256), r.FirstLoss, 0.3, r.Key())
		assert.Equal(t, MemPeak, r.MemMeasure, "the CPU backend tracks its tensors")
		assert.Greater(t, r.MemBytes, uint64(4*(r.Params+3*r.TrainableParams)), r.Key())
	}
}

// TestEmulatorMatchesCPU runs the GPU code path on the emulator: the same
// losses as the CPU backend, and a memory figure.
func TestEmulatorMatchesCPU(t *testing.T) {
	if ok, reason := cuda.Available(); !ok {
		t.Skipf("no CUDA driver or emulator: %s", reason)
	}
	cpuRep, err := Run(context.Background(), tinyOptions("cpu"))
	require.NoError(t, err)
	gpuRep, err := Run(context.Background(), tinyOptions("cuda"))
	require.NoError(t, err)
	assert.Contains(t, gpuRep.Device, "cuda:0")
	assert.Zero(t, gpuRep.PeakBF16TFLOPS, "no peak for the emulator")
	for i, r := range gpuRep.Results {
		c := cpuRep.Results[i]
		assert.InDelta(t, c.FirstLoss, r.FirstLoss, 1e-4, r.Key())
		assert.InDelta(t, c.LastLoss, r.LastLoss, 1e-3, r.Key())
		assert.NotEqual(t, r.FirstLoss, r.LastLoss, "the optimizer moved nothing")
		assert.Equal(t, MemPeak, r.MemMeasure, r.Key())
		// At least weights, gradients and AdamW's two moments of the
		// trainable parameters, in float32.
		assert.Greater(t, r.MemBytes, uint64(4*(r.Params+3*r.TrainableParams)), r.Key())
	}
}

func TestCLITableAndJSON(t *testing.T) {
	var out, log bytes.Buffer
	args := []string{"--device", "cpu", "--preset", "tiny", "--method", "full", "--steps", "1", "--warmup", "0"}
	require.NoError(t, RunCLI(context.Background(), args, &out, &log))
	assert.Contains(t, out.String(), "tiny full gc=off fp32")
	assert.Contains(t, out.String(), "tokens/s")
	out.Reset()
	require.NoError(t, RunCLI(context.Background(), append(args, "--dry-run", "--json", "--preset", "0.5b,1.5b"), &out, &log))
	var rep Report
	require.NoError(t, json.Unmarshal(out.Bytes(), &rep))
	require.Len(t, rep.Results, 4, "two presets, checkpointing off and on (the default)")
	assert.True(t, rep.DryRun)
	assert.Equal(t, "1.5b", rep.Results[3].Preset)
	assert.True(t, rep.Results[3].GradCheckpoint)
	assert.Equal(t, 2048, rep.Results[3].Shape.MaxPos)
	assert.Zero(t, rep.Results[3].TokensPerS)
}

// TestPrecision: bf16 mixed precision runs (here on the CPU), and auto
// plans bf16 for a GPU run and fp32 for a CPU one.
func TestPrecision(t *testing.T) {
	var out, log bytes.Buffer
	args := []string{"--device", "cpu", "--preset", "tiny", "--method", "lora", "--steps", "1", "--warmup", "0"}
	require.NoError(t, RunCLI(context.Background(), append(args, "--precision", "bf16"), &out, &log))
	assert.Contains(t, out.String(), "tiny lora gc=off bf16")
	for device, want := range map[string]string{"cpu": "fp32", "cuda": "bf16", "cuda:1": "bf16"} {
		cases, err := Plan(Options{Device: device, Presets: []string{"tiny"}, Methods: []Method{LoRA}})
		require.NoError(t, err)
		assert.Equal(t, want, cases[0].Precision, "--device %s --precision auto", device)
	}
}

// TestGradCheckpoint: --grad-checkpoint both runs each case twice, and
// checkpointing lowers the peak memory of the same case.
func TestGradCheckpoint(t *testing.T) {
	o := tinyOptions("cpu")
	o.GradCheckpoint = []bool{false, true}
	o.Methods = []Method{Full}
	rep, err := Run(context.Background(), o)
	require.NoError(t, err)
	require.Len(t, rep.Results, 2)
	off, on := rep.Results[0], rep.Results[1]
	require.False(t, off.GradCheckpoint)
	require.True(t, on.GradCheckpoint)
	assert.Empty(t, off.Error)
	assert.Empty(t, on.Error)
	assert.Equal(t, off.FirstLoss, on.FirstLoss, "checkpointing changes no number")
	assert.Less(t, on.MemBytes, off.MemBytes, "checkpointing keeps fewer activations")
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{{"--preset", "7b"}, {"--method", "dora"}, {"--precision", "fp8"}, {"--grad-checkpoint", "maybe"},
		{"--steps", "0"}, {"--warmup", "-1"}, {"--seq", "1"}, {"--batch", "-2"}, {"--nope"}, {"extra"}} {
		var out, log bytes.Buffer
		err := RunCLI(context.Background(), append([]string{"--device", "cpu"}, args...), &out, &log)
		if assert.Error(t, err, args) {
			assert.NotContains(t, err.Error(), "\n", args)
			assert.True(t, strings.HasPrefix(err.Error(), "bench train: "), err.Error())
		}
	}
	var out, log bytes.Buffer
	require.NoError(t, RunCLI(context.Background(), []string{"--help"}, &out, &log))
	assert.Contains(t, out.String(), "-grad-checkpoint")
}

// TestPEFTScriptAgreesWithPlan runs scripts/bench_peft.py --dry-run on the
// GPU presets' plan: the script derives each model's parameter count from
// the shape on its own and fails when it differs from gotune's, so the
// PyTorch side provably builds the same models. Skipped without python3.
func TestPEFTScriptAgreesWithPlan(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	var plan, log bytes.Buffer
	require.NoError(t, RunCLI(context.Background(), []string{"--dry-run", "--json", "--device", "cuda", "--preset", "tiny,0.5b,1.5b"}, &plan, &log))
	path := filepath.Join(t.TempDir(), "plan.json")
	require.NoError(t, os.WriteFile(path, plan.Bytes(), 0o644))
	out, err := exec.Command(py, "../../scripts/bench_peft.py", "--plan", path, "--dry-run").CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "dry run: 12 case(s); parameter counts agree with gotune's plan")
	assert.Contains(t, string(out), "1.5b full gc=off bf16: B=2 T=2048, 4096 tokens/step")

	// A plan whose count is off by one must be refused.
	bad := strings.Replace(plan.String(), `"params": 125248`, `"params": 125249`, 1)
	require.NotEqual(t, plan.String(), bad)
	require.NoError(t, os.WriteFile(path, []byte(bad), 0o644))
	out, err = exec.Command(py, "../../scripts/bench_peft.py", "--plan", path, "--dry-run").CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "would not build the same model")
}

// TestQuantizedLoRA runs the tiny LoRA case on an NF4 base: the plan
// names it, the run reports the base's bytes per parameter (half a byte
// plus the absmax state and, on layers this small, the code books), a
// peak below the same case unquantized, and --quantize with full
// fine-tuning is refused.
func TestQuantizedLoRA(t *testing.T) {
	o := tinyOptions("cpu")
	o.Methods = []Method{LoRA}
	plain, err := Run(context.Background(), o)
	require.NoError(t, err)
	o.Quantize = "nf4"
	rep, err := Run(context.Background(), o)
	require.NoError(t, err)
	require.Len(t, rep.Results, 1)
	r := rep.Results[0]
	require.Empty(t, r.Error)
	assert.Equal(t, "tiny qlora-nf4 gc=off fp32", r.Key())
	assert.True(t, r.QuantBytesPerParam > 0.5 && r.QuantBytesPerParam < 0.75, "%.4f bytes per parameter", r.QuantBytesPerParam)
	assert.Less(t, r.MemBytes, plain.Results[0].MemBytes)
	assert.Greater(t, r.LastLoss, 0.0)
	o.Methods = []Method{Full}
	_, err = Run(context.Background(), o)
	assert.ErrorContains(t, err, "--quantize nf4: only --method lora trains on a quantized base")
}
