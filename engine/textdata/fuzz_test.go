package textdata

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine/tokenizer"
)

// FuzzOpen feeds arbitrary bytes to every text data format (instruction,
// chat, plain text as JSONL and as .txt, and auto-detection) with the
// demo model's tokenizer. Seeds: a valid file of each format and broken
// ones (invalid UTF-8, duplicate keys, wrong types, unknown roles).
func FuzzOpen(f *testing.F) {
	for _, s := range []string{
		`{"instruction":"Reverse","input":"abc","output":"cba"}`,
		`{"instruction":"Reverse","output":"cba","output":"x"}`,
		`{"messages":[{"role":"system","content":"s"},{"role":"user","content":"hi"},{"role":"assistant","content":"yo"}]}`,
		`{"messages":[{"role":"user","role":"assistant","content":"hi"}]}`,
		`{"messages":[{"role":"wizard","content":1}]}`,
		`{"text":"once upon a time"}`,
		"{\"text\":\"bad \xc3\x28 utf8\"}",
		"plain text\nsecond line \xff\n",
	} {
		for format := range byte(5) {
			f.Add(format, []byte(s))
		}
	}
	tok, err := tokenizer.Load("../../testdata/demo")
	if err != nil {
		f.Fatal(err)
	}
	formats := []string{Auto, Instruction, Chat, Text, Text}
	f.Fuzz(func(t *testing.T, format byte, b []byte) {
		i := int(format) % len(formats)
		name := "d.jsonl"
		if i == len(formats)-1 {
			name = "d.txt"
		}
		path := filepath.Join(t.TempDir(), name)
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		Open(path, Options{Format: formats[i], Tokenizer: tok, SeqLen: 16, VocabSize: 259})
	})
}
