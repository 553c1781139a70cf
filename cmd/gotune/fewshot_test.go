package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/fewshot"
	"github.com/gotune/gotune/methods/peft"
)

const demoModel = "../../testdata/demo"

// quickMeta are meta-train settings that finish in seconds on the demo
// model: two meta-steps of two 2-shot cipher tasks, one held-out task.
func quickMeta(out string, extra ...string) []string {
	return append([]string{"meta-train", "--model", demoModel, "--synth-family", "cipher",
		"--meta-steps", "2", "--meta-batch", "2", "--shots", "2", "--query", "2", "--inner-steps", "2",
		"--eval-tasks", "1", "--eval-query", "2", "--val-synth-tasks", "cipher:1000",
		"--device", "cpu", "--out", out}, extra...)
}

// readMetaMetrics reads a meta-train metrics.jsonl.
func readMetaMetrics(t *testing.T, dir string) []fewshot.Metrics {
	t.Helper()
	f, err := os.Open(filepath.Join(dir, fewshot.MetricsFile))
	require.NoError(t, err)
	defer f.Close()
	var out []fewshot.Metrics
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var m fewshot.Metrics
		require.NoError(t, json.Unmarshal(sc.Bytes(), &m), sc.Text())
		out = append(out, m)
	}
	return out
}

// TestMetaTrainAndFewShotEval meta-trains LoRA with each algorithm,
// checks the adapter folder and metrics, that the run repeats bit for bit
// from its seed, and that gotune eval --few-shot starts from it.
func TestMetaTrainAndFewShotEval(t *testing.T) {
	for _, algo := range []string{"reptile", "fomaml"} {
		t.Run(algo, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "meta")
			r := runGotune(t, quickMeta(out, "--algo", algo)...)
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			assert.Contains(t, r.stdout, "meta-step 2/2")
			h, err := peft.ReadHeader(out)
			require.NoError(t, err)
			assert.Equal(t, "LORA", h.PeftType)
			ms := readMetaMetrics(t, out)
			require.Len(t, ms, 4, "eval, 2 meta-steps, eval")
			assert.True(t, ms[0].Eval && ms[3].Eval)
			require.NotNil(t, ms[0].ValAcc)
			require.NotNil(t, ms[3].TrainAcc)
			require.NotNil(t, ms[1].QueryLoss)
			assert.Equal(t, 2, ms[2].MetaStep)
			assert.InDelta(t, 0.5, *ms[2].OuterLR*map[string]float64{"reptile": 1, "fomaml": 100}[algo], 1e-12, "linear annealing")

			// Same seed, same initialisation.
			again := filepath.Join(t.TempDir(), "again")
			r = runGotune(t, quickMeta(again, "--algo", algo)...)
			require.Equal(t, 0, r.code, r.stderr)
			a, err := os.ReadFile(filepath.Join(out, "adapter_model.safetensors"))
			require.NoError(t, err)
			b, err := os.ReadFile(filepath.Join(again, "adapter_model.safetensors"))
			require.NoError(t, err)
			assert.Equal(t, a, b, "the run is not reproducible from --seed")

			r = runGotune(t, "eval", "--few-shot", "2", "--adapt-steps", "1", "--model", demoModel, "--init-adapter", out,
				"--synth-tasks", "cipher:7,cipher:8", "--query", "3", "--device", "cpu")
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			assert.Contains(t, r.stdout, "task 2/2 cipher:8: exact match ")
			assert.Contains(t, r.stdout, "2-shot exact match over 2 tasks: mean ")
		})
	}
}

// TestMetaTrainOtherMethods meta-trains bottleneck adapters, prefix and
// prompt tuning through the same mechanism and evaluates from the result.
func TestMetaTrainOtherMethods(t *testing.T) {
	for _, method := range []string{"adapter", "prefix", "prompt"} {
		t.Run(method, func(t *testing.T) {
			out := filepath.Join(t.TempDir(), "meta")
			r := runGotune(t, quickMeta(out, "--method", method, "--meta-steps", "1", "--eval-tasks", "0", "--val-synth-tasks=")...)
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			_, err := peft.ReadHeader(out)
			require.NoError(t, err)
			r = runGotune(t, "eval", "--few-shot", "2", "--adapt-steps", "1", "--model", demoModel, "--method", method,
				"--init-adapter", out, "--synth-tasks", "cipher:7", "--query", "2", "--device", "cpu")
			require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			assert.Contains(t, r.stdout, "2-shot exact match over 1 tasks")
		})
	}
}

// TestMetaTrainOnCUDABackend runs meta-training and few-shot evaluation
// with --device cuda (the emulator under make test) and compares the first
// meta-step's losses with the CPU's.
func TestMetaTrainOnCUDABackend(t *testing.T) {
	lib := cudaDriver(t)
	dir := t.TempDir()
	args := func(out, device string) []string {
		return quickMeta(out, "--meta-steps", "1", "--inner-steps", "1", "--eval-tasks", "0", "--val-synth-tasks=", "--device", device)
	}
	r := runGotune(t, args(filepath.Join(dir, "cpu"), "cpu")...)
	require.Equal(t, 0, r.code, r.stderr)
	r = runGotuneEnv(t, []string{"GOTUNE_LIBCUDA=" + lib}, args(filepath.Join(dir, "cuda"), "cuda")...)
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	assert.Contains(t, r.stdout, " on cuda:")
	c, g := readMetaMetrics(t, filepath.Join(dir, "cpu")), readMetaMetrics(t, filepath.Join(dir, "cuda"))
	require.Len(t, c, 1)
	require.Len(t, g, 1)
	assert.InEpsilon(t, *c[0].SupportLoss, *g[0].SupportLoss, 1e-4)
	assert.InEpsilon(t, *c[0].QueryLoss, *g[0].QueryLoss, 1e-3)

	r = runGotuneEnv(t, []string{"GOTUNE_LIBCUDA=" + lib}, "eval", "--few-shot", "2", "--adapt-steps", "1", "--model", demoModel,
		"--init-adapter", filepath.Join(dir, "cuda"), "--synth-tasks", "cipher:7", "--query", "2", "--device", "cuda")
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	assert.Contains(t, r.stdout, "2-shot exact match over 1 tasks")
}

