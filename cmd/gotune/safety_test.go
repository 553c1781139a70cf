package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
)

// safetyArgs trains the golden LLaMA for steps steps on the CPU into out.
func safetyArgs(model, out string, steps int, extra ...string) []string {
	llama := filepath.Join(goldenDir, "llama-gqa")
	args := []string{"train", "--model", model, "--data", filepath.Join(llama, "data.jsonl"), "--steps", fmt.Sprint(steps),
		"--device", "cpu", "--out", out, "--log-every", "0", "--lr-schedule", "constant"}
	return append(args, extra...)
}

// assertOneLineError checks a failed run's exit status and that stderr is
// a short message with every want in it and no runtime crash.
func assertOneLineError(t *testing.T, r result, want ...string) {
	t.Helper()
	assert.Equal(t, exitError, r.code, "stderr: %s", r.stderr)
	for _, w := range want {
		assert.Contains(t, r.stderr, w)
	}
	for _, bad := range []string{"panic", "goroutine", "internal error", "fatal error"} {
		assert.NotContains(t, r.stderr, bad)
	}
	assert.LessOrEqual(t, strings.Count(strings.TrimSpace(r.stderr), "\n"), 1, "want one clear message:\n%s", r.stderr)
}

// Why: "an existing --out folder is silently overwritten and mixed with
// the new run". A second run into it is refused; --overwrite moves the
// old run aside whole (its metrics.jsonl and checkpoints) before training.
func TestOutFolderWithAPreviousRun(t *testing.T) {
	llama := filepath.Join(goldenDir, "llama-gqa")
	out := filepath.Join(t.TempDir(), "out")
	mustTrain(t, safetyArgs(llama, out, 4, "--save-every", "2"))
	old, err := os.ReadFile(filepath.Join(out, train.MetricsFile))
	require.NoError(t, err)

	r := runGotune(t, safetyArgs(llama, out, 2)...)
	assertOneLineError(t, r, "--out "+out+" already holds files (README.md, checkpoint-2, checkpoint-4, config.json, and 5 more)", "--resume "+out, "--overwrite")
	now, err := os.ReadFile(filepath.Join(out, train.MetricsFile))
	require.NoError(t, err)
	assert.Equal(t, string(old), string(now), "a refused run touched metrics.jsonl")

	r = mustTrain(t, safetyArgs(llama, out, 2, "--overwrite"))
	assert.Contains(t, r.stderr, "moved the previous contents of "+out+" to "+out+".old-1")
	aside, err := os.ReadFile(filepath.Join(out+".old-1", train.MetricsFile))
	require.NoError(t, err)
	assert.Equal(t, string(old), string(aside))
	assert.DirExists(t, filepath.Join(out+".old-1", "checkpoint-4"))
	assert.NoDirExists(t, filepath.Join(out, "checkpoint-4"), "an old checkpoint stayed where --resume would pick it up")
	assert.Len(t, readMetrics(t, out), 2)
	assert.NoFileExists(t, filepath.Join(out, fsutil.LockFile), "the lock outlived the run")
}

// Why: "two runs on one folder corrupt each other (no lock), yet one of
// them exits 0". While another run holds --out, a run into it stops at
// once with a message naming the holder.
func TestLockedOutFolder(t *testing.T) {
	out := t.TempDir()
	lock, err := fsutil.LockDir(out)
	require.NoError(t, err)
	defer lock.Release()
	r := runGotune(t, safetyArgs(filepath.Join(goldenDir, "llama-gqa"), out, 2)...)
	assertOneLineError(t, r, "is in use by another gotune run", fmt.Sprintf("process %d", os.Getpid()))
	assert.NoFileExists(t, filepath.Join(out, train.MetricsFile))
}

// Why: "a different base model at the same path resumes silently". The
// checkpoint records the base model's fingerprint; after the model at
// --model changes (one weight), --resume refuses.
func TestResumeRefusesADifferentBaseModel(t *testing.T) {
	model := copyModel(t, filepath.Join(goldenDir, "llama-gqa"))
	out := filepath.Join(t.TempDir(), "out")
	mustTrain(t, safetyArgs(model, out, 4, "--save-every", "2"))
	setWeight(t, model, "model.layers.1.mlp.down_proj.weight", 0, 0.5)
	r := runGotune(t, safetyArgs(model, out, 4, "--save-every", "2", "--resume", out)...)
	assertOneLineError(t, r, "base model (fingerprint of --model) is sha256:", "in the checkpoint")
}

// setWeight overwrites element i of a float32 tensor of dir's
// model.safetensors in place.
func setWeight(t *testing.T, dir, tensor string, i int, v float32) {
	t.Helper()
	path := filepath.Join(dir, "model.safetensors")
	f, err := safetensors.Open(path)
	require.NoError(t, err)
	info, ok := f.Info(tensor)
	f.Close()
	require.True(t, ok, tensor)
	require.Equal(t, safetensors.F32, info.DType)
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	at := 8 + int(binary.LittleEndian.Uint64(b)) + int(info.Begin) + 4*i
	binary.LittleEndian.PutUint32(b[at:], math.Float32bits(v))
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// editJSON rewrites the JSON object file path through edit.
func editJSON(t *testing.T, path string, edit func(map[string]any)) {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(b, &m))
	edit(m)
	b, err = json.Marshal(m)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(path, b, 0o644))
}

