package bytetok

import (
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/tokenizer"
)

// TestRoundTrip loads a written tokenizer with the tokenizer package and
// checks the id layout (byte b is id b; specials follow) and exact
// decoding of arbitrary bytes.
func TestRoundTrip(t *testing.T) {
	dir := t.TempDir()
	spec := Spec{Specials: []string{"<s>", "</s>", "<|x|>"}, BOS: "<s>", EOS: "</s>"}
	if err := Write(dir, spec); err != nil {
		t.Fatal(err)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		t.Fatal(err)
	}
	if tok.VocabSize() != 259 || tok.BOS() != 256 || tok.EOS() != 257 || tok.PAD() != tokenizer.NoToken {
		t.Errorf("vocab %d, BOS %d, EOS %d, PAD %d", tok.VocabSize(), tok.BOS(), tok.EOS(), tok.PAD())
	}
	text := "a\x00\n é\xff<|x|>"
	ids, err := tok.Encode(text, false)
	if err != nil {
		t.Fatal(err)
	}
	want := []int{'a', 0, '\n', ' ', 0xc3, 0xa9, 0xff, 258}
	if len(ids) != len(want) {
		t.Fatalf("ids %v, want %v", ids, want)
	}
	for i := range want {
		if ids[i] != want[i] {
			t.Fatalf("ids %v, want %v", ids, want)
		}
	}
	if got := tok.DecodeWithSpecial(ids); got != text {
		t.Errorf("decode %q, want %q", got, text)
	}
}

func TestSpecErrors(t *testing.T) {
	for _, c := range []struct {
		spec Spec
		want string
	}{
		{Spec{Specials: []string{""}}, "special token 0 is empty"},
		{Spec{Specials: []string{"a"}}, `special token "a" is already in the vocabulary`},
		{Spec{Specials: []string{"<s>"}, EOS: "</s>"}, `"</s>" is not one of the special tokens`},
	} {
		if err := Write(t.TempDir(), c.spec); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.spec, err, c.want)
		}
	}
}
