package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tinyFile is a small LLaMA-2-style tokenizer.json as a map, for tests to
// edit. Its vocabulary and merges are small enough to work every expected
// encoding out by hand:
//
//	0 <unk>  1 <s>  2 </s>  3 ▁  4 a  5 b  6 c  7 ab  8 ▁a  9 ▁ab
//	10 <0xC3>  11 <0xA9>  12 1  13 2  14 12
//	merges, by rank: (a,b) (▁,a) (▁a,b) (1,2)
func tinyFile() map[string]any {
	special := func(id int, s string) map[string]any {
		return map[string]any{"id": id, "content": s, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
	}
	return map[string]any{
		"version":      "1.0",
		"added_tokens": []any{special(0, "<unk>"), special(1, "<s>"), special(2, "</s>")},
		"normalizer": map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Prepend", "prepend": "▁"},
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"},
		}},
		"pre_tokenizer": nil,
		"post_processor": map[string]any{"type": "TemplateProcessing",
			"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
			"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []int{1}, "tokens": []string{"<s>"}}}},
		"decoder": map[string]any{"type": "Sequence", "decoders": []any{
			map[string]any{"type": "Replace", "pattern": map[string]any{"String": "▁"}, "content": " "},
			map[string]any{"type": "ByteFallback"},
			map[string]any{"type": "Fuse"},
			map[string]any{"type": "Strip", "content": " ", "start": 1, "stop": 0},
		}},
		"model": map[string]any{"type": "BPE", "unk_token": "<unk>", "fuse_unk": true, "byte_fallback": true,
			"vocab": map[string]int{"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "a": 4, "b": 5, "c": 6, "ab": 7,
				"▁a": 8, "▁ab": 9, "<0xC3>": 10, "<0xA9>": 11, "1": 12, "2": 13, "12": 14},
			"merges": []any{[]string{"a", "b"}, []string{"▁", "a"}, []string{"▁a", "b"}, []string{"1", "2"}}},
	}
}

func model(f map[string]any) map[string]any { return f["model"].(map[string]any) }

func parseTiny(t *testing.T, f map[string]any, config map[string]any) (*HF, error) {
	t.Helper()
	data, err := json.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	var cfg []byte
	if config != nil {
		if cfg, err = json.Marshal(config); err != nil {
			t.Fatal(err)
		}
	}
	return ParseHF(data, cfg)
}

func mustTiny(t *testing.T, f map[string]any, config map[string]any) *HF {
	t.Helper()
	tok, err := parseTiny(t, f, config)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestHFEncodeByHand(t *testing.T) {
	noFuse := tinyFile()
	model(noFuse)["fuse_unk"] = false
	stringMerges := tinyFile()
	model(stringMerges)["merges"] = []string{"a b", "▁ a", "▁a b", "1 2"}
	tests := []struct {
		name    string
		f       map[string]any
		text    string
		special bool
		want    []int
	}{
		// ▁ a b: (a,b) ranks before (▁,a), and (▁,ab) is no merge.
		{"rank order", tinyFile(), "ab", false, []int{3, 7}},
		{"same with string merges", stringMerges, "ab", false, []int{3, 7}},
		// ▁ a: (▁,a) gives ▁a; then b alone: ▁ b.
		{"two words", tinyFile(), "a b", false, []int{8, 3, 5}},
		{"template adds BOS", tinyFile(), "a", true, []int{1, 8}},
		{"empty", tinyFile(), "", true, []int{1}},
		{"byte fallback", tinyFile(), "é", false, []int{3, 10, 11}},
		// x has no token and no byte token: one fused <unk> for the run.
		{"fused unk", tinyFile(), "xx", false, []int{3, 0}},
		{"unfused unk", noFuse, "xx", false, []int{3, 0, 0}},
		{"digits merge", tinyFile(), "12", false, []int{3, 14}},
		// Special tokens in text; each plain segment gets its own "▁"
		// (Hugging Face's legacy LLaMA behaviour).
		{"special in text", tinyFile(), "a</s>a", false, []int{8, 2, 8}},
		{"special only", tinyFile(), "<s>", true, []int{1, 1}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok := mustTiny(t, tc.f, nil)
			got, err := tok.Encode(tc.text, tc.special)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Encode(%q, %v) = %v, want %v", tc.text, tc.special, got, tc.want)
			}
		})
	}
}