// Why: "the disk filling up loses the whole run's weights". Before
// training, a run whose result cannot fit on --out's file system is
// refused, saying how much it needs (a 64 KiB tmpfs; skipped where
// mounting is not permitted).
func TestOutOfDiskIsRefusedBeforeTraining(t *testing.T) {
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", dir).Run() })
	out := filepath.Join(dir, "out")
	r := runGotune(t, safetyArgs(filepath.Join(goldenDir, "llama-gqa"), out, 2)...)
	assertOneLineError(t, r, "--out: "+out+" has", "but the run needs at least")
	assert.NoFileExists(t, filepath.Join(out, train.MetricsFile))
}

// Why: "absurd sizes crash the Go runtime"; NaN/Inf base weights; invalid
// UTF-8; duplicate JSON keys. Each is one line naming what is wrong.
func TestHostileInputIsOneLineError(t *testing.T) {
	llama := filepath.Join(goldenDir, "llama-gqa")
	good := filepath.Join(llama, "data.jsonl")
	configWith := func(key string, v float64) string {
		dir := copyModel(t, llama)
		editJSON(t, filepath.Join(dir, "config.json"), func(m map[string]any) { m[key] = v })
		return dir
	}
	dupConfig := copyModel(t, llama)
	b, err := os.ReadFile(filepath.Join(dupConfig, "config.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dupConfig, "config.json"), []byte(strings.Replace(string(b), "{", `{"vocab_size": 999,`, 1)), 0o644))
	nanModel := copyModel(t, llama)
	setWeight(t, nanModel, "model.embed_tokens.weight", 63*32+5, float32(math.NaN())) // a token the data never uses
	infModel := copyModel(t, llama)
	setWeight(t, infModel, "model.norm.weight", 3, float32(math.Inf(-1)))

	text := tinyModelDir(t)
	hugeID := tinyModelDir(t)
	editJSON(t, filepath.Join(hugeID, "tokenizer.json"), func(m map[string]any) {
		added, _ := m["added_tokens"].([]any)
		m["added_tokens"] = append(added, map[string]any{"id": 1e9, "content": "<huge>", "special": true,
			"single_word": false, "lstrip": false, "rstrip": false, "normalized": false})
	})
	textData := writeTemp(t, "text.jsonl", `{"text": "hello world"}`+"\n")
	badUTF8 := writeTemp(t, "utf8.jsonl", `{"text": "hello"}`+"\n"+"{\"text\": \"ab\xffcd\"}\n")
	badTxt := writeTemp(t, "bad.txt", "first line\nsecond \xc3\x28 line\n")
	dupData := writeTemp(t, "dup.jsonl", `{"input_ids":[1,2,3]}`+"\n"+`{"input_ids":[1,2,3],"input_ids":[4,5]}`+"\n")

	base := func(model, data string, extra ...string) []string {
		return append([]string{"train", "--model", model, "--data", data, "--steps", "1", "--device", "cpu", "--out", filepath.Join(t.TempDir(), "out")}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want []string
	}{
		{"vocab_size 1e12", base(configWith("vocab_size", 1e12), good), []string{`tensor "model.embed_tokens.weight": expected shape [1000000000000 32], found [64 32]`}},
		{"intermediate_size 1e12", base(configWith("intermediate_size", 1e12), good), []string{`mlp.gate_proj.weight": expected shape [1000000000000 32], found [40 32]`}},
		{"num_hidden_layers 1e9", base(configWith("num_hidden_layers", 1e9), good), []string{"the config has 1000000000 layers (num_hidden_layers) but the weights hold 2"}},
		{"tokenizer id 1e9", base(hugeID, textData), []string{"tokenizer.json", "ids up to 1000000000"}},
		{"--lora-r 1e8", base(llama, good, "--method", "lora", "--lora-r", "100000000"), []string{"--lora-r 100000000 exceeds the rank of model.layers.0.self_attn.q_proj's 32×32 weight: use at most 32"}},
		{"prompt 1e6 virtual tokens", base(llama, good, "--method", "prompt", "--num-virtual-tokens", "1000000"), []string{"--num-virtual-tokens 1000000 is more than the model's 64 positions"}},
		{"prefix 1e6 virtual tokens", base(llama, good, "--method", "prefix", "--num-virtual-tokens", "1000000"), []string{"--num-virtual-tokens 1000000 is more than the model's 64 positions"}},
		{"NaN in an unused embedding row", base(nanModel, good), []string{`tensor "model.embed_tokens.weight": element 2021 is NaN`}},
		{"-Inf in a norm weight", base(infModel, good, "--method", "lora"), []string{`tensor "model.norm.weight": element 3 is -Inf`}},
		{"invalid UTF-8 in JSONL text", base(text, badUTF8), []string{badUTF8 + ":2: invalid UTF-8 at byte 13"}},
		{"invalid UTF-8 in a .txt file", base(text, badTxt), []string{badTxt + ":2: invalid UTF-8 at byte 8"}},
		{"duplicate key in a data line", base(llama, dupData), []string{dupData + `:2: duplicate key "input_ids"`}},
		{"duplicate key in config.json", base(dupConfig, good), []string{`config.json: duplicate key "vocab_size" in the object at the top level (line `}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertOneLineError(t, runGotune(t, tc.args...), tc.want...)
		})
	}
}
