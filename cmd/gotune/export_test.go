package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/gguf"
	"github.com/gotune/gotune/engine/safetensors"
)

// The GGUF export from the CLI is the file llama.cpp reads (checked by
// scripts/check-gguf-llamacpp.sh); here: what it writes and what inspect
// says about it.
func TestExportGGUFAndInspect(t *testing.T) {
	out := filepath.Join(t.TempDir(), "demo.gguf")
	r := runGotune(t, "export", "--model", "../../testdata/demo", "--type", "q8_0", "--out", out)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "llama.cpp architecture llama")
	h, err := gguf.ReadHeader(out)
	require.NoError(t, err)
	v, _ := h.Get("general.file_type")
	assert.Equal(t, uint32(7), v, "MOSTLY_Q8_0")

	r = runGotune(t, "inspect", out, "--json", "--tensors")
	require.Equal(t, 0, r.code, r.stderr)
	var rep struct {
		Kind, Architecture string
		Parameters         int64
		DTypes             map[string]int64
		Tensors            []struct{ Name string }
	}
	require.NoError(t, json.Unmarshal([]byte(r.stdout), &rep))
	assert.Equal(t, "gguf", rep.Kind)
	assert.Equal(t, "llama", rep.Architecture)
	assert.Equal(t, int64(820736), rep.Parameters, "as many parameters as the safetensors model")
	assert.Len(t, rep.Tensors, 38)
	assert.Positive(t, rep.DTypes["Q8_0"])

	r = runGotune(t, "inspect", "../../testdata/demo")
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "Hugging Face model, LlamaForCausalLM")
	assert.Contains(t, r.stdout, "820,736")
}

// --format safetensors is the merge path: without an adapter it re-saves
// the model, here in another dtype.
func TestExportSafetensors(t *testing.T) {
	out := filepath.Join(t.TempDir(), "hf")
	r := runGotune(t, "export", "--model", "../../testdata/demo", "--format", "safetensors", "--save-dtype", "f32", "--out", out)
	require.Equal(t, 0, r.code, r.stderr)
	set, err := safetensors.OpenDir(out)
	require.NoError(t, err)
	defer set.Close()
	info, ok := set.Info("model.embed_tokens.weight")
	require.True(t, ok)
	assert.Equal(t, "F32", info.DType)
	_, err = os.Stat(filepath.Join(out, "tokenizer.json"))
	assert.NoError(t, err, "tokenizer files copied")
}

func TestExportInspectBadInput(t *testing.T) {
	dir := t.TempDir()
	junk := writeTemp(t, "junk.gguf", "GGUF but not really")
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"export", "--out", filepath.Join(dir, "x.gguf")}, "--model is required"},
		{[]string{"export", "--model", "../../testdata/demo", "--out", filepath.Join(dir, "x"), "--format", "onnx"}, `unknown --format "onnx"`},
		{[]string{"export", "--model", "../../testdata/demo", "--out", filepath.Join(dir, "x.gguf"), "--type", "q4_0"}, "--type: unknown GGUF tensor type"},
		{[]string{"export", "--model", "../../testdata/demo", "--out", dir}, "is a folder"},
		{[]string{"export", "--model", "../../testdata/tiny/llama", "--out", filepath.Join(dir, "t.gguf")}, "no tokenizer found"},
		{[]string{"inspect"}, "want exactly one PATH"},
		{[]string{"inspect", filepath.Join(dir, "nope")}, "no such file"},
		{[]string{"inspect", junk}, "junk.gguf"},
	} {
		r := runGotune(t, tc.args...)
		assert.Equal(t, 1, r.code, "%v: %s", tc.args, r.stderr)
		assert.Contains(t, r.stderr, tc.want, tc.args)
		assert.NotContains(t, r.stderr, "goroutine", "no panic trace")
		assert.LessOrEqual(t, strings.Count(strings.TrimSpace(r.stderr), "\n"), 1, "one line (plus the --help hint): %s", r.stderr)
	}
}
