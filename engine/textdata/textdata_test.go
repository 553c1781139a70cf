package textdata

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/internal/bytetok"
	"github.com/gotune/gotune/internal/fieldpaths"
)

// Test tokenizer: one token per byte (id = byte value), then <s> = 256,
// </s> = 257, <|im_start|> = 258, <|im_end|> = 259.
const bos, eos, imStart, imEnd = 256, 257, 258, 259

func byteTokenizer(t *testing.T, specials ...string) tokenizer.Tokenizer {
	t.Helper()
	if len(specials) == 0 {
		specials = []string{"<s>", "</s>", "<|im_start|>", "<|im_end|>"}
	}
	dir := t.TempDir()
	if err := bytetok.Write(dir, bytetok.Spec{Specials: specials, BOS: "<s>", EOS: "</s>"}); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func writeFile(t *testing.T, name, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// bytesOf returns the ids of s under the byte tokenizer.
func bytesOf(s string) []int32 {
	out := make([]int32, len(s))
	for i := 0; i < len(s); i++ {
		out[i] = int32(s[i])
	}
	return out
}

func cat(parts ...[]int32) []int32 { return slices.Concat(parts...) }

// ignored returns n IgnoreIndex labels.
func ignored(n int) []int32 {
	out := make([]int32, n)
	for i := range out {
		out[i] = data.IgnoreIndex
	}
	return out
}

func TestDetect(t *testing.T) {
	cases := []struct {
		name, content, want string
	}{
		{"a.jsonl", `{"input_ids": [1, 2]}` + "\n", Pretokenized},
		{"a.jsonl", `{"instruction": "i", "output": "o"}` + "\n", Instruction},
		{"a.jsonl", `{"messages": []}` + "\n", Chat},
		{"a.jsonl", `{"text": "hello"}` + "\n", Text},
		{"a.txt", "hello", Text},
		{"a.TXT", "{}", Text},
	}
	for _, c := range cases {
		got, err := Detect(writeFile(t, c.name, c.content))
		if err != nil || got != c.want {
			t.Errorf("Detect(%s %q) = %q, %v; want %q", c.name, c.content, got, err, c.want)
		}
	}
	_, err := Detect(writeFile(t, "a.jsonl", `{"prompt": "p", "completion": "c"}`+"\n"))
	if err == nil || !strings.Contains(err.Error(), `a.jsonl:1: cannot tell the data format from the fields "completion", "prompt"`) {
		t.Errorf("unknown keys: %v", err)
	}
}

func TestOpenFormats(t *testing.T) {
	tok := byteTokenizer(t)
	type ex struct{ ids, labels []int32 }
	cases := []struct {
		name, file, content, format, template string
		seqLen                                int
		want                                  []ex
	}{
		{
			name: "instruction plain", file: "d.jsonl", template: "plain",
			content: `{"instruction": "Rev.", "input": "ab", "output": "ba"}` + "\n" +
				`{"instruction": "Hi.", "output": "hi", "system": "S", "input": null}` + "\n",
			want: []ex{
				{cat([]int32{bos}, bytesOf("Rev.\nab\n"), bytesOf("ba"), []int32{eos}),
					cat(ignored(1+8), bytesOf("ba"), []int32{eos})},
				{cat([]int32{bos}, bytesOf("S\nHi.\n"), bytesOf("hi"), []int32{eos}),
					cat(ignored(1+6), bytesOf("hi"), []int32{eos})},
			},
		},
		{
			name: "chat chatml", file: "d.jsonl", template: "chatml",
			content: `{"messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}` + "\n",
			want: []ex{{
				cat([]int32{imStart}, bytesOf("user\nQ"), []int32{imEnd}, bytesOf("\n"), []int32{imStart}, bytesOf("assistant\n"), bytesOf("A"), []int32{imEnd}, bytesOf("\n")),
				cat(ignored(1+6+1+1+1+10), bytesOf("A"), []int32{imEnd}, ignored(1)),
			}},
		},
		{
			name: "chat forced format", file: "d.jsonl", template: "plain", format: Chat,
			content: `{"messages": [{"role": "system", "content": "S"}, {"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}` + "\n",
			want: []ex{{
				cat([]int32{bos}, bytesOf("S\nQ\nA"), []int32{eos}),
				cat(ignored(5), bytesOf("A"), []int32{eos}),
			}},
		},
		{
			// Two documents [BOS]abc[EOS] [BOS]de[EOS] = 9 tokens in
			// blocks of 4: 4 + 4 + a 1-token remainder, which is dropped.
			name: "text packed", file: "d.jsonl", seqLen: 4,
			content: `{"text": "abc"}` + "\n" + `{"text": "de"}` + "\n",
			want: []ex{
				{cat([]int32{bos}, bytesOf("abc")), cat([]int32{bos}, bytesOf("abc"))},
				{cat([]int32{eos, bos}, bytesOf("de")), cat([]int32{eos, bos}, bytesOf("de"))},
			},
		},
		{
			name: "txt file", file: "d.txt", seqLen: 3, content: "xyz",
			want: []ex{
				{cat([]int32{bos}, bytesOf("xy")), cat([]int32{bos}, bytesOf("xy"))},
				{cat(bytesOf("z"), []int32{eos}), cat(bytesOf("z"), []int32{eos})},
			},
		},
		{
			name: "pretokenized", file: "d.jsonl",
			content: `{"input_ids": [5, 6, 7], "labels": [-100, 6, 7]}` + "\n",
			want:    []ex{{[]int32{5, 6, 7}, []int32{-100, 6, 7}}},
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			var tm chat.Template
			if c.template != "" {
				var err error
				if tm, err = chat.Lookup(c.template); err != nil {
					t.Fatal(err)
				}
			}
			ds, err := Open(writeFile(t, c.file, c.content), Options{Format: c.format, Tokenizer: tok, Template: tm, SeqLen: c.seqLen, VocabSize: tok.VocabSize()})
			if err != nil {
				t.Fatal(err)
			}
			if len(ds.Examples) != len(c.want) {
				t.Fatalf("%d examples, want %d", len(ds.Examples), len(c.want))
			}
			for i, w := range c.want {
				e := ds.Examples[i]
				if !slices.Equal(e.InputIDs, w.ids) || !slices.Equal(e.Labels, w.labels) {
					t.Errorf("example %d:\n ids    %v\n want   %v\n labels %v\n want   %v", i, e.InputIDs, w.ids, e.Labels, w.labels)
				}
			}
		})
	}
}

// TestDefaultTemplate checks that without --template the tokenizer's
// chat_template decides, and plain is used when it has none.
func TestDefaultTemplate(t *testing.T) {
	tok := byteTokenizer(t)
	p := writeFile(t, "d.jsonl", `{"instruction": "I", "output": "O"}`+"\n")
	ds, err := Open(p, Options{Tokenizer: tok})
	if err != nil {
		t.Fatal(err)
	}
	if want := cat([]int32{bos}, bytesOf("I\nO"), []int32{eos}); !slices.Equal(ds.Examples[0].InputIDs, want) {
		t.Errorf("default template: ids %v, want the plain layout %v", ds.Examples[0].InputIDs, want)
	}
	if ds.Format != Instruction {
		t.Errorf("format %q", ds.Format)
	}
}

func TestBadInput(t *testing.T) {
	tok := byteTokenizer(t)
	small := byteTokenizer(t, "<s>", "</s>")
	cases := []struct {
		name, content, format, template string
		tok                             tokenizer.Tokenizer
		vocab                           int
		want                            string // after the file name
	}{
		{name: "unknown field", content: `{"instruction": "i", "output": "o", "answer": "x"}`,
			want: `:1: unknown field "answer" (an instruction line has`},
		{name: "wrong type", content: `{"instruction": "i", "output": "o"}` + "\n" + `{"instruction": "i", "output": 3}`,
			want: `:2: "output" must be a string, got a number`},
		{name: "missing output", content: `{"instruction": "i"}`,
			want: `:1: missing "output"`},
		{name: "empty line", content: `{"instruction": "i", "output": "o"}` + "\n\n" + `{"instruction": "i", "output": "o"}`,
			want: `:2: empty line`},
		{name: "malformed", content: `{"instruction": "i", "output": "o"`,
			want: `:1: malformed JSON`},
		{name: "messages not array", content: `{"messages": "hi"}`,
			want: `:1: "messages" must be an array of {"role", "content"} objects, got a string`},
		{name: "message not object", content: `{"messages": ["hi"]}`,
			want: `:1: messages[0] must be an object`},
		{name: "message unknown field", content: `{"messages": [{"role": "user", "content": "q", "weight": 1}]}`,
			want: `:1: messages[0]: unknown field "weight"`},
		{name: "message content type", content: `{"messages": [{"role": "user", "content": ["q"]}]}`,
			want: `:1: "messages[0].content" must be a string, got an array`},
		{name: "bad role", content: `{"messages": [{"role": "function", "content": "q"}]}`,
			want: `:1: messages[0].role is "function"`},
		{name: "tool calls not a list", content: `{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": null, "tool_calls": {"function": {"name": "f"}}}]}`,
			want: `:1: messages[1].tool_calls must be a list of {"type": "function", "function": {"name", "arguments"}} objects, got an object`},
		{name: "tool call without a name", content: `{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "", "tool_calls": [{"function": {"arguments": "{}"}}]}]}`,
			want: `:1: messages[1].tool_calls[0] has no "function" with a "name"`},
		{name: "user calls tools", content: `{"messages": [{"role": "user", "content": "q", "tool_calls": [{"function": {"name": "f"}}]}]}`,
			want: `:1: messages[0].tool_calls: only an assistant message calls tools, this is a user message`},
		{name: "null content without tool calls", content: `{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": null}]}`,
			want: `:1: missing "messages[1].content"`},
		{name: "user reasoning", content: `{"messages": [{"role": "user", "content": "q", "reasoning_content": "r"}]}`,
			want: `:1: messages[0].reasoning_content: only an assistant message has reasoning, this is a user message`},
		{name: "tools not a list", content: `{"messages": [{"role": "user", "content": "q"}], "tools": {"name": "f"}}`,
			want: `:1: "tools" must be a JSON list of tool definitions, got an object`},
		{name: "tools with a built-in template", content: `{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}], "tools": [{"name": "f"}]}`,
			want: `:1: chat template plain has no place for tool definitions`},
		{name: "sharegpt function call not JSON", content: `{"conversations": [{"from": "human", "value": "q"}, {"from": "function_call", "value": "f(1)"}]}`,
			want: `:1: conversations[1].value: a function call must be JSON {"name": ..., "arguments": ...} or a list of them`},
		{name: "no reply", content: `{"messages": [{"role": "user", "content": "q"}]}`,
			want: `:1: chat template plain: the conversation ends with a user message`},
		{name: "template does not fit", template: "alpaca",
			content: `{"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}`,
			want:    `:1: chat template alpaca: it holds one instruction and its response`},
		{name: "template markers missing", template: "chatml", tok: small,
			content: `{"instruction": "i", "output": "o"}`,
			want:    `chat template chatml writes <|im_start|>, which is not a token of this tokenizer`},
		{name: "empty text", content: `{"text": ""}`, want: `:1: "text" is empty`},
		{name: "text extra field", content: `{"text": "a", "meta": 1}`, want: `:1: unknown field "meta"`},
		{name: "id outside vocabulary", content: `{"instruction": "i", "output": "o"}`, vocab: 200,
			want: `:1: input_ids[0] = 256 is outside the model's vocabulary [0, 200)`},
		{name: "format of another file", content: `{"instruction": "i", "output": "o"}`, format: Chat,
			want: `:1: unknown field`},
		{name: "unknown format", content: `{"text": "a"}`, format: "csv", want: `Format "csv": unknown data format`},
		{name: "no tokenizer", content: `{"text": "a"}`, tok: tokenizer.Tokenizer(nil), want: "Tokenizer is needed: "},
		{name: "empty file", content: ``, want: `no examples (the file is empty)`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			p := writeFile(t, "bad.jsonl", c.content)
			opts := Options{Format: c.format, Tokenizer: tok, SeqLen: 16, VocabSize: c.vocab}
			if c.tok != nil || c.name == "no tokenizer" {
				opts.Tokenizer = c.tok
			}
			if c.template != "" {
				opts.Template, _ = chat.Lookup(c.template)
			}
			_, err := Open(p, opts)
			if err == nil {
				t.Fatal("no error")
			}
			want := c.want
			if strings.HasPrefix(want, ":") {
				want = p + want
			}
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q\nwant it to contain %q", err, want)
			}
		})
	}
}

