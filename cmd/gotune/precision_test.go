package main

import (
	"math"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
)

// Tolerances of a CPU run against a (emulated) GPU run under --precision
// bf16. Both backends round at the same points (see engine.Precision), so
// they differ only where float32 sums taken in another order (tiled GEMM
// and attention, split-k atomics in weight gradients) land on the other
// side of a bfloat16 rounding boundary: such an element moves by one
// bfloat16 unit, 2^-8 relative.
const (
	// bf16FirstLossTol bounds the first step's loss: a forward pass from
	// identical weights, where flips are rare and average out in the mean
	// (measured: at most 3e-8).
	bf16FirstLossTol = 1.0 / (1 << 12)
	// bf16StepTol bounds every step's gradient norm and later losses: the
	// backward pass rounds dq, dk, dv and the MLP gradients to bfloat16,
	// and AdamW's first updates are close to lr·sign(g), so an element
	// whose gradient is near zero can step the other way and the runs
	// drift apart by a few bfloat16 units over three steps (measured: at
	// most 7.2e-3 on tiny LoRA runs, 1e-7 for most methods).
	bf16StepTol = 1.0 / (1 << 6)
	// bf16WeightTol bounds ‖w_cuda − w_cpu‖/‖w_cpu‖ per saved tensor after
	// three steps: the sign-flipped elements above each move by up to
	// 2·lr per step, which on LoRA factors (small, zero-initialised B)
	// is a visible fraction of the tensor (measured: at most 4.7e-2). A
	// wrong gradient or kernel moves whole tensors (relative differences
	// of order 1).
	bf16WeightTol = 1.0 / (1 << 3)
)

// TestBF16DeviceMatchesCPU trains every golden method run (and full
// fine-tuning of each golden model) with --precision bf16 on the CPU and
// with --device cuda through GOTUNE_LIBCUDA (the emulator under make
// test), and checks that the two agree within the tolerances above: the bf16
// path of every kernel against the CPU reference, end to end.
func TestBF16DeviceMatchesCPU(t *testing.T) {
	lib := cudaDriver(t)
	for _, name := range []string{"llama-gqa", "gpt2"} {
		t.Run(name+"/full", func(t *testing.T) {
			set, err := golden.Load(filepath.Join(goldenDir, name))
			require.NoError(t, err)
			compareBF16Devices(t, lib, func(out string) []string { return goldenTrainArgs(set, set.Run("full"), out) })
		})
	}
	sets, err := golden.LoadMethods(filepath.Join(goldenDir, golden.MethodsDir))
	require.NoError(t, err)
	for _, s := range sets {
		flags := flagsOf
		if slices.Contains([]string{"lora", "freeze"}, s.Meta.Run.Method) {
			flags = methodFlags
		}
		t.Run(s.Meta.Name, func(t *testing.T) {
			base, err := golden.Load(s.BaseDir())
			require.NoError(t, err)
			compareBF16Devices(t, lib, func(out string) []string { return methodTrainArgs(t, s, base, flags, out) })
		})
	}
}

// compareBF16Devices runs the command line args(out) with --precision
// bf16 on the CPU and on --device cuda, and compares metrics.jsonl and
// every saved tensor.
func compareBF16Devices(t *testing.T, lib string, args func(out string) []string) {
	t.Helper()
	outs := map[string]string{}
	for _, dev := range []string{"cpu", "cuda"} {
		out := filepath.Join(t.TempDir(), dev)
		a := append(args(out), "--device", dev, "--precision", "bf16") // later flags win
		r := runGotuneEnv(t, []string{"GOTUNE_LIBCUDA=" + lib}, a...)
		require.Equal(t, 0, r.code, "--device %s\nstdout:\n%s\nstderr:\n%s", dev, r.stdout, r.stderr)
		require.Contains(t, r.stdout, "precision: bf16")
		outs[dev] = out
	}
	cpuM, err := train.ReadMetrics(filepath.Join(outs["cpu"], train.MetricsFile))
	require.NoError(t, err)
	gpuM, err := train.ReadMetrics(filepath.Join(outs["cuda"], train.MetricsFile))
	require.NoError(t, err)
	require.Len(t, gpuM, len(cpuM))
	worst := 0.0
	for i := range cpuM {
		lossTol := bf16StepTol
		if i == 0 {
			lossTol = bf16FirstLossTol
		}
		for _, v := range []struct {
			what     string
			cpu, gpu float64
			tol      float64
		}{{"loss", cpuM[i].Loss, gpuM[i].Loss, lossTol}, {"grad_norm", cpuM[i].GradNorm, gpuM[i].GradNorm, bf16StepTol}} {
			d := math.Abs(v.cpu-v.gpu) / math.Max(math.Abs(v.cpu), 1e-6)
			worst = max(worst, d)
			if d > v.tol {
				t.Errorf("step %d %s: cpu %.7g, cuda %.7g (relative difference %.2g > %.2g)", i+1, v.what, v.cpu, v.gpu, d, v.tol)
			}
		}
	}
	files, err := filepath.Glob(filepath.Join(outs["cpu"], "*.safetensors"))
	require.NoError(t, err)
	require.NotEmpty(t, files, "nothing saved in %s", outs["cpu"])
	for _, f := range files {
		for name, d := range savedDifferences(t, f, filepath.Join(outs["cuda"], filepath.Base(f))) {
			worst = max(worst, d)
			if d > bf16WeightTol {
				t.Errorf("%s %s: ‖cuda − cpu‖/‖cpu‖ = %.2g > %.2g", filepath.Base(f), name, d, bf16WeightTol)
			}
		}
	}
	t.Logf("largest relative CPU/CUDA bf16 difference: %.3g", worst)
}

// savedDifferences returns ‖b − a‖/‖a‖ for every tensor of the
// safetensors files a and b (which must hold the same names).
func savedDifferences(t *testing.T, a, b string) map[string]float64 {
	t.Helper()
	fa, err := safetensors.Open(a)
	require.NoError(t, err)
	defer fa.Close()
	fb, err := safetensors.Open(b)
	require.NoError(t, err)
	defer fb.Close()
	require.Equal(t, fa.Names(), fb.Names(), "tensors of %s and %s", a, b)
	out := map[string]float64{}
	for _, name := range fa.Names() {
		va, _, err := fa.Float32(name)
		require.NoError(t, err)
		vb, _, err := fb.Float32(name)
		require.NoError(t, err)
		var num, den float64
		for i := range va {
			d := float64(vb[i]) - float64(va[i])
			num += d * d
			den += float64(va[i]) * float64(va[i])
		}
		out[name] = math.Sqrt(num / math.Max(den, 1e-30))
	}
	return out
}