func TestHFDecodeByHand(t *testing.T) {
	tok := mustTiny(t, tinyFile(), nil)
	tests := []struct {
		ids  []int
		want string
		all  bool
	}{
		{[]int{1, 8, 3, 5}, "a b", false}, // <s> skipped, first space stripped
		{[]int{1, 8, 3, 5}, "<s> a b", true},
		{[]int{3, 10, 11}, "é", false},
		{[]int{10}, "\xc3", false}, // half a character stays bytes
		{[]int{8, 99, -5}, "a", false},
	}
	for _, tc := range tests {
		got := tok.Decode(tc.ids)
		if tc.all {
			got = tok.DecodeWithSpecial(tc.ids)
		}
		if got != tc.want {
			t.Errorf("decode(%v, special=%v) = %q, want %q", tc.ids, tc.all, got, tc.want)
		}
	}
}

func TestHFUnencodable(t *testing.T) {
	f := tinyFile()
	model(f)["byte_fallback"] = false
	delete(model(f), "unk_token")
	tok := mustTiny(t, f, nil)
	_, err := tok.Encode("abx", false)
	if err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Errorf("err = %v, want one naming \"x\"", err)
	}
}

func TestHFAddedTokenFlags(t *testing.T) {
	withAdded := func(a map[string]any) *HF {
		f := tinyFile()
		f["added_tokens"] = append(f["added_tokens"].([]any), a)
		return mustTiny(t, f, nil)
	}
	tok := func(flags map[string]any) map[string]any {
		a := map[string]any{"id": 20, "content": "[X]", "special": false, "normalized": false}
		for k, v := range flags {
			a[k] = v
		}
		return a
	}
	tests := []struct {
		name  string
		token map[string]any
		text  string
		want  []int
	}{
		{"plain", tok(nil), "a[X]b", []int{8, 20, 3, 5}},
		// lstrip swallows the space before; the "a" segment keeps its ▁.
		{"lstrip", tok(map[string]any{"lstrip": true}), "a [X]b", []int{8, 20, 3, 5}},
		{"no lstrip", tok(nil), "a [X]b", []int{8, 3, 20, 3, 5}},
		{"rstrip", tok(map[string]any{"rstrip": true}), "a[X] b", []int{8, 20, 3, 5}},
		// Not matched, so "[X]" is text: three unknown characters, one
		// fused <unk> between "▁a" and "b".
		{"single word, touching a letter", tok(map[string]any{"single_word": true}), "a[X]b", []int{8, 0, 5}},
		{"single word, alone", tok(map[string]any{"single_word": true}), "a [X] b", []int{8, 3, 20, 3, 3, 5}},
		// A normalized token is matched after the normalizer ran.
		{"normalized", map[string]any{"id": 20, "content": "▁c", "normalized": true}, "a c", []int{8, 20}},
		{"token then text", tok(nil), "[X]]", []int{20, 3, 0}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			got, err := withAdded(tc.token).Encode(tc.text, false)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Encode(%q) = %v, want %v", tc.text, got, tc.want)
			}
		})
	}
}

