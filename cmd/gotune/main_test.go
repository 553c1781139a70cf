package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const goldenDir = "../../testdata/golden"

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// gotuneBinary builds the command once per test run into a temporary
// directory, so the tests exercise the real binary: flag parsing, exit
// statuses, and what reaches stdout and stderr.
func gotuneBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "gotune-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "gotune")
		goTool := filepath.Join(runtime.GOROOT(), "bin", "go")
		if _, err := os.Stat(goTool); err != nil {
			goTool = "go"
		}
		out, err := exec.Command(goTool, "build", "-o", binPath, ".").CombinedOutput()
		if err != nil {
			buildErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

type result struct {
	code           int
	stdout, stderr string
}

// noDriver hides any CUDA driver (the emulator that make test points
// GOTUNE_LIBCUDA at, or a real one) from the binary, so the CLI tests see
// the same CPU-only machine everywhere.
const noDriver = "GOTUNE_LIBCUDA=/nonexistent/libcuda.so.1"

func runGotune(t *testing.T, args ...string) result {
	t.Helper()
	return runGotuneEnv(t, []string{noDriver}, args...)
}

// runGotuneEnv runs the binary with extra environment entries.
func runGotuneEnv(t *testing.T, env []string, args ...string) result {
	t.Helper()
	cmd := exec.Command(gotuneBinary(t), args...)
	cmd.Env = append(os.Environ(), env...)
	var so, se bytes.Buffer
	cmd.Stdout, cmd.Stderr = &so, &se
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return result{code, so.String(), se.String()}
}

// goldenTrainArgs returns the flags reproducing a golden run.
func goldenTrainArgs(set *golden.Set, run *golden.Run, out string) []string {
	return []string{"train",
		"--model", set.Dir, "--data", set.Path(set.Meta.Data), "--method", "full",
		"--steps", fmt.Sprint(run.Steps), "--batch-size", fmt.Sprint(run.BatchSize),
		"--grad-accum", fmt.Sprint(run.GradAccum), "--seq-len", fmt.Sprint(run.SeqLen),
		"--lr", fmt.Sprint(run.LR), "--lr-schedule", run.Schedule, "--warmup-steps", fmt.Sprint(run.WarmupSteps),
		"--weight-decay", fmt.Sprint(run.WeightDecay), "--adam-beta1", fmt.Sprint(run.Betas[0]),
		"--adam-beta2", fmt.Sprint(run.Betas[1]), "--adam-eps", fmt.Sprint(run.Eps),
		"--max-grad-norm", fmt.Sprint(run.MaxGradNorm), fmt.Sprintf("--shuffle=%v", run.Shuffle),
		"--device", "cpu", "--out", out, "--log-every", "1", "--seed", fmt.Sprint(run.Seed),
	}
}

// TestTrainMatchesGolden runs "gotune train" on a golden model with the
// golden run's hyper-parameters and checks metrics.jsonl against PyTorch,
// then reloads the saved model and compares its weights with PyTorch's
// weights after the same steps.
func TestTrainMatchesGolden(t *testing.T) {
	for _, name := range []string{"llama-gqa", "gpt2", "qwen3", "olmo2", "granite", "mistral-swa", "qwen2-swa", "gpt2-dropout", "llama-dropout", "phi3", "phi3-dropout", "glm", "glm4", "gemma2", "gemma3"} {
		t.Run(name, func(t *testing.T) {
			set, err := golden.Load(filepath.Join(goldenDir, name))
			if err != nil {
				t.Fatal(err)
			}
			for _, runName := range []string{"full", "accum"} {
				run := set.Run(runName)
				if run == nil || run.Schedule != "constant" && run.TotalSteps != run.Steps {
					continue // the CLI always schedules over the run's own length
				}
				out := filepath.Join(t.TempDir(), "out")
				r := runGotune(t, goldenTrainArgs(set, run, out)...)
				if r.code != 0 {
					t.Fatalf("%s: exit %d\nstdout:\n%s\nstderr:\n%s", runName, r.code, r.stdout, r.stderr)
				}
				if !strings.Contains(r.stdout, "trainable params: ") || !strings.Contains(r.stdout, "trainable%: 100.0000") {
					t.Errorf("%s: no parameter summary in\n%s", runName, r.stdout)
				}
				ms, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
				if err != nil {
					t.Fatal(err)
				}
				for _, msg := range golden.CompareSteps(goldenSteps(ms), run, set.Tensor) {
					t.Errorf("%s %s", runName, msg)
				}
				norms, _ := set.Tensor(run.Key("grad_norms"))
				if _, err := os.Stat(filepath.Join(out, train.LossPlotFile)); err != nil {
					t.Error(err)
				}
				// The saved checkpoint reloads and holds the trained weights.
				be := cpu.New()
				m, err := model.Load(out, be)
				if err != nil {
					t.Fatalf("reloading the saved model: %v", err)
				}
				for _, p := range m.Params() {
					want, _ := set.Tensor(run.Key("after." + p.Name))
					grad, _ := set.Tensor(run.Key("grad." + p.Name))
					if want == nil {
						t.Errorf("saved model has %s, which the golden run lacks", p.Name)
						continue
					}
					if msg, _ := golden.CompareAfter(be.Download(p.W), want, grad, float64(norms[0]), run.LR, run.Steps); msg != "" {
						t.Errorf("%s: saved %s differs from PyTorch's after %d steps: %s", runName, p.Name, run.Steps, msg)
					}
				}
			}
		})
	}
}

// writeTemp writes content to name in a new temporary directory.
func writeTemp(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// copyModel copies a golden model folder's checkpoint files.
func copyModel(t *testing.T, from string) string {
	t.Helper()
	dir := t.TempDir()
	for _, f := range []string{"config.json", "model.safetensors"} {
		b, err := os.ReadFile(filepath.Join(from, f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, f), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func TestTrainBadInput(t *testing.T) {
	llama := filepath.Join(goldenDir, "llama-gqa")
	good := filepath.Join(llama, "data.jsonl")
	malformed := writeTemp(t, "bad.jsonl", `{"input_ids":[1,2,3]}`+"\n"+`{"input_ids":[1,2,}`+"\n")
	unknown := writeTemp(t, "unknown.jsonl", `{"input_ids":[1,2,3]}`+"\n"+`{"input_ids":[1,2],"text":"hi"}`+"\n")
	outOfVocab := writeTemp(t, "vocab.jsonl", `{"input_ids":[1,2,3,64]}`+"\n")
	blank := writeTemp(t, "blank.jsonl", `{"input_ids":[1,2,3]}`+"\n\n"+`{"input_ids":[1,2,3]}`+"\n")
	truncated := copyModel(t, llama)
	if err := os.Truncate(filepath.Join(truncated, "model.safetensors"), 1000); err != nil {
		t.Fatal(err)
	}
	badConfig := copyModel(t, llama)
	if err := os.WriteFile(filepath.Join(badConfig, "config.json"), []byte(`{"architectures": ["LlamaForCausalLM"], `), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.jsonl")

	base := func(model, data string, extra ...string) []string {
		return append([]string{"train", "--model", model, "--data", data, "--steps", "1", "--device", "cpu", "--out", filepath.Join(t.TempDir(), "out")}, extra...)
	}
	tests := []struct {
		name string
		args []string
		want []string // substrings of stderr
	}{
		{"no model flag", []string{"train", "--data", good}, []string{"--model is required", "gotune train --help"}},
		{"missing data file", base(llama, missing), []string{missing, "no such file"}},
		{"malformed line", base(llama, malformed), []string{malformed + ":2: malformed JSON"}},
		{"unknown field", base(llama, unknown), []string{unknown + `:2: unknown field "text"`}},
		{"id outside vocab", base(llama, outOfVocab), []string{outOfVocab + ":1: input_ids[3] = 64 is outside the model's vocabulary [0, 64)"}},
		{"blank line", base(llama, blank), []string{blank + ":2: empty line"}},
		{"missing model dir", base(filepath.Join(t.TempDir(), "nomodel"), good), []string{"nomodel", "config.json"}},
		{"truncated safetensors", base(truncated, good), []string{"model.safetensors"}},
		{"malformed config", base(badConfig, good), []string{"config.json"}},
		{"config key that changes the math", base(withConfigKeys(t, llama, `"final_logit_softcapping": 30.0`), good),
			[]string{`config.json: field "final_logit_softcapping": 30.0 changes the model's math and is not implemented for LlamaForCausalLM`}},
		{"unknown architecture", base(withConfigKeys(t, llama, `"architectures": ["BertForMaskedLM"], "model_type": "bert"`), good),
			[]string{`unsupported architecture "BertForMaskedLM"`, "config.json"}},
		{"unknown method", base(llama, good, "--method", "bitfit"), []string{`unknown --method "bitfit"`}},
		{"cuda unavailable", base(llama, good, "--device", "cuda"), []string{"--device cuda: no usable GPU"}},
		{"bad device", base(llama, good, "--device", "tpu"), []string{`unknown --device "tpu"`}},
		{"bad schedule", base(llama, good, "--lr-schedule", "step"), []string{`unknown learning-rate schedule "step"`}},
		{"negative lr", base(llama, good, "--lr", "-1"), []string{"--lr must be"}},
		{"zero batch", base(llama, good, "--batch-size", "0"), []string{"--batch-size must be at least 1"}},
		{"unknown flag", base(llama, good, "--learning-rate", "1"), []string{"flag provided but not defined: --learning-rate", "--help"}},
		{"stray argument", base(llama, good, "extra"), []string{`unexpected argument "extra"`}},
		{"out is the model", []string{"train", "--model", llama, "--data", good, "--out", llama, "--device", "cpu"}, []string{"is the model directory"}},
		{"gpt2 seq-len too long", base(filepath.Join(goldenDir, "gpt2"), good, "--seq-len", "65"), []string{"longer than the model's 64 positions"}},
		{"unknown command", []string{"trian"}, []string{`unknown command "trian"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := runGotune(t, tc.args...)
			if r.code != exitError {
				t.Errorf("exit %d, want %d\nstderr: %s", r.code, exitError, r.stderr)
			}
			for _, w := range tc.want {
				if !strings.Contains(r.stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, r.stderr)
				}
			}
			for _, bad := range []string{"panic", "goroutine", "internal error"} {
				if strings.Contains(r.stderr, bad) {
					t.Errorf("stderr mentions %q:\n%s", bad, r.stderr)
				}
			}
			if n := strings.Count(strings.TrimSpace(r.stderr), "\n"); n > 2 {
				t.Errorf("error is %d lines, want one clear message:\n%s", n+1, r.stderr)
			}
		})
	}
}

func TestHelp(t *testing.T) {
	r := runGotune(t, "--help")
	if r.code != 0 || !strings.Contains(r.stdout, "train") || !strings.Contains(r.stdout, "Commands:") {
		t.Errorf("gotune --help: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	r = runGotune(t, "train", "--help")
	if r.code != 0 {
		t.Fatalf("gotune train --help: exit %d\n%s", r.code, r.stderr)
	}
	for _, flagName := range []string{"model", "data", "method", "steps", "epochs", "batch-size", "grad-accum", "seq-len", "lr",
		"lr-schedule", "warmup-steps", "weight-decay", "adam-beta1", "adam-beta2", "adam-eps", "max-grad-norm", "seed",
		"shuffle", "device", "out", "log-every"} {
		if !strings.Contains(r.stdout, "  --"+flagName+" ") && !strings.Contains(r.stdout, "  --"+flagName+"\n") {
			t.Errorf("train --help does not explain --%s", flagName)
		}
	}
	for _, def := range []string{"(default 5e-05)", `(default "full")`, "(default true)", `(default "auto")`, "(default 0)"} {
		if !strings.Contains(r.stdout, def) {
			t.Errorf("train --help lacks %s", def)
		}
	}
	if r := runGotune(t); r.code != exitError || !strings.Contains(r.stderr, "Usage:") {
		t.Errorf("gotune with no arguments: exit %d, stderr %q", r.code, r.stderr)
	}
}

// cudaDriver returns the CUDA driver library GOTUNE_LIBCUDA names (the
// emulator under make test), failing under CI or make test when it is
// unset and skipping otherwise.
func cudaDriver(t *testing.T) string {
	t.Helper()
	lib := os.Getenv("GOTUNE_LIBCUDA")
	if lib == "" {
		if os.Getenv("CI") == "true" || os.Getenv("GOTUNE_REQUIRE_EMU") == "1" {
			t.Fatal("GOTUNE_LIBCUDA is unset: make test points it at the emulator (make emu)")
		}
		t.Skip("GOTUNE_LIBCUDA unset: run through make test to use the CUDA emulator")
	}
	return lib
}

// TestTrainOnCUDABackend runs a golden full fine-tuning run with
// --device cuda through whatever driver GOTUNE_LIBCUDA names — the CPU
// emulator under make test and CI, the real driver on a GPU machine — and
// checks the trajectory against PyTorch: the whole GPU training path, from
// flag to kernels, end to end.
func TestTrainOnCUDABackend(t *testing.T) {
	lib := cudaDriver(t)
	for _, name := range []string{"llama-gqa", "gpt2", "qwen3", "olmo2", "granite", "mistral-swa", "qwen2-swa", "gpt2-dropout", "llama-dropout", "phi3", "phi3-dropout", "glm", "glm4", "gemma2", "gemma3"} {
		t.Run(name, func(t *testing.T) {
			set, err := golden.Load(filepath.Join(goldenDir, name))
			if err != nil {
				t.Fatal(err)
			}
			run := set.Run("full")
			out := filepath.Join(t.TempDir(), "out")
			// fp32: the float32 path is what PyTorch's goldens check (auto is
			// bf16 on a GPU; precision_test.go checks that one).
			args := append(goldenTrainArgs(set, run, out), "--device", "cuda", "--precision", "fp32") // later flags win
			r := runGotuneEnv(t, []string{"GOTUNE_LIBCUDA=" + lib}, args...)
			if r.code != 0 {
				t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stdout, " on cuda:") {
				t.Errorf("the run did not report a CUDA device:\n%s", r.stdout)
			}
			ms, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
			if err != nil {
				t.Fatal(err)
			}
			for _, msg := range golden.CompareSteps(goldenSteps(ms), run, set.Tensor) {
				t.Error(msg)
			}
		})
	}
}

func TestDeviceAutoSaysCPU(t *testing.T) {
	set, err := golden.Load(filepath.Join(goldenDir, "llama-gqa"))
	if err != nil {
		t.Fatal(err)
	}
	args := goldenTrainArgs(set, set.Run("full"), filepath.Join(t.TempDir(), "out"))
	args = append(args, "--device", "auto", "--steps", "1") // later flags win
	r := runGotune(t, args...)
	if r.code != 0 || !strings.Contains(r.stderr, "using the CPU") {
		t.Errorf("exit %d, stderr %q", r.code, r.stderr)
	}
	if !strings.Contains(r.stdout, "truncated 0 of 2 sequences to seq-len 8") {
		t.Errorf("no truncation report in\n%s", r.stdout)
	}
}

// An interrupt stops training after the current step; the run still
// saves a loadable model and exits with status 130.
func TestInterruptSaves(t *testing.T) {
	set, err := golden.Load(filepath.Join(goldenDir, "llama-gqa"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	args := goldenTrainArgs(set, set.Run("full"), out)
	args = append(args, "--steps", "100000000", "--log-every", "0")
	cmd := exec.Command(gotuneBinary(t), args...)
	cmd.Env = append(os.Environ(), noDriver)
	var se bytes.Buffer
	cmd.Stderr = &se
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// Wait until at least one step is recorded, then interrupt.
	metrics := filepath.Join(out, train.MetricsFile)
	for {
		if b, err := os.ReadFile(metrics); err == nil && bytes.Count(b, []byte("\n")) >= 1 {
			break
		}
		select {
		case err := <-done:
			t.Fatalf("gotune exited before training (%v):\n%s", err, se.String())
		case <-time.After(20 * time.Millisecond):
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	err = <-done
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != exitInterrupted {
		t.Fatalf("exit: %v, want status %d\nstderr: %s", err, exitInterrupted, se.String())
	}
	ms, err := train.ReadMetrics(metrics)
	if err != nil || len(ms) == 0 {
		t.Fatalf("metrics after interrupt: %v, %d lines", err, len(ms))
	}
	if _, err := model.Load(out, cpu.New()); err != nil {
		t.Errorf("model saved on interrupt does not load: %v", err)
	}
	if strings.Contains(se.String(), "panic") {
		t.Errorf("stderr: %s", se.String())
	}
}

// goldenSteps converts metrics.jsonl records for golden.CompareSteps.
func goldenSteps(ms []train.StepMetrics) []golden.Step {
	out := make([]golden.Step, len(ms))
	for i, m := range ms {
		out[i] = golden.Step{Loss: m.Loss, GradNorm: m.GradNorm, LR: m.LR, Tokens: m.Tokens}
	}
	return out
}

// A panic inside a command is a bug: run turns it into one "internal
// error" line and exit status 2, without a stack trace.
func TestPanicBecomesInternalError(t *testing.T) {
	register(&command{Name: "test-panic", Summary: "panics", Run: func(context.Context, *env, []string) error {
		var m map[string]int
		m["x"] = 1 // a nil-map write, standing in for any bug
		return nil
	}})
	defer delete(commands, "test-panic")
	t.Setenv("GOTUNE_DEBUG", "")
	var so, se bytes.Buffer
	code := run(context.Background(), []string{"test-panic"}, &env{Stdout: &so, Stderr: &se})
	if code != exitInternal || !strings.HasPrefix(se.String(), "gotune: internal error: assignment to entry in nil map") {
		t.Errorf("exit %d, stderr %q", code, se.String())
	}
	if strings.Contains(se.String(), "goroutine") {
		t.Errorf("stack trace without GOTUNE_DEBUG: %s", se.String())
	}
}

// A shuffled, epoch-bound run on the tiny smoke-test model: the step count
// follows from --epochs, truncation is reported with the right count, and
// the loss goes down.
func TestTrainEpochsOnTinyModel(t *testing.T) {
	dataPath := "../../testdata/tiny/data.jsonl"
	raw, err := os.ReadFile(dataPath)
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(raw)), "\n")
	long := 0
	for _, l := range lines {
		var rec struct {
			InputIDs []int `json:"input_ids"`
		}
		if err := json.Unmarshal([]byte(l), &rec); err != nil {
			t.Fatal(err)
		}
		if len(rec.InputIDs) > 32 {
			long++
		}
	}
	out := filepath.Join(t.TempDir(), "out")
	r := runGotune(t, "train", "--model", "../../testdata/tiny/llama", "--data", dataPath, "--epochs", "2",
		"--batch-size", "32", "--seq-len", "32", "--lr", "3e-3", "--lr-schedule", "constant", "--device", "cpu", "--out", out)
	if r.code != 0 {
		t.Fatalf("exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}
	if want := fmt.Sprintf("truncated %d of %d sequences to seq-len 32", long, len(lines)); !strings.Contains(r.stdout, want) {
		t.Errorf("stdout lacks %q:\n%s", want, r.stdout)
	}
	ms, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	wantSteps := 2 * ((len(lines) + 31) / 32)
	if len(ms) != wantSteps || ms[len(ms)-1].Epoch != 2 {
		t.Fatalf("%d steps ending at epoch %v, want %d ending at 2", len(ms), ms[len(ms)-1].Epoch, wantSteps)
	}
	if ms[len(ms)-1].Loss >= ms[0].Loss {
		t.Errorf("loss did not fall: %v → %v", ms[0].Loss, ms[len(ms)-1].Loss)
	}
}

// withConfigKeys returns a copy of the model folder src whose config.json
// has the given top-level keys (JSON members) added or replaced.
func withConfigKeys(t *testing.T, src, members string) string {
	t.Helper()
	dir := copyModel(t, src)
	path := filepath.Join(dir, "config.json")
	var cfg map[string]json.RawMessage
	data, err := os.ReadFile(path)
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(data, &cfg))
	var extra map[string]json.RawMessage
	require.NoError(t, json.Unmarshal([]byte("{"+members+"}"), &extra))
	for k, v := range extra {
		cfg[k] = v
	}
	data, err = json.Marshal(cfg)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, data, 0o644))
	return dir
}

// TestTrainWarnsUnknownConfigKeys checks that keys gotune neither reads
// nor knows to be irrelevant are listed in one warning line, and that
// irrelevant ones are not.
func TestTrainWarnsUnknownConfigKeys(t *testing.T) {
	llama := filepath.Join(goldenDir, "llama-gqa")
	model := withConfigKeys(t, llama, `"zz_custom": 1, "aa_note": "x", "use_cache": false`)
	r := runGotune(t, "train", "--model", model, "--data", filepath.Join(llama, "data.jsonl"), "--steps", "1",
		"--device", "cpu", "--out", filepath.Join(t.TempDir(), "out"))
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stderr, "warning: "+filepath.Join(model, "config.json")+": ignoring unknown key(s) aa_note, zz_custom\n")
	assert.NotContains(t, r.stderr, "use_cache")
}
