package textdata

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
)

// openWith opens path with the plain template and the byte tokenizer.
func openWith(t *testing.T, path, format string) *data.Dataset {
	t.Helper()
	tmpl, err := chat.Lookup("plain")
	require.NoError(t, err)
	ds, err := Open(path, Options{Format: format, Tokenizer: byteTokenizer(t), Template: tmpl, SeqLen: 64})
	require.NoError(t, err)
	return ds
}

// sameExamples checks two datasets tokenize to the same ids and labels.
func sameExamples(t *testing.T, want, got *data.Dataset) {
	t.Helper()
	require.Equal(t, want.Len(), got.Len())
	for i := range want.Examples {
		assert.Equal(t, want.Examples[i].InputIDs, got.Examples[i].InputIDs, "example %d input_ids", i)
		assert.Equal(t, want.Examples[i].Labels, got.Examples[i].Labels, "example %d labels", i)
	}
}

// The same two-turn conversation written in every conversational form
// (alpaca history, sharegpt, OpenAI messages; JSONL or a JSON array)
// tokenizes identically, and every assistant turn (history included, as
// in LLaMA-Factory) is trained on.
func TestConversationFormatsAgree(t *testing.T) {
	chatForm := writeFile(t, "chat.jsonl", `{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]}`+"\n")
	want := openWith(t, chatForm, Auto)
	ex := want.Examples[0]
	assert.Equal(t, cat([]int32{bos}, bytesOf("S\nQ1\nA1"), []int32{eos}, bytesOf("Q2\nA2"), []int32{eos}), ex.InputIDs)
	assert.Equal(t, cat(ignored(1+5), bytesOf("A1"), []int32{eos}, ignored(3), bytesOf("A2"), []int32{eos}), ex.Labels)

	forms := map[string]string{
		"alpaca.jsonl": `{"instruction": "Q2", "output": "A2", "system": "S", "history": [["Q1", "A1"]]}` + "\n",
		"alpaca.json":  "[\n  {\"instruction\": \"Q2\", \"input\": \"\", \"output\": \"A2\", \"system\": \"S\", \"history\": [[\"Q1\", \"A1\"]]}\n]\n",
		"share.jsonl":  `{"id": "x", "conversations": [{"from": "system", "value": "S"}, {"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}]}` + "\n",
		"share.json":   `[{"conversations": [{"from": "human", "value": "Q1"}, {"from": "gpt", "value": "A1"}, {"from": "human", "value": "Q2"}, {"from": "gpt", "value": "A2"}], "system": "S"}]`,
		"chat.json":    `[{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q1"}, {"role": "assistant", "content": "A1"}, {"role": "user", "content": "Q2"}, {"role": "assistant", "content": "A2"}]}]`,
	}
	for name, content := range forms {
		t.Run(name, func(t *testing.T) {
			sameExamples(t, want, openWith(t, writeFile(t, name, content), Auto))
		})
	}
}

// The Parquet fixtures, written by another implementation
// (testdata/parquet/gen.mjs, hyparquet-writer), read as their JSONL
// equivalents.
func TestParquetMatchesJSONL(t *testing.T) {
	alpaca := writeFile(t, "a.jsonl", `{"instruction": "Reverse the word.", "input": "abc", "output": "cba"}`+"\n"+`{"instruction": "Add the numbers.", "input": "", "output": "5"}`+"\n")
	sameExamples(t, openWith(t, alpaca, Auto), openWith(t, "../../testdata/parquet/alpaca.parquet", Auto))
	share := writeFile(t, "s.jsonl", `{"conversations": [{"from": "human", "value": "Hi"}, {"from": "gpt", "value": "Hello!"}], "system": "Be brief."}`+"\n"+
		`{"conversations": [{"from": "human", "value": "What is 2+3?"}, {"from": "gpt", "value": "5"}, {"from": "human", "value": "And 2+4?"}, {"from": "gpt", "value": "6"}], "system": null}`+"\n")
	sameExamples(t, openWith(t, share, Auto), openWith(t, "../../testdata/parquet/sharegpt.parquet", Auto))
}

// writeRegistry writes files (name -> content) and a dataset_info.json
// into a fresh folder and returns it.
func writeRegistry(t *testing.T, info string, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, RegistryFile), []byte(info), 0o644))
	for name, content := range files {
		require.NoError(t, os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644))
	}
	return dir
}

func openRegistry(t *testing.T, dir string, names ...string) (*data.Dataset, error) {
	tmpl, err := chat.Lookup("plain")
	require.NoError(t, err)
	return OpenRegistry(dir, names, Options{Tokenizer: byteTokenizer(t), Template: tmpl})
}