// TestTruncationCounted checks that examples longer than the sequence
// length reach the loader whole and are truncated there and counted.
func TestTruncationCounted(t *testing.T) {
	tok := byteTokenizer(t)
	p := writeFile(t, "d.jsonl", `{"instruction": "a", "output": "b"}`+"\n"+
		`{"instruction": "a long instruction", "output": "and a long output"}`+"\n"+
		`{"instruction": "c", "output": "d"}`+"\n")
	ds, err := Open(p, Options{Tokenizer: tok})
	if err != nil {
		t.Fatal(err)
	}
	l, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	if err != nil {
		t.Fatal(err)
	}
	st := l.Stats()
	// The long example's prompt alone ([BOS] + 19 bytes) fills 8 tokens,
	// so after truncation it has nothing to train on and is skipped too.
	if st.Truncated != 1 || st.Sequences != 3 || st.Skipped != 1 {
		t.Errorf("stats %+v, want 1 of 3 truncated and skipped", st)
	}
	if got := st.TruncationMessage(); got != "truncated 1 of 3 sequences to seq-len 8" {
		t.Errorf("message %q", got)
	}
}

func TestReadConversations(t *testing.T) {
	p := writeFile(t, "d.jsonl", `{"instruction": "Add.", "input": "1+1", "output": "2", "system": "S"}`+"\n")
	convs, format, err := ReadConversations(p, Auto)
	if err != nil {
		t.Fatal(err)
	}
	want := []chat.Message{{Role: chat.System, Content: "S"}, {Role: chat.User, Content: "Add.", Input: "1+1"}, {Role: chat.Assistant, Content: "2"}}
	if format != Instruction || len(convs) != 1 || !reflect.DeepEqual(convs[0].Messages, want) || convs[0].Loc.Line != 1 {
		t.Errorf("got %s %+v", format, convs)
	}
	if _, _, err := ReadConversations(writeFile(t, "t.jsonl", `{"text": "x"}`+"\n"), Auto); err == nil || !strings.Contains(err.Error(), "is text data") {
		t.Errorf("text file: %v", err)
	}
}

// A wrong or missing option is a *fielderr.Error naming its Options field.
func TestOptionErrorsNameTheField(t *testing.T) {
	jsonl := writeFile(t, "d.jsonl", `{"instruction": "i", "output": "o"}`+"\n")
	txt := writeFile(t, "d.txt", "some text\n")
	for _, tc := range []struct {
		path string
		opts Options
		want string
	}{
		{jsonl, Options{Format: "csv"}, `Format "csv": unknown data format`},
		{txt, Options{Format: Instruction}, "Format instruction needs a JSONL file: " + txt + " is a .txt file, read as plain text"},
		{jsonl, Options{}, "Tokenizer is needed: " + jsonl + " is instruction data"},
	} {
		_, err := Open(tc.path, tc.opts)
		require.ErrorContains(t, err, tc.want)
		fieldpaths.RequireFieldError(t, err, Options{})
	}
}
