package tokenizer

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestSequenceErrors checks that a bad "Sequence" stage is refused with an
// error naming the kind of stage and, for a bad member, its index.
func TestSequenceErrors(t *testing.T) {
	parsers := map[string]func(json.RawMessage) error{
		"normalizer": func(r json.RawMessage) error { _, err := parseNormalizer(r); return err },
		"pre_tokenizer": func(r json.RawMessage) error {
			_, err := parsePreTokenizer(r)
			return err
		},
		"decoder": func(r json.RawMessage) error { _, err := parseDecoder(r); return err },
	}
	tests := []struct {
		kind, raw, wantErr string
	}{
		{"normalizer", `{"type":"Sequence","normalizers":"NFC"}`, "normalizer Sequence: \"normalizers\": json: cannot unmarshal string"},
		{"normalizer", `{"type":"Sequence","normalizers":[null,{"type":"NFC"},{"type":"Nope"}]}`, `normalizer Sequence[2]: unsupported normalizer "Nope"`},
		{"pre_tokenizer", `{"type":"Sequence","pretokenizers":{}}`, "pre_tokenizer Sequence: \"pretokenizers\": json: cannot unmarshal object"},
		{"pre_tokenizer", `{"type":"Sequence","pretokenizers":[{"type":"Nope"}]}`, `pre_tokenizer Sequence[0]: unsupported pre_tokenizer "Nope"`},
		{"decoder", `{"type":"Sequence","decoders":1}`, "decoder Sequence: \"decoders\": json: cannot unmarshal number"},
		{"decoder", `{"type":"Sequence","decoders":[{"type":"Fuse"},{"type":"Strip","content":"ab"}]}`, `decoder Sequence[1]: decoder Strip: content "ab" is not one character`},
	}
	for _, tc := range tests {
		t.Run(tc.kind+" "+tc.raw, func(t *testing.T) {
			err := parsers[tc.kind](json.RawMessage(tc.raw))
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("error %v, want one containing %q", err, tc.wantErr)
			}
		})
	}
}

// TestSequenceRunsInOrder checks that the stages of a Sequence run in the
// listed order, skipping null members, and that an empty one passes its
// input through.
func TestSequenceRunsInOrder(t *testing.T) {
	n, err := parseNormalizer(json.RawMessage(`{"type":"Sequence","normalizers":[
		{"type":"Lowercase"}, null, {"type":"Prepend","prepend":"X"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	// Lowercasing first keeps the prepended "X" upper case.
	if got, err := n("AbC"); err != nil || got != "Xabc" {
		t.Errorf("normalizer Sequence(%q) = %q, %v, want %q", "AbC", got, err, "Xabc")
	}
	empty, err := parsePreTokenizer(json.RawMessage(`{"type":"Sequence","pretokenizers":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	in := []piece{{text: "a b"}}
	if got, err := empty(in); err != nil || len(got) != 1 || got[0].text != "a b" {
		t.Errorf("empty pre_tokenizer Sequence = %v, %v, want the input", got, err)
	}
	p, err := parsePreTokenizer(json.RawMessage(`{"type":"Sequence","pretokenizers":[
		{"type":"Digits","individual_digits":true},
		{"type":"Split","pattern":{"String":"-"},"behavior":"Removed"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	got, err := p([]piece{{text: "a12-b"}})
	if err != nil {
		t.Fatal(err)
	}
	var texts []string
	for _, q := range got {
		texts = append(texts, q.text)
	}
	if want := "a|1|2|b"; strings.Join(texts, "|") != want {
		t.Errorf("pre_tokenizer Sequence pieces %q, want %s", texts, want)
	}
}