// A dataset_info.json with renamed alpaca columns, a sharegpt entry with
// OpenAI tags, and a folder of Parquet files: entries concatenate in
// the order named, columns and tags map as in LLaMA-Factory (the query
// joins the prompt with a newline; function calls are assistant turns
// with tool calls, observations tool turns, which the built-in template
// lays out as text and user turns).
func TestRegistry(t *testing.T) {
	pq, err := os.ReadFile("../../testdata/parquet/sharegpt.parquet")
	require.NoError(t, err)
	dir := writeRegistry(t, `{
  "mine": {"file_name": "mine.json", "columns": {"prompt": "q", "query": "ctx", "response": "a", "history": "h"}},
  "oai": {"file_name": "oai.jsonl", "formatting": "sharegpt", "columns": {"messages": "messages"},
          "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user", "assistant_tag": "assistant",
                   "observation_tag": "tool", "function_tag": "function_call", "system_tag": "system"}},
  "hub": {"hf_hub_url": "x/y", "file_name": "pq", "formatting": "sharegpt", "columns": {"messages": "conversations", "system": "system"}}
}`, map[string]string{
		"mine.json":                       `[{"q": "Q", "ctx": "C", "a": "A", "h": [["q0", "a0"]], "extra": 1}]`,
		"oai.jsonl":                       `{"messages": [{"role": "user", "content": "U"}, {"role": "function_call", "content": "{\"name\": \"f\", \"arguments\": {}}"}, {"role": "tool", "content": "T"}, {"role": "assistant", "content": "R"}]}` + "\n",
		"pq/train-00000-of-00001.parquet": string(pq),
	})
	ds, err := openRegistry(t, dir, "mine", "oai", "hub")
	require.NoError(t, err)
	require.Equal(t, 4, ds.Len())
	assert.Equal(t, cat([]int32{bos}, bytesOf("q0\na0"), []int32{eos}, bytesOf("Q\nC\nA"), []int32{eos}), ds.Examples[0].InputIDs)
	assert.Equal(t, cat(ignored(1+3), bytesOf("a0"), []int32{eos}, ignored(4), bytesOf("A"), []int32{eos}), ds.Examples[0].Labels)
	call := `{"name": "f", "arguments": {}}`
	assert.Equal(t, cat([]int32{bos}, bytesOf("U\n"+call), []int32{eos}, bytesOf("T\nR"), []int32{eos}), ds.Examples[1].InputIDs)
	assert.Equal(t, cat(ignored(1+2), bytesOf(call), []int32{eos}, ignored(2), bytesOf("R"), []int32{eos}), ds.Examples[1].Labels)
	assert.Equal(t, cat([]int32{bos}, bytesOf("Be brief.\nHi\nHello!"), []int32{eos}), ds.Examples[2].InputIDs)
}

// Bad registries and data are one-line errors naming the file and what
// is wrong.
func TestRegistryErrors(t *testing.T) {
	files := map[string]string{
		"a.jsonl": `{"instruction": "i", "output": "o"}` + "\n",
		"s.json":  `[{"conversations": [{"from": "gpt", "value": "x"}, {"from": "human", "value": "y"}]}]`,
		"x.csv":   "a,b\n",
	}
	cases := []struct{ name, info, want string }{
		{"missing column", `{"d": {"file_name": "a.jsonl", "columns": {"prompt": "instruction", "response": "answer"}}}`,
			`a.jsonl: column "answer" (dataset_info.json "d": columns.response) does not exist; the records have "instruction", "output"`},
		{"listed optional column missing", `{"d": {"file_name": "a.jsonl", "columns": {"prompt": "instruction", "response": "output", "system": "sys"}}}`,
			`column "sys" (dataset_info.json "d": columns.system) does not exist`},
		{"unknown dataset", `{"d": {"file_name": "a.jsonl"}}`, `dataset_info.json: no dataset "e" (it has "d")`},
		{"unknown column key", `{"e": {"file_name": "a.jsonl", "columns": {"promt": "instruction"}}}`, `dataset "e": unknown column "promt"`},
		{"hub only", `{"e": {"hf_hub_url": "a/b"}}`, `dataset "e": no "file_name": gotune reads local files only`},
		{"ranking", `{"e": {"file_name": "a.jsonl", "ranking": true}}`, `preference (ranking) datasets are not supported yet`},
		{"missing file", `{"e": {"file_name": "nope.json"}}`, `dataset "e": file_name: stat`},
		{"csv", `{"e": {"file_name": "x.csv"}}`, `gotune reads .json, .jsonl, .parquet files`},
		{"bad formatting", `{"e": {"file_name": "a.jsonl", "formatting": "openai"}}`, `formatting "openai"`},
		{"roles out of order", `{"e": {"file_name": "s.json", "formatting": "sharegpt"}}`,
			`s.json:1: conversations[0].from is "gpt"; turn 1 of the conversation must be "human" or "observation"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := writeRegistry(t, c.info, files)
			name := "e"
			if c.name == "missing column" || c.name == "listed optional column missing" {
				name = "d"
			}
			_, err := openRegistry(t, dir, name)
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}
