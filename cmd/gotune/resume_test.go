package main

import (
	"bytes"
	"cmp"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
)

// resumeArgs are a golden run's flags with a shuffled data order, a
// linear schedule with warmup, one example per batch (so checkpoints fall
// mid-epoch) and six steps.
func resumeArgs(t *testing.T, method, out string, extra ...string) []string {
	t.Helper()
	return resumeArgsOf(t, "llama-gqa", method, out, extra...)
}

// resumeArgsOf is resumeArgs for the golden model set name.
func resumeArgsOf(t *testing.T, name, method, out string, extra ...string) []string {
	t.Helper()
	set, err := golden.Load(filepath.Join(goldenDir, name))
	if err != nil {
		t.Fatal(err)
	}
	args := append(goldenTrainArgs(set, set.Run("full"), out),
		"--method", method, "--steps", "6", "--batch-size", "1", "--shuffle=true", "--seed", "5",
		"--lr-schedule", "linear", "--warmup-steps", "1")
	return append(args, extra...)
}

// mustTrain runs gotune and fails the test unless it succeeds.
func mustTrain(t *testing.T, args []string) result {
	t.Helper()
	r := runGotune(t, args...)
	if r.code != 0 {
		t.Fatalf("gotune %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), r.code, r.stdout, r.stderr)
	}
	return r
}

func readMetrics(t *testing.T, out string) []train.StepMetrics {
	t.Helper()
	ms, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
	if err != nil {
		t.Fatal(err)
	}
	return ms
}

// Training 6 steps straight and training with --save-every 3, stopping
// after step 5 (with the checkpoint of step 6 half written) and resuming
// from the output folder give the same per-step losses and bit-identical
// final weights, for a full fine-tune, for LoRA and for LoRA with dropout
// (whose mask streams the checkpoint saves and restores), and for models
// whose config asks for base-model dropout (masks derived from --seed and
// the step, nothing to save).
func TestResumeMatchesStraightRun(t *testing.T) {
	for _, tc := range []struct {
		name, method, weights string
		flags                 []string // method flags, given to every run
		set                   string   // the golden model set; "" is llama-gqa
	}{
		{"full", "full", "model.safetensors", nil, ""},
		{"lora", "lora", "adapter_model.safetensors", nil, ""},
		{"lora-dropout", "lora", "adapter_model.safetensors", []string{"--lora-dropout", "0.1"}, ""},
		// Loaded into bfloat16 storage; the resumed run's float32 masters
		// are re-read from the checkpoint exactly.
		{"full-bf16", "full", "model.safetensors", []string{"--precision", "bf16"}, ""},
		{"full-gpt2-base-dropout", "full", "model.safetensors", nil, "gpt2-dropout"},
		{"lora-llama-attention-dropout", "lora", "adapter_model.safetensors", nil, "llama-dropout"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			outA, outB := filepath.Join(dir, "a"), filepath.Join(dir, "b")
			set := cmp.Or(tc.set, "llama-gqa")
			args := func(out string, extra ...string) []string {
				return resumeArgsOf(t, set, tc.method, out, append(slices.Clone(tc.flags), extra...)...)
			}
			mustTrain(t, args(outA))
			mustTrain(t, args(outB, "--save-every", "3"))
			want := readMetrics(t, outA)
			if len(want) != 6 {
				t.Fatalf("straight run: %d metrics lines", len(want))
			}

			// Simulate a crash during step 6's checkpoint: metrics got to
			// step 5 plus half a line; checkpoint-6 lacks its state file.
			ckpt6 := train.CheckpointDir(outB, 6)
			for _, f := range []string{train.StateFile, tc.weights} {
				if _, err := os.Stat(filepath.Join(ckpt6, f)); err != nil {
					t.Fatalf("checkpoint-6: %v", err)
				}
			}
			if err := os.Remove(filepath.Join(ckpt6, train.StateFile)); err != nil {
				t.Fatal(err)
			}
			raw, err := os.ReadFile(filepath.Join(outB, train.MetricsFile))
			if err != nil {
				t.Fatal(err)
			}
			lines := bytes.SplitAfter(raw, []byte("\n"))
			cut := append(bytes.Join(lines[:5], nil), lines[5][:10]...)
			if err := os.WriteFile(filepath.Join(outB, train.MetricsFile), cut, 0o644); err != nil {
				t.Fatal(err)
			}
			for _, f := range []string{tc.weights, "loss.png"} {
				os.Remove(filepath.Join(outB, f))
			}

			// The incomplete checkpoint is refused by name.
			r := runGotune(t, args(outB, "--resume", ckpt6)...)
			if r.code == 0 || !strings.Contains(r.stderr, ckpt6) || !strings.Contains(r.stderr, "incomplete") {
				t.Fatalf("resume from the incomplete checkpoint: exit %d, stderr %s", r.code, r.stderr)
			}
			// A trajectory-changing difference is refused, naming it.
			r = runGotune(t, args(outB, "--resume", outB, "--lr", "0.02")...)
			if r.code == 0 || !strings.Contains(r.stderr, "--lr is 0.02 here but 0.01 in the checkpoint") {
				t.Fatalf("resume with another --lr: exit %d, stderr %s", r.code, r.stderr)
			}
			// So is another resolved precision (auto is fp32 on the CPU).
			here, there := "bf16", "fp32"
			if slices.Contains(tc.flags, "bf16") {
				here, there = there, here
			}
			r = runGotune(t, args(outB, "--resume", outB, "--precision", here)...)
			if r.code == 0 || !strings.Contains(r.stderr, "--precision is "+here+" here but "+there+" in the checkpoint") {
				t.Fatalf("resume with another --precision: exit %d, stderr %s", r.code, r.stderr)
			}
			r = runGotune(t, args(outB, "--resume", outB, "--seed", "6")...)
			if r.code == 0 || !strings.Contains(r.stderr, "--seed is 6 here but 5") {
				t.Fatalf("resume with another --seed: exit %d, stderr %s", r.code, r.stderr)
			}

			// Resuming from the folder picks checkpoint-3, warns about
			// checkpoint-6 and about the harmless --log-every change, and
			// restores the random state (LoRA saves its dropout streams,
			// also at dropout 0).
			r = mustTrain(t, args(outB, "--resume", outB, "--save-every", "3", "--log-every", "2"))
			if !strings.Contains(r.stdout, "resuming from "+train.CheckpointDir(outB, 3)) ||
				!strings.Contains(r.stderr, "skipping the incomplete checkpoint "+ckpt6) ||
				!strings.Contains(r.stderr, "--log-every is 2 here but 1") ||
				strings.Contains(r.stderr, "restart") {
				t.Errorf("resume output:\nstdout:\n%s\nstderr:\n%s", r.stdout, r.stderr)
			}
			if tc.method == "lora" {
				st, err := train.ReadState(train.CheckpointDir(outB, 3))
				if err != nil {
					t.Fatal(err)
				}
				if len(st.RandState) == 0 {
					t.Error("the LoRA checkpoint holds no random state")
				}
			}
			got := readMetrics(t, outB)
			if len(got) != len(want) {
				t.Fatalf("resumed metrics.jsonl has %d lines, want %d", len(got), len(want))
			}
			for i := range want {
				g, w := got[i], want[i]
				if g.Step != w.Step || g.Loss != w.Loss || g.LR != w.LR || g.GradNorm != w.GradNorm || g.Tokens != w.Tokens || g.Epoch != w.Epoch {
					t.Errorf("step %d: resumed %+v, straight %+v", i+1, g, w)
				}
			}
			a, err := os.ReadFile(filepath.Join(outA, tc.weights))
			if err != nil {
				t.Fatal(err)
			}
			b, err := os.ReadFile(filepath.Join(outB, tc.weights))
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(a, b) {
				t.Errorf("%s of the resumed run differs from the straight run's", tc.weights)
			}
			if _, err := train.ReadState(ckpt6); err != nil {
				t.Errorf("the resumed run did not rewrite checkpoint-6: %v", err)
			}
			if _, err := os.Stat(filepath.Join(outB, "loss.png")); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestSaveTotalLimitCLI(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	mustTrain(t, resumeArgs(t, "full", out, "--save-every", "2", "--save-total-limit", "2"))
	entries, err := os.ReadDir(out)
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, e := range entries {
		if e.IsDir() {
			dirs = append(dirs, e.Name())
		}
	}
	if want := []string{"checkpoint-4", "checkpoint-6"}; !slices.Equal(dirs, want) {
		t.Errorf("folders %v, want %v", dirs, want)
	}
	// A full checkpoint is a usable model folder: it has the tokenizer
	// when the base model has one (the golden model has none) and the
	// model files.
	for _, f := range []string{"config.json", "model.safetensors", train.StateFile, train.MomentsFile} {
		if _, err := os.Stat(filepath.Join(out, "checkpoint-6", f)); err != nil {
			t.Error(err)
		}
	}
	r := runGotune(t, resumeArgs(t, "full", filepath.Join(t.TempDir(), "o"), "--save-every", "-1")...)
	if r.code == 0 || !strings.Contains(r.stderr, "--save-every") {
		t.Errorf("--save-every -1: exit %d, stderr %s", r.code, r.stderr)
	}
	r = runGotune(t, resumeArgs(t, "lora", filepath.Join(t.TempDir(), "o"), "--resume", filepath.Join(out, "checkpoint-4"))...)
	if r.code == 0 || !strings.Contains(r.stderr, "--method full, not lora") {
		t.Errorf("resume with another method: exit %d, stderr %s", r.code, r.stderr)
	}
}
