package main

import (
	"bytes"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/internal/golden"
)

func TestParseSize(t *testing.T) {
	tests := []struct {
		in   string
		want int64 // 0: an error
	}{
		{"5GB", 5_000_000_000},
		{"500MB", 500_000_000},
		{" 10 kb ", 10_000},
		{"2GiB", 2 << 30},
		{"1.5GB", 1_500_000_000},
		{"64KiB", 65536},
		{"123", 123},
		{"123B", 123},
		{"1TB", 1_000_000_000_000},
		{"", 0},
		{"GB", 0},
		{"abc", 0},
		{"5XB", 0},
		{"1ooKB", 0},
		{"0", 0},
		{"0.1B", 0},
		{"-1MB", 0},
		{"1e9", 0},
		{"99999999999TB", 0},
	}
	for _, tc := range tests {
		got, err := parseSize(tc.in)
		if tc.want == 0 {
			if err == nil {
				t.Errorf("parseSize(%q) = %d, want an error", tc.in, got)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("parseSize(%q) = %d, %v; want %d", tc.in, got, err, tc.want)
		}
	}
}

// storedDTypes returns the set of dtypes stored in a checkpoint folder,
// the number of weight files, and config.json's torch_dtype.
func storedDTypes(t *testing.T, dir string) (dtypes map[string]bool, files int, torchDtype string) {
	t.Helper()
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	dtypes = map[string]bool{}
	for _, n := range set.Names() {
		info, _ := set.Info(n)
		dtypes[info.DType] = true
	}
	m, err := model.Load(dir, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	return dtypes, len(set.Files()), m.Config().TorchDtype
}

// logitsOf loads a checkpoint and returns its logits on fixed ids.
func logitsOf(t *testing.T, dir string) []float32 {
	t.Helper()
	be := cpu.New()
	m, err := model.Load(dir, be)
	if err != nil {
		t.Fatal(err)
	}
	lg, err := m.Logits(nil, mergeIDs, 2, 6, true)
	if err != nil {
		t.Fatal(err)
	}
	return be.Download(lg)
}

// sameBits reports whether a and b hold the same float32 bit patterns.
func sameBits(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}

// TestTrainSaveDType trains the bundled BF16 demo model for one full
// step and checks the stored dtype for each --save-dtype, and that a tiny
// --max-shard-size writes an index and several shards holding exactly
// the weights of the unsharded save.
func TestTrainSaveDType(t *testing.T) {
	demoDir := filepath.Join("..", "..", "testdata", "demo")
	data := filepath.Join(t.TempDir(), "d.jsonl")
	if status, _, stderr := gotuneIn("data", "synth", "--task", "upper", "--n", "4", "--out", data); status != 0 {
		t.Fatal(stderr)
	}
	train := func(t *testing.T, extra ...string) (string, string) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "run")
		args := append([]string{"train", "--model", demoDir, "--data", data, "--method", "full",
			"--steps", "1", "--batch-size", "2", "--seq-len", "32", "--lr", "1e-3", "--device", "cpu", "--out", out, "--log-every", "0"}, extra...)
		status, stdout, stderr := gotuneIn(args...)
		if status != 0 {
			t.Fatalf("train %v: status %d\n%s%s", extra, status, stdout, stderr)
		}
		return out, stdout
	}
	tests := []struct {
		flags     []string
		want      string
		wantTorch string
	}{
		{nil, "BF16", "bfloat16"}, // auto: the demo's torch_dtype
		{[]string{"--save-dtype", "auto"}, "BF16", "bfloat16"},
		{[]string{"--save-dtype", "f32"}, "F32", "float32"},
		{[]string{"--save-dtype", "f16"}, "F16", "float16"},
	}
	outs := map[string]string{}
	for _, tc := range tests {
		out, stdout := train(t, tc.flags...)
		dtypes, files, torch := storedDTypes(t, out)
		if len(dtypes) != 1 || !dtypes[tc.want] || files != 1 || torch != tc.wantTorch {
			t.Errorf("%v: stored %v in %d files, torch_dtype %q; want %s in 1, %q", tc.flags, dtypes, files, torch, tc.want, tc.wantTorch)
		}
		if !strings.Contains(stdout, "saved the trained weights ("+tc.want+")") {
			t.Errorf("%v: stdout does not say the dtype:\n%s", tc.flags, stdout)
		}
		outs[tc.want] = out
	}
	// The weights differ by dtype (the demo was trained in float32 for a
	// step, so F32 keeps bits BF16 drops): the test can see a wrong dtype.
	if sameBits(logitsOf(t, outs["F32"]), logitsOf(t, outs["BF16"])) {
		t.Error("F32 and BF16 saves give identical logits")
	}

	for _, dtype := range []string{"BF16", "F32"} {
		out, stdout := train(t, "--save-dtype", strings.ToLower(dtype), "--max-shard-size", "100KB")
		dtypes, files, _ := storedDTypes(t, out)
		if files < 3 || !dtypes[dtype] || len(dtypes) != 1 {
			t.Errorf("%s with 100KB shards: %d files of %v, want several of %s", dtype, files, dtypes, dtype)
		}
		if _, err := os.Stat(filepath.Join(out, safetensors.IndexFile)); err != nil {
			t.Error(err)
		}
		if !strings.Contains(stdout, "shards)") {
			t.Errorf("stdout does not mention the shards:\n%s", stdout)
		}
		// Training on the CPU is deterministic, so the sharded run holds
		// the unsharded run's weights exactly.
		if !sameBits(logitsOf(t, out), logitsOf(t, outs[dtype])) {
			t.Errorf("%s: logits of the sharded checkpoint differ from the unsharded one", dtype)
		}
	}
}

