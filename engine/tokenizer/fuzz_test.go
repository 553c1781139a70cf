package tokenizer

import (
	"os"
	"testing"
)

// fuzzText is what the fuzzed tokenizers encode and decode.
const fuzzText = "Hello, wörld! 123 <s>\n\tüñí 😀"

// FuzzParseHF feeds arbitrary bytes to the tokenizer.json parser; a
// tokenizer it accepts must encode and decode text without panicking.
// Seeds: the demo tokenizer, truncated, with a duplicate key and with a
// huge id.
func FuzzParseHF(f *testing.F) {
	b, err := os.ReadFile("../../testdata/demo/tokenizer.json")
	if err != nil {
		f.Fatal(err)
	}
	f.Add(b)
	f.Add(b[:len(b)/2])
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"a":1},"merges":[]}}`))
	f.Add([]byte(`{"model":{"type":"BPE","vocab":{"a":0,"b":1000000000},"merges":["a b"]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseHF(b, nil)
		if err != nil {
			return
		}
		ids, err := tok.Encode(fuzzText, true)
		if err == nil {
			tok.Decode(ids)
		}
	})
}

// FuzzParseLlama2C feeds arbitrary bytes to the tokenizer.bin parser.
// Seeds: stories260K's tok512.bin where shared/ has it, a minimal file,
// and broken variants.
func FuzzParseLlama2C(f *testing.F) {
	for _, shared := range []string{"../../shared", "../../../shared", "../../../../shared"} {
		if b, err := os.ReadFile(shared + "/models/stories260K/tok512.bin"); err == nil {
			f.Add(b)
			f.Add(b[:len(b)/3])
			break
		}
	}
	minimal := []byte{8, 0, 0, 0}
	for _, piece := range []string{"<unk>", "<s>", "</s>", " ", "a", "b", "ab"} {
		minimal = append(minimal, 0, 0, 0, 0, byte(len(piece)), 0, 0, 0)
		minimal = append(minimal, piece...)
	}
	f.Add(minimal)
	f.Add(append([]byte{8, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0xff, 0x7f}, "x"...))
	f.Fuzz(func(t *testing.T, b []byte) {
		tok, err := ParseLlama2C(b)
		if err != nil {
			return
		}
		ids, err := tok.Encode(fuzzText, true)
		if err == nil {
			tok.Decode(ids)
		}
	})
}
