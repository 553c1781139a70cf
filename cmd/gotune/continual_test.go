package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// continualReport is what the tests read of continual.json.
type continualReport struct {
	Tasks      []string     `json:"tasks"`
	Acc        [][]*float64 `json:"acc"`
	AvgAcc     *float64     `json:"avg_acc"`
	EvalLoss   [][]float64  `json:"eval_loss"`
	TrainLoss  []float64    `json:"train_loss"`
	Forgetting *float64     `json:"forgetting"`
}

// writeTokenTasks writes n pre-tokenized tasks of 20 records each (ids
// below the golden models' vocabulary of 64) and returns their paths.
func writeTokenTasks(t *testing.T, dir string, n int) []string {
	t.Helper()
	var paths []string
	for k := range n {
		rng := rand.New(rand.NewPCG(uint64(k), 9))
		var b strings.Builder
		for range 20 {
			ids := make([]int, 8)
			for i := range ids {
				ids[i] = (k*7 + i*(k+1) + rng.IntN(3)) % 64
			}
			line, _ := json.Marshal(map[string]any{"input_ids": ids})
			b.Write(append(line, '\n'))
		}
		p := filepath.Join(dir, fmt.Sprintf("task%d.jsonl", k))
		require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o644))
		paths = append(paths, p)
	}
	return paths
}

func readContinualReport(t *testing.T, dir string) continualReport {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "continual.json"))
	require.NoError(t, err)
	var r continualReport
	require.NoError(t, json.Unmarshal(b, &r))
	_, err = os.Stat(filepath.Join(dir, "continual.png"))
	require.NoError(t, err)
	return r
}

// TestContinualStrategies runs every strategy for a few steps on a tiny
// model with three loss-only tasks and checks the report's shape and the
// invariants that hold exactly: per-task evaluates a finished task with its
// own weights (its loss never changes afterwards), a not-yet-trained task
// with the starting ones; EWC with λ = 0 is naive.
func TestContinualStrategies(t *testing.T) {
	dir := t.TempDir()
	tasks := strings.Join(writeTokenTasks(t, dir, 3), ",")
	model := filepath.Join("..", "..", "testdata", "golden", "llama-gqa")
	reports := map[string]continualReport{}
	for _, run := range []struct {
		name  string
		flags []string
	}{
		{"naive", []string{"--strategy", "naive"}},
		{"ewc0", []string{"--strategy", "ewc", "--ewc-lambda", "0", "--fisher-samples", "4"}},
		{"ewc", []string{"--strategy", "ewc", "--ewc-online", "--ewc-gamma", "0.9", "--fisher-samples", "4"}},
		{"replay", []string{"--strategy", "replay", "--replay-size", "8", "--replay-ratio", "0.5"}},
		{"olora", []string{"--strategy", "olora"}},
		{"per-task", []string{"--strategy", "per-task"}},
		{"joint", []string{"--strategy", "joint"}},
		{"full", []string{"--strategy", "per-task", "--method", "full"}},
	} {
		out := filepath.Join(dir, run.name)
		args := append([]string{"continual", "--model", model, "--tasks", tasks, "--steps", "3", "--batch-size", "4",
			"--lr", "1e-2", "--device", "cpu", "--log-every", "0", "--out", out}, run.flags...)
		r := runGotune(t, args...)
		require.Equal(t, 0, r.code, "%s: %s%s", run.name, r.stdout, r.stderr)
		rep := readContinualReport(t, out)
		require.Len(t, rep.EvalLoss, 3, run.name)
		for i := range 3 {
			require.Len(t, rep.EvalLoss[i], 3, run.name)
			for j := range 3 {
				assert.Nil(t, rep.Acc[i][j], "%s: loss-only tasks have no accuracy", run.name)
			}
		}
		assert.Nil(t, rep.AvgAcc, run.name)
		assert.Len(t, rep.TrainLoss, 3, run.name)
		reports[run.name] = rep
	}
	for _, name := range []string{"per-task", "full"} {
		pt := reports[name].EvalLoss
		assert.Equal(t, pt[0][0], pt[1][0], "%s: task 0 keeps its own weights", name)
		assert.Equal(t, pt[0][0], pt[2][0], name)
		assert.Equal(t, pt[1][1], pt[2][1], name)
		assert.Equal(t, pt[0][2], pt[1][2], "%s: task 2 is evaluated at the start until trained", name)
	}
	assert.Equal(t, reports["naive"].EvalLoss, reports["ewc0"].EvalLoss, "EWC with λ = 0 is naive")
	assert.NotEqual(t, reports["naive"].EvalLoss, reports["ewc"].EvalLoss)
}

func TestContinualErrors(t *testing.T) {
	dir := t.TempDir()
	tasks := writeTokenTasks(t, dir, 2)
	empty := filepath.Join(dir, "empty.jsonl")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	short := filepath.Join(dir, "short.jsonl")
	require.NoError(t, os.WriteFile(short, []byte("{\"input_ids\":[1,2,3]}\n"), 0o644))
	model := filepath.Join("..", "..", "testdata", "golden", "llama-gqa")
	base := []string{"continual", "--model", model, "--steps", "1", "--device", "cpu", "--out", filepath.Join(dir, "out")}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--tasks", tasks[0] + "," + filepath.Join(dir, "missing.jsonl")}, "task file " + filepath.Join(dir, "missing.jsonl") + ": no such file or directory"},
		{[]string{"--tasks", tasks[0] + "," + empty}, "task file " + empty + " is empty"},
		{[]string{"--tasks", tasks[0], "--strategy", "magic"}, `--strategy: unknown strategy "magic" (available: naive, replay, ewc, olora, per-task, joint)`},
		{[]string{"--tasks", tasks[0], "--strategy", "olora", "--method", "full"}, "--strategy olora trains a fresh LoRA per task: it needs --method lora, not full"},
		{[]string{"--tasks", strings.Join(tasks, ","), "--eval-data", tasks[0]}, "--eval-data names 1 files for 2 tasks"},
		{[]string{"--tasks", tasks[0], "--strategy", "replay", "--replay-ratio", "1"}, "--replay-ratio must be in (0, 1), got 1"},
		{[]string{"--tasks", short}, "holding out every 10th for evaluation needs at least 10 (or give --eval-data)"},
		{[]string{}, "--tasks is required"},
	} {
		r := runGotune(t, append(append([]string{}, base...), tc.args...)...)
		assert.NotEqual(t, 0, r.code, "%v", tc.args)
		assert.Contains(t, r.stderr, tc.want, "%v", tc.args)
		assert.NotContains(t, r.stderr, "goroutine", "%v: no panic trace", tc.args)
		assert.LessOrEqual(t, strings.Count(strings.TrimSpace(r.stderr), "\n"), 1, "%v: one-line error (plus the usage hint): %s", tc.args, r.stderr)
	}
}