// TestMergeSaveDType merges a golden LoRA adapter into its float32 base
// and into a copy of the base that declares bfloat16, checking --save-dtype
// auto follows torch_dtype and that sharded merges reload identically.
func TestMergeSaveDType(t *testing.T) {
	s, err := golden.LoadMethod(filepath.Join(goldenDir, golden.MethodsDir, "lora"))
	if err != nil {
		t.Fatal(err)
	}
	bf16Base := copyModel(t, s.BaseDir())
	cfgPath := filepath.Join(bf16Base, "config.json")
	raw, err := os.ReadFile(cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(raw, []byte(`"torch_dtype": "float32"`)) {
		t.Fatalf("golden base config has no float32 torch_dtype:\n%s", raw)
	}
	raw = bytes.Replace(raw, []byte(`"torch_dtype": "float32"`), []byte(`"torch_dtype": "bfloat16"`), 1)
	if err := os.WriteFile(cfgPath, raw, 0o644); err != nil {
		t.Fatal(err)
	}
	merge := func(t *testing.T, base string, extra ...string) string {
		t.Helper()
		out := filepath.Join(t.TempDir(), "merged")
		args := append([]string{"merge", "--model", base, "--adapter", s.AdapterDir(), "--out", out}, extra...)
		status, stdout, stderr := gotuneIn(args...)
		if status != 0 {
			t.Fatalf("merge %v: status %d\n%s%s", extra, status, stdout, stderr)
		}
		return out
	}
	tests := []struct {
		name  string
		base  string
		flags []string
		want  string
	}{
		{"float32 base, auto", s.BaseDir(), nil, "F32"},
		{"bfloat16 base, auto", bf16Base, nil, "BF16"},
		{"bfloat16 base, f32", bf16Base, []string{"--save-dtype", "f32"}, "F32"},
		{"float32 base, bf16", s.BaseDir(), []string{"--save-dtype", "bf16"}, "BF16"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out := merge(t, tc.base, tc.flags...)
			dtypes, files, _ := storedDTypes(t, out)
			if len(dtypes) != 1 || !dtypes[tc.want] || files != 1 {
				t.Fatalf("stored %v in %d files, want %s in one", dtypes, files, tc.want)
			}
			sharded := merge(t, tc.base, append(tc.flags, "--max-shard-size", "2KB")...)
			dtypes, files, _ = storedDTypes(t, sharded)
			if len(dtypes) != 1 || !dtypes[tc.want] || files < 3 {
				t.Fatalf("2KB shards: %v in %d files, want several of %s", dtypes, files, tc.want)
			}
			if !sameBits(logitsOf(t, sharded), logitsOf(t, out)) {
				t.Error("logits of the sharded merge differ from the unsharded one")
			}
		})
	}
}

