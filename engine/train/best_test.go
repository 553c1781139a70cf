package train

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/fielderr"
)

func TestWarmupRatio(t *testing.T) {
	for _, tc := range []struct {
		ratio      float64
		steps      int
		wantWarmup int
	}{
		{0.25, 10, 3}, // ceil(2.5), as Hugging Face's get_warmup_steps
		{0.1, 10, 1},
		{0.01, 10, 1},
		{0, 10, 0},
	} {
		cfg := baseConfig()
		cfg.Steps, cfg.WarmupRatio, cfg.Schedule = tc.steps, tc.ratio, Linear
		loader, err := data.NewLoader(toyDataset(7, 1), data.LoaderConfig{BatchSize: 2, SeqLen: 8})
		require.NoError(t, err)
		table, bias := toyWeights(2)
		tr, err := New(newBigram(cpu.New(), toyV, table, bias), loader, cfg, Options{})
		require.NoError(t, err)
		assert.Equal(t, tc.wantWarmup, tr.WarmupSteps(), "ratio %v", tc.ratio)
		want := Linear.Multiplier(1, tc.wantWarmup, tc.steps) * cfg.LR
		assert.Equal(t, want, tr.LR(2))
		assert.Contains(t, tr.settings(), Setting{Name: "--warmup-steps", Label: "WarmupSteps", Value: strconv.Itoa(tc.wantWarmup)}, "a checkpoint records the resolved warmup")
		tr.Close()
	}
	for _, bad := range []Config{
		{WarmupRatio: 1},
		{WarmupRatio: -0.1},
		{WarmupRatio: 0.1, WarmupSteps: 2},
	} {
		cfg := baseConfig()
		cfg.WarmupRatio, cfg.WarmupSteps = bad.WarmupRatio, bad.WarmupSteps
		err := cfg.Validate()
		require.Error(t, err)
		fe, ok := fielderr.As(err)
		require.True(t, ok)
		assert.Equal(t, "WarmupRatio", fe.Field)
	}
}

// stepSaver writes the step the trainer had reached, so a test can tell
// which step's model a folder holds.
type stepSaver struct{ step *int }

func (s stepSaver) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "step"), []byte(strconv.Itoa(*s.step)), 0o644)
}

// bestRun trains the toy model with scripted eval losses (one per step),
// stopping (cancelling) after stopAt when > 0 and resuming from resume
// when set.
func bestRun(t *testing.T, out string, cfg Config, losses []float64, stopAt int, resume string) *Result {
	t.Helper()
	loader, err := data.NewLoader(toyDataset(7, 1), data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	require.NoError(t, err)
	table, bias := toyWeights(2)
	m := newBigram(cpu.New(), toyV, table, bias)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	step := 0
	cfg.OutDir = out
	tr, err := New(m, loader, cfg, Options{
		Saver: stepSaver{&step},
		Eval: func(_ context.Context, s int) (map[string]float64, error) {
			step = s
			if s == stopAt {
				cancel()
			}
			return map[string]float64{EvalLossMetric: losses[s-1]}, nil
		},
	})
	require.NoError(t, err)
	defer tr.Close()
	if resume != "" {
		_, err := tr.Resume(resume)
		require.NoError(t, err)
	}
	res, err := tr.Run(ctx)
	require.NoError(t, err)
	return res
}

// The best model is the one after the lowest eval loss; early stopping
// ends the run after `patience` evaluations without a new lowest, also
// across a resume (the checkpoint carries the best so far).
func TestKeepBestAndEarlyStopping(t *testing.T) {
	losses := []float64{3, 2, 2.5, 1.5, 1.5, 1.7, 1.6, 1.0, 0.9, 0.8}
	cfg := baseConfig()
	cfg.Steps, cfg.EvalEvery, cfg.KeepBest, cfg.EarlyStoppingPatience = 10, 1, true, 3

	straight := t.TempDir()
	res := bestRun(t, straight, cfg, losses, 0, "")
	assert.True(t, res.EarlyStopped)
	assert.Equal(t, 7, res.Steps, "steps 5, 6 and 7 do not beat step 4's 1.5 (equal is not better)")
	assert.Equal(t, 4, res.BestStep)
	assert.Equal(t, 1.5, res.BestEvalLoss)
	b, err := os.ReadFile(filepath.Join(straight, BestDir, "step"))
	require.NoError(t, err)
	assert.Equal(t, "4", string(b), "best/ holds step 4's model")
	b, err = os.ReadFile(filepath.Join(straight, "step"))
	require.NoError(t, err)
	assert.Equal(t, "7", string(b), "the output folder holds the last step's model")
	entries, err := os.ReadDir(straight)
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.HasPrefix(e.Name(), "."+BestDir), "leftover %s", e.Name())
	}

	// Stopped after step 5 (one evaluation without improvement) and
	// resumed: the run still stops after step 7.
	cfg.SaveEvery = 1
	resumed := t.TempDir()
	first := bestRun(t, resumed, cfg, losses, 5, "")
	require.True(t, first.Interrupted)
	res = bestRun(t, resumed, cfg, losses, 0, CheckpointDir(resumed, 5))
	assert.True(t, res.EarlyStopped)
	assert.Equal(t, 7, res.Steps)
	assert.Equal(t, 4, res.BestStep)

	// Without patience the run goes on, and best/ follows the lowest.
	cfg.EarlyStoppingPatience, cfg.SaveEvery = 0, 0
	full := t.TempDir()
	res = bestRun(t, full, cfg, losses, 0, "")
	assert.False(t, res.EarlyStopped)
	assert.Equal(t, 10, res.Steps)
	b, err = os.ReadFile(filepath.Join(full, BestDir, "step"))
	require.NoError(t, err)
	assert.Equal(t, "10", string(b))
}

func TestKeepBestNeedsEval(t *testing.T) {
	cfg := baseConfig()
	cfg.KeepBest, cfg.OutDir = true, t.TempDir()
	loader, err := data.NewLoader(toyDataset(7, 1), data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	require.NoError(t, err)
	table, bias := toyWeights(2)
	_, err = New(newBigram(cpu.New(), toyV, table, bias), loader, cfg, Options{})
	fe, ok := fielderr.As(err)
	require.True(t, ok, "want a *fielderr.Error, got %v", err)
	assert.Equal(t, []string{"KeepBest", "EvalEvery"}, fe.Fields())
	assert.Contains(t, err.Error(), "KeepBest needs an evaluation")
}