func TestHFConfig(t *testing.T) {
	tests := []struct {
		name       string
		config     map[string]any
		text       string
		want       []int
		bos, eos   int
		pad        int
		template   string
		wantErrSub string
	}{
		{name: "no config: template and names", text: "a", want: []int{1, 8}, bos: 1, eos: 2, pad: NoToken},
		{name: "add_eos_token", config: map[string]any{"add_eos_token": true, "eos_token": "</s>"}, text: "a", want: []int{1, 8, 2}, bos: 1, eos: 2, pad: NoToken},
		{name: "add_bos_token false", config: map[string]any{"add_bos_token": false}, text: "a", want: []int{8}, bos: 1, eos: 2, pad: NoToken},
		{name: "AddedToken objects and pad", config: map[string]any{"bos_token": map[string]any{"content": "<s>"}, "pad_token": "</s>"}, text: "a", want: []int{1, 8}, bos: 1, eos: 2, pad: 2},
		{name: "pad not in vocabulary", config: map[string]any{"pad_token": "<pad>"}, text: "a", want: []int{1, 8}, bos: 1, eos: 2, pad: NoToken},
		{name: "null bos", config: map[string]any{"bos_token": nil}, text: "a", want: []int{1, 8}, bos: NoToken, eos: 2, pad: NoToken},
		{name: "chat template list", config: map[string]any{"chat_template": []any{map[string]any{"name": "tool_use", "template": "T"}, map[string]any{"name": "default", "template": "D"}}}, text: "a", want: []int{1, 8}, bos: 1, eos: 2, pad: NoToken, template: "D"},
		{name: "bos not in vocabulary", config: map[string]any{"bos_token": "<BOS>"}, wantErrSub: `bos_token "<BOS>" is not in the vocabulary`},
		{name: "add_bos without bos", config: map[string]any{"bos_token": nil, "add_bos_token": true}, wantErrSub: "add_bos_token is true but there is no bos_token"},
		{name: "add_bos_token not a bool", config: map[string]any{"add_bos_token": "yes"}, wantErrSub: "add_bos_token: want true or false"},
		{name: "bad token type", config: map[string]any{"eos_token": 7}, wantErrSub: "eos_token: want a string"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := parseTiny(t, tinyFile(), tc.config)
			if tc.wantErrSub != "" {
				if err == nil || !strings.Contains(err.Error(), tc.wantErrSub) {
					t.Fatalf("err = %v, want one containing %q", err, tc.wantErrSub)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got, _ := tok.Encode(tc.text, true)
			if !slices.Equal(got, tc.want) {
				t.Errorf("Encode(%q, true) = %v, want %v", tc.text, got, tc.want)
			}
			if tok.BOS() != tc.bos || tok.EOS() != tc.eos || tok.PAD() != tc.pad {
				t.Errorf("BOS/EOS/PAD = %d/%d/%d, want %d/%d/%d", tok.BOS(), tok.EOS(), tok.PAD(), tc.bos, tc.eos, tc.pad)
			}
			if tok.ChatTemplate() != tc.template {
				t.Errorf("ChatTemplate() = %q, want %q", tok.ChatTemplate(), tc.template)
			}
		})
	}
}

func TestHFParseErrors(t *testing.T) {
	edit := func(fn func(f map[string]any)) map[string]any {
		f := tinyFile()
		fn(f)
		return f
	}
	tests := []struct {
		name string
		f    map[string]any
		want string
	}{
		{"WordPiece", edit(func(f map[string]any) { model(f)["type"] = "WordPiece" }), "unsupported tokenizer model WordPiece"},
		{"Unigram", edit(func(f map[string]any) { model(f)["type"] = "Unigram" }), "unsupported tokenizer model Unigram"},
		{"no model", edit(func(f map[string]any) { delete(f, "model") }), `no "model"`},
		{"no vocab", edit(func(f map[string]any) { delete(model(f), "vocab") }), `no "vocab"`},
		{"no merges", edit(func(f map[string]any) { delete(model(f), "merges") }), "model.merges is missing"},
		{"merge token unknown", edit(func(f map[string]any) { model(f)["merges"] = []any{[]string{"a", "zz"}} }), `"zz" is not in the vocabulary`},
		{"merge result unknown", edit(func(f map[string]any) { model(f)["merges"] = []any{[]string{"b", "c"}} }), `merged token "bc" is not in the vocabulary`},
		{"merge string with 3 parts", edit(func(f map[string]any) { model(f)["merges"] = []string{"a b c"} }), "want two tokens separated by one space"},
		{"merge pair with 3 parts", edit(func(f map[string]any) { model(f)["merges"] = []any{[]string{"a", "b", "c"}} }), "want 2 tokens, got 3"},
		{"merges wrong type", edit(func(f map[string]any) { model(f)["merges"] = 5 }), "model.merges: want a list"},
		{"unk not in vocab", edit(func(f map[string]any) { model(f)["unk_token"] = "<nope>" }), `unk_token "<nope>" is not in model.vocab`},
		{"negative id", edit(func(f map[string]any) { model(f)["vocab"].(map[string]int)["z"] = -1 }), "negative id"},
		{"normalizer", edit(func(f map[string]any) { f["normalizer"] = map[string]any{"type": "BertNormalizer"} }), `unsupported normalizer "BertNormalizer"`},
		{"pre_tokenizer", edit(func(f map[string]any) { f["pre_tokenizer"] = map[string]any{"type": "Whitespace"} }), `unsupported pre_tokenizer "Whitespace"`},
		{"split behavior", edit(func(f map[string]any) {
			f["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"String": " "}, "behavior": "Bogus"}
		}), `unsupported behavior "Bogus"`},
		{"split regex", edit(func(f map[string]any) {
			f["pre_tokenizer"] = map[string]any{"type": "Split", "pattern": map[string]any{"Regex": "("}, "behavior": "Isolated"}
		}), `pattern "("`},
		{"decoder", edit(func(f map[string]any) { f["decoder"] = map[string]any{"type": "WordPiece"} }), `unsupported decoder "WordPiece"`},
		{"post_processor", edit(func(f map[string]any) { f["post_processor"] = map[string]any{"type": "Weird"} }), `unsupported post_processor "Weird"`},
		{"template special unknown", edit(func(f map[string]any) {
			pp := f["post_processor"].(map[string]any)
			pp["special_tokens"] = map[string]any{}
		}), `special token "<s>" is not in special_tokens`},
		{"metaspace scheme", edit(func(f map[string]any) {
			f["pre_tokenizer"] = map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "sometimes"}
		}), `unsupported prepend_scheme "sometimes"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := parseTiny(t, tc.f, nil)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}

// TestLoadErrors checks that file errors name the file and, for JSON, the
// line.
func TestLoadErrors(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	good, _ := json.Marshal(tinyFile())
	tests := []struct {
		name string
		path string
		want []string
	}{
		{"missing", filepath.Join(dir, "nope.json"), []string{"nope.json"}},
		{"malformed JSON", write("bad/tokenizer.json", "{\n  \"model\": [1,\n}"), []string{"bad/tokenizer.json", "malformed JSON", "line 3"}},
		{"WordPiece", write("wp/tokenizer.json", `{"model": {"type": "WordPiece", "vocab": {}}}`), []string{"wp/tokenizer.json", "unsupported tokenizer model WordPiece"}},
		{"malformed config", func() string {
			write("cfg/tokenizer_config.json", "{oops")
			return write("cfg/tokenizer.json", string(good))
		}(), []string{"cfg/tokenizer_config.json", "malformed JSON"}},
		{"empty folder", func() string { os.MkdirAll(filepath.Join(dir, "empty"), 0o755); return filepath.Join(dir, "empty") }(), []string{"no tokenizer.json, tokenizer.bin or tok*.bin"}},
		{"only tokenizer.model", func() string { write("spm/tokenizer.model", "x"); return filepath.Join(dir, "spm") }(), []string{"only a SentencePiece tokenizer.model"}},
		{".model file", write("m/tokenizer.model", "x"), []string{"SentencePiece .model files are not read directly"}},
		{"not a llama2.c file", write("x/vocab.bin", "hello"), []string{"x/vocab.bin", "not a llama2.c tokenizer.bin"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.path)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("err = %v, want it to contain %q", err, w)
				}
			}
		})
	}
	// A tokenizer_config.json path loads the tokenizer.json beside it.
	write("ok/tokenizer.json", string(good))
	write("ok/tokenizer_config.json", `{"add_eos_token": true, "eos_token": "</s>"}`)
	tok, err := Load(filepath.Join(dir, "ok", "tokenizer_config.json"))
	if err != nil {
		t.Fatal(err)
	}
	if ids, _ := tok.Encode("a", true); !slices.Equal(ids, []int{1, 8, 2}) {
		t.Errorf("config not applied: Encode(a, true) = %v", ids)
	}
}

// TestHFPipelineStages checks stages the LLaMA-2 file does not use, each on
// an input whose answer follows from the stage's definition.
func TestHFPipelineStages(t *testing.T) {
	var base map[string]json.RawMessage
	if err := json.Unmarshal(gpt2FromTiktokenJSON(t), &base); err != nil {
		t.Fatal(err)
	}
	withPre := func(pre any, norm any) *HF {
		f := map[string]any{}
		for k, v := range base {
			f[k] = v
		}
		f["pre_tokenizer"] = pre
		f["normalizer"] = norm
		data, _ := json.Marshal(f)
		tok, err := ParseHF(data, nil)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	enc := func(tok *HF, s string) []int {
		ids, err := tok.Encode(s, false)
		if err != nil {
			t.Fatal(err)
		}
		return ids
	}
	concat := func(tok *HF, parts ...string) []int {
		var out []int
		for _, p := range parts {
			out = append(out, enc(tok, p)...)
		}
		return out
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}
	qwen := withPre(map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": qwen2Pattern}, "behavior": "Isolated", "invert": false},
		byteLevel}}, map[string]any{"type": "NFC"})
	// Qwen2's pattern takes digits one at a time.
	if got, want := enc(qwen, "2024"), concat(qwen, "2", "0", "2", "4"); !slices.Equal(got, want) {
		t.Errorf("Qwen2-style Encode(2024) = %v, want %v", got, want)
	}
	// NFC composes e + U+0301 into é.
	if got, want := enc(qwen, "cafe\u0301"), enc(qwen, "café"); !slices.Equal(got, want) {
		t.Errorf("NFC: Encode(cafe+U+0301) = %v, want %v", got, want)
	}
	// Digits (individual) splits 12345 into five words.
	digits := withPre(map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Digits", "individual_digits": true}, byteLevel}}, nil)
	if got, want := enc(digits, "ab12345"), concat(digits, "ab", "1", "2", "3", "4", "5"); !slices.Equal(got, want) {
		t.Errorf("Digits: Encode(ab12345) = %v, want %v", got, want)
	}
	// add_prefix_space puts a space before a word that has none.
	prefixed := withPre(map[string]any{"type": "ByteLevel", "add_prefix_space": true}, nil)
	if got, want := enc(prefixed, "Hello"), enc(withPre(map[string]any{"type": "ByteLevel"}, nil), " Hello"); !slices.Equal(got, want) {
		t.Errorf("add_prefix_space: Encode(Hello) = %v, want %v", got, want)
	}
	// A Split regex without a hand-written splitter runs through regexp2.
	custom := withPre(map[string]any{"type": "Sequence", "pretokenizers": []any{
		map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `\d+|[^\d]+`}, "behavior": "Isolated", "invert": false},
		byteLevel}}, map[string]any{"type": "Lowercase"})
	if got, want := enc(custom, "AB12cd"), concat(custom, "ab", "12", "cd"); !slices.Equal(got, want) {
		t.Errorf("regex Split + Lowercase: Encode(AB12cd) = %v, want %v", got, want)
	}
	if got := custom.Decode(enc(custom, "AB12cd")); got != "ab12cd" {
		t.Errorf("Decode = %q, want %q", got, "ab12cd")
	}
}
