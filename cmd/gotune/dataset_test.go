package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/internal/chatgolden"
)

// llamaFactoryDir writes a LLaMA-Factory data folder: a dataset_info.json
// with an alpaca entry (JSON array, with history) and a sharegpt entry
// (the Parquet fixture), as users have them.
func llamaFactoryDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	pq, err := os.ReadFile("../../testdata/parquet/sharegpt.parquet")
	require.NoError(t, err)
	files := map[string]string{
		"dataset_info.json": `{
  "my_alpaca": {"file_name": "alpaca.json", "columns": {"prompt": "instruction", "query": "input", "response": "output", "system": "system", "history": "history"}},
  "my_chat": {"file_name": "chat.parquet", "formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"}}
}`,
		"alpaca.json":  `[{"instruction": "hi", "input": "", "output": "HI", "system": "", "history": [["a", "A"]]}, {"instruction": "bye", "input": "now", "output": "BYE", "system": "s", "history": []}]`,
		"chat.parquet": string(pq),
	}
	for name, content := range files {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	return dir
}

// data show --json prints one {"input_ids", "labels"} line per example,
// which reads back as pre-tokenized data giving the same lines.
func TestDataShowJSON(t *testing.T) {
	mdir := tinyModelDir(t)
	dir := llamaFactoryDir(t)
	status, stdout, stderr := gotuneIn("data", "show", "--dataset", "my_alpaca,my_chat", "--dataset-dir", dir, "--model", mdir, "--json")
	require.Equal(t, 0, status, stderr)
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, lines, 4)
	for _, l := range lines {
		var ex struct {
			InputIDs []int32 `json:"input_ids"`
			Labels   []int32 `json:"labels"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &ex), l)
		assert.NotEmpty(t, ex.InputIDs)
		assert.Len(t, ex.Labels, len(ex.InputIDs))
		assert.Contains(t, l, `"input_ids":[`)
		assert.Contains(t, l, `-100`) // prompts are not trained on
	}
	tokenized := filepath.Join(t.TempDir(), "tok.jsonl")
	require.NoError(t, os.WriteFile(tokenized, []byte(stdout), 0o644))
	status, again, stderr := gotuneIn("data", "show", "--data", tokenized, "--json")
	require.Equal(t, 0, status, stderr)
	assert.Equal(t, stdout, again)
}

// data show --json on OpenAI chat data with Qwen3's reasoning_content,
// tool calls and tool definitions, tokenized with Qwen3's real tokenizer
// and (--template auto) its own chat template: each line holds the ids
// the real tokenizer gives transformers' rendering, and labels that
// train on the replies only, as the library lays them out.
func TestDataShowJSONModelTemplate(t *testing.T) {
	g := chatgolden.Load(t)
	fam := g.Family(t, "qwen3")
	tokDir, ok := chatgolden.TokenizerDir(t, fam.Tokenizer, fam.TemplateSource(t))
	require.True(t, ok)
	var lines []string
	var cases []chatgolden.Case
	for _, name := range []string{"reasoning", "tool-call"} {
		c := fam.Case(t, name)
		record := map[string]json.RawMessage{"messages": c.Messages}
		if tools, ok := c.Vars["tools"]; ok {
			record["tools"] = tools
		}
		line, err := json.Marshal(record)
		require.NoError(t, err)
		lines = append(lines, string(line))
		cases = append(cases, c)
	}
	path := filepath.Join(t.TempDir(), "chat.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(strings.Join(lines, "\n")+"\n"), 0o644))

	status, stdout, stderr := gotuneIn("data", "show", "--data", path, "--tokenizer", tokDir, "--template", "auto", "--json")
	require.Equal(t, 0, status, stderr)
	tok, err := tokenizer.Load(tokDir)
	require.NoError(t, err)
	lib, err := textdata.Open(path, textdata.Options{Tokenizer: tok})
	require.NoError(t, err)
	got := strings.Split(strings.TrimSpace(stdout), "\n")
	require.Len(t, got, len(cases))
	for i, l := range got {
		var ex struct {
			InputIDs []int32 `json:"input_ids"`
			Labels   []int32 `json:"labels"`
		}
		require.NoError(t, json.Unmarshal([]byte(l), &ex), l)
		assert.Equal(t, cases[i].Renders[0].IDs, ex.InputIDs, cases[i].Name)
		assert.Equal(t, lib.Examples[i].Labels, ex.Labels, cases[i].Name)
		assert.Contains(t, ex.Labels, int32(-100))
		assert.Less(t, slices.Index(ex.Labels, int32(-100)), slices.IndexFunc(ex.Labels, func(l int32) bool { return l != -100 }))
	}
}

// A LLaMA-Factory config naming dataset_info.json entries trains as it is.
func TestTrainOnLlamaFactoryRegistry(t *testing.T) {
	mdir := tinyModelDir(t)
	dir := llamaFactoryDir(t)
	cfg := filepath.Join(t.TempDir(), "run.yaml")
	out := filepath.Join(t.TempDir(), "run")
	require.NoError(t, os.WriteFile(cfg, []byte("model_name_or_path: "+mdir+"\ndataset: my_alpaca,my_chat\ndataset_dir: "+dir+
		"\nfinetuning_type: lora\noutput_dir: "+out+"\nmax_steps: 1\nper_device_train_batch_size: 2\n"), 0o644))
	status, stdout, stderr := gotuneIn("train", "--config", cfg, "--device", "cpu")
	require.Equal(t, 0, status, "%s\n%s", stderr, stdout)
	assert.Contains(t, stdout, "data: 4 sequences")
	assert.Contains(t, stdout, "my_alpaca,my_chat")

	// A column that does not exist: one line naming the file and column.
	bad := strings.Replace(mustRead(t, filepath.Join(dir, "dataset_info.json")), `"response": "output"`, `"response": "answer"`, 1)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "dataset_info.json"), []byte(bad), 0o644))
	status, _, stderr = gotuneIn("train", "--model", mdir, "--dataset", "my_alpaca", "--dataset-dir", dir, "--steps", "1", "--device", "cpu", "--out", filepath.Join(t.TempDir(), "r"))
	assert.Equal(t, exitError, status)
	assert.Equal(t, 1, strings.Count(strings.TrimSpace(stderr), "\n")+1, stderr)
	assert.Contains(t, stderr, filepath.Join(dir, "alpaca.json")+`: column "answer" (dataset_info.json "my_alpaca": columns.response) does not exist`)
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	require.NoError(t, err)
	return string(b)
}