// TestFewShotBadInput checks that mistakes are one-line errors naming
// the file or option.
func TestFewShotBadInput(t *testing.T) {
	dir := t.TempDir()
	empty := writeTemp(t, "empty.jsonl", "")
	small := writeTemp(t, "small.jsonl", strings.Repeat(`{"instruction":"Copy.","input":"ab","output":"ab"}`+"\n", 3))
	tokens := writeTemp(t, "tokens.jsonl", strings.Repeat(`{"input_ids":[1,2,3]}`+"\n", 4))
	out := filepath.Join(dir, "out")
	meta := func(extra ...string) []string {
		return append([]string{"meta-train", "--model", demoModel, "--device", "cpu", "--out", out, "--shots", "2", "--query", "1"}, extra...)
	}
	eval := func(extra ...string) []string {
		return append([]string{"eval", "--model", demoModel, "--device", "cpu", "--few-shot", "2"}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"missing task file", meta("--tasks", filepath.Join(dir, "nope.jsonl")), "--tasks: stat " + filepath.Join(dir, "nope.jsonl")},
		{"empty task file", meta("--tasks", empty), empty + ": no examples (the file is empty)"},
		{"k larger than a task", meta("--tasks", small, "--shots", "3"), small + " has 3 examples, fewer than --shots 3 + --query 1"},
		{"missing tasks dir", meta("--tasks-dir", filepath.Join(dir, "none")), "--tasks-dir: open"},
		{"no tasks", meta(), "give the meta-training tasks as --tasks or --tasks-dir, or as --synth-family"},
		{"two kinds of tasks", meta("--tasks", small, "--synth-family", "cipher"), "(one kind)"},
		{"unknown family", meta("--synth-family", "poems"), `--synth-family: unknown task family "poems"`},
		{"unknown algo", meta("--synth-family", "cipher", "--algo", "maml"), `--algo: unknown meta-learning algorithm "maml"`},
		{"fomaml without query", meta("--synth-family", "cipher", "--algo", "fomaml", "--query", "0"), "--query must be at least 1"},
		{"full weights", meta("--synth-family", "cipher", "--method", "full"), `--method "full": few-shot adaptation trains an adapter`},
		{"bad inner opt", meta("--synth-family", "cipher", "--inner-opt", "lion"), `--inner-opt: unknown optimizer "lion"`},
		{"zero meta-steps", meta("--synth-family", "cipher", "--meta-steps", "0"), "--meta-steps must be at least 1"},
		{"unscorable val task", meta("--synth-family", "cipher", "--val-tasks", tokens), "--val-tasks: " + tokens + " is not instruction or chat data"},
		{"bad val synth task", meta("--synth-family", "cipher", "--val-synth-tasks", "cipher:x"), "--val-synth-tasks: task \"cipher:x\""},
		{"eval without tasks", eval(), "--few-shot needs tasks"},
		{"eval k zero", append(eval("--synth-tasks", "cipher:7"), "--few-shot", "0"), "--few-shot must be at least 1"},
		{"eval k larger than a task", eval("--tasks", small, "--few-shot", "3"), small + " has 3 examples, fewer than --few-shot 3 + 1 to score"},
		{"eval missing task", eval("--tasks", filepath.Join(dir, "nope.jsonl")), "--tasks: stat"},
		{"eval unknown synth task", eval("--synth-tasks", "poem"), `--synth-tasks: unknown task "poem"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := runGotune(t, tc.args...)
			assert.Equal(t, 1, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			first, _, _ := strings.Cut(strings.TrimSpace(r.stderr), "\n")
			assert.Contains(t, first, tc.want)
			assert.NotContains(t, r.stderr, "goroutine", "a panic trace")
		})
	}
}

// TestFewShotInContext runs the in-context baseline: no adaptation, k
// examples in front of each query, and a k whose prompts exceed the
// demo model's 128 positions is a one-line error naming k.
func TestFewShotInContext(t *testing.T) {
	r := runGotune(t, "eval", "--few-shot", "1", "--in-context", "--model", demoModel,
		"--synth-tasks", "cipher:1,cipher:7", "--query", "3", "--device", "cpu")
	require.Equal(t, 0, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	assert.Contains(t, r.stdout, "k = 1 in context (no adaptation), 2 tasks")
	assert.Contains(t, r.stdout, "task 2/2 cipher:7: exact match ")
	assert.Contains(t, r.stdout, "(in context)")
	assert.Contains(t, r.stdout, "1-shot exact match over 2 tasks")

	r = runGotune(t, "eval", "--few-shot", "8", "--in-context", "--model", demoModel,
		"--synth-tasks", "cipher:7", "--query", "1", "--device", "cpu")
	assert.Equal(t, 1, r.code, "stdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
	first, _, _ := strings.Cut(strings.TrimSpace(r.stderr), "\n")
	assert.Contains(t, first, "with 8 support examples")
	assert.Contains(t, first, "more than the model's 128 positions; use a smaller k")
}