// TestSaveFlagErrors checks that bad save flags are usage errors, and that
// they are refused for adapter methods (which save PEFT folders).
func TestSaveFlagErrors(t *testing.T) {
	demoDir := filepath.Join("..", "..", "testdata", "demo")
	data := filepath.Join(t.TempDir(), "d.jsonl")
	if status, _, stderr := gotuneIn("data", "synth", "--task", "upper", "--n", "2", "--out", data); status != 0 {
		t.Fatal(stderr)
	}
	trainArgs := []string{"train", "--model", demoDir, "--data", data, "--steps", "1", "--batch-size", "1", "--device", "cpu", "--out", filepath.Join(t.TempDir(), "o")}
	mergeArgs := []string{"merge", "--model", demoDir, "--adapter", t.TempDir(), "--out", filepath.Join(t.TempDir(), "m")}
	tests := []struct {
		args []string
		want string
	}{
		{append(trainArgs, "--save-dtype", "f64"), `unknown --save-dtype "f64"`},
		{append(trainArgs, "--max-shard-size", "5XB"), "--max-shard-size: unknown unit"},
		{append(trainArgs, "--max-shard-size", "0"), "--max-shard-size"},
		{append(trainArgs, "--method", "lora", "--save-dtype", "bf16"), "apply to full-weight checkpoints"},
		{append(trainArgs, "--method", "lora", "--max-shard-size", "1GB"), "--method lora saves an adapter folder"},
		{append(mergeArgs, "--save-dtype", "int8"), `unknown --save-dtype "int8"`},
		{append(mergeArgs, "--max-shard-size", "lots"), "--max-shard-size"},
	}
	for _, tc := range tests {
		status, stdout, stderr := gotuneIn(tc.args...)
		if status != exitError || !strings.Contains(stderr, tc.want) || !strings.Contains(stderr, "--help' for usage") {
			t.Errorf("%v: status %d, stderr %q, want a usage error with %q\n%s", tc.args[len(tc.args)-2:], status, stderr, tc.want, stdout)
		}
	}
}

// TestCheckpointsStayFloat32 trains the BF16 demo with resumable
// checkpoints: they hold float32 weights (the exact state a resumed run
// continues from), while the final save, also after --resume from such a
// checkpoint, follows the base model's bfloat16.
func TestCheckpointsStayFloat32(t *testing.T) {
	demoDir := filepath.Join("..", "..", "testdata", "demo")
	data := filepath.Join(t.TempDir(), "d.jsonl")
	if status, _, stderr := gotuneIn("data", "synth", "--task", "upper", "--n", "4", "--out", data); status != 0 {
		t.Fatal(stderr)
	}
	out := filepath.Join(t.TempDir(), "run")
	args := []string{"train", "--model", demoDir, "--data", data, "--method", "full", "--steps", "2",
		"--batch-size", "2", "--seq-len", "32", "--device", "cpu", "--out", out, "--log-every", "0", "--save-every", "1"}
	if status, stdout, stderr := gotuneIn(args...); status != 0 {
		t.Fatalf("status %d\n%s%s", status, stdout, stderr)
	}
	ckpt := filepath.Join(out, "checkpoint-1")
	if dtypes, _, torch := storedDTypes(t, ckpt); len(dtypes) != 1 || !dtypes["F32"] || torch != "float32" {
		t.Errorf("checkpoint stores %v (torch_dtype %q), want F32", dtypes, torch)
	}
	if dtypes, _, torch := storedDTypes(t, out); len(dtypes) != 1 || !dtypes["BF16"] || torch != "bfloat16" {
		t.Errorf("final save stores %v (torch_dtype %q), want BF16", dtypes, torch)
	}
	out2 := filepath.Join(t.TempDir(), "resumed")
	args[slices.Index(args, "--out")+1] = out2
	if status, stdout, stderr := gotuneIn(append(args, "--resume", ckpt)...); status != 0 {
		t.Fatalf("resume: status %d\n%s%s", status, stdout, stderr)
	}
	if dtypes, _, torch := storedDTypes(t, out2); len(dtypes) != 1 || !dtypes["BF16"] || torch != "bfloat16" {
		t.Errorf("save after --resume stores %v (torch_dtype %q), want BF16 like the base", dtypes, torch)
	}
}
