package main

import (
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTrainGradCheckpoint trains the same golden run with and without
// --grad-checkpoint: the trajectories must be bit-identical, and both
// report their peak memory per step and in the summary.
func TestTrainGradCheckpoint(t *testing.T) {
	set, err := golden.Load(filepath.Join(goldenDir, "llama-gqa"))
	require.NoError(t, err)
	run := set.Run("full")
	var steps [2][]train.StepMetrics
	for i, extra := range [][]string{nil, {"--grad-checkpoint"}} {
		out := filepath.Join(t.TempDir(), "out")
		r := runGotune(t, append(goldenTrainArgs(set, run, out), extra...)...)
		require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
		assert.Contains(t, r.stdout, ", peak memory ")
		steps[i], err = train.ReadMetrics(filepath.Join(out, train.MetricsFile))
		require.NoError(t, err)
	}
	require.Len(t, steps[1], len(steps[0]))
	for i, a := range steps[0] {
		b := steps[1][i]
		assert.Equal(t, math.Float64bits(a.Loss), math.Float64bits(b.Loss), "step %d loss", a.Step)
		assert.Equal(t, math.Float64bits(a.GradNorm), math.Float64bits(b.GradNorm), "step %d grad norm", a.Step)
		assert.Positive(t, a.PeakMemBytes, "step %d", a.Step)
		assert.Positive(t, b.PeakMemBytes, "step %d", a.Step)
	}
}

// TestTrainOutOfDeviceMemory runs out of the emulator's device memory
// (GOTUNE_EMU_MEM_LIMIT) and expects one line naming the sizes and the
// flags that help, and an out-of-range device ordinal to name how many
// devices there are.
func TestTrainOutOfDeviceMemory(t *testing.T) {
	lib := cudaDriver(t)
	set, err := golden.Load(filepath.Join(goldenDir, "llama-gqa"))
	require.NoError(t, err)
	args := append(goldenTrainArgs(set, set.Run("full"), filepath.Join(t.TempDir(), "out")), "--device", "cuda")
	r := runGotuneEnv(t, []string{"GOTUNE_LIBCUDA=" + lib, "GOTUNE_EMU_MEM_LIMIT=200000"}, args...)
	require.Equal(t, exitError, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	lines := strings.Split(strings.TrimSpace(r.stderr), "\n")
	last := lines[len(lines)-1]
	assert.Regexp(t, `^gotune train: out of device memory allocating [0-9.]+ MiB \([0-9.]+ MiB in use, peak [0-9.]+ MiB\): try --grad-checkpoint, a smaller --batch-size or --seq-len$`, last)
	assert.NotContains(t, r.stderr, "goroutine", "a panic trace")

	args[len(args)-1] = "cuda:3"
	r = runGotuneEnv(t, []string{"GOTUNE_LIBCUDA=" + lib}, args...)
	require.Equal(t, exitError, r.code)
	assert.Contains(t, r.stderr, "--device cuda:3: no usable GPU: cuda: device 3 does not exist (the driver sees 1 device(s))")
}
