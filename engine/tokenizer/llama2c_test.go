package tokenizer

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// tok512Path is stories260K's tokenizer, relative to this package.
var tok512Path = filepath.Join("..", "..", "..", "shared", "models", "stories260K", "tok512.bin")

func loadTok512(t testing.TB) *Llama2C {
	t.Helper()
	if _, err := os.Stat(tok512Path); err != nil {
		t.Skipf("stories260K tokenizer not found at %s (it lives in shared/models beside the repository): %v", tok512Path, err)
	}
	tok, err := LoadLlama2C(tok512Path)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// TestLlama2CReference compares Encode with the reference encodings made
// by testdata/gen_llama2c.py, a separate Python implementation of the
// format, on 10,000 random strings (some with invalid UTF-8).
func TestLlama2CReference(t *testing.T) {
	split := loadTok512(t)
	if !split.splitAtSpace {
		t.Fatal("tok512.bin should allow cutting text at spaces")
	}
	// The same tokenizer without the cut-at-spaces shortcut, to check that
	// the shortcut changes nothing.
	whole := *split
	whole.splitAtSpace = false
	for _, tok := range []*Llama2C{split, &whole} {
		compareLlama2CReference(t, tok)
	}
}

func compareLlama2CReference(t *testing.T, tok *Llama2C) {
	lines := readGzipLines(t, filepath.Join("testdata", "llama2c_tok512_ref.jsonl.gz"))
	if len(lines) < 10000 {
		t.Fatalf("reference file has %d strings, want at least 10000", len(lines))
	}
	bad := 0
	for i, line := range lines {
		var rec struct {
			Hex string `json:"hex"`
			BOS bool   `json:"bos"`
			IDs []int  `json:"ids"`
		}
		if err := json.Unmarshal(line, &rec); err != nil {
			t.Fatalf("reference line %d: %v", i+1, err)
		}
		text, err := hex.DecodeString(rec.Hex)
		if err != nil {
			t.Fatalf("reference line %d: %v", i+1, err)
		}
		got, err := tok.Encode(string(text), rec.BOS)
		if err != nil {
			t.Fatalf("line %d: Encode(%q): %v", i+1, text, err)
		}
		if !slices.Equal(got, rec.IDs) {
			if bad++; bad <= 5 {
				t.Errorf("line %d: Encode(%q, %v)\n got %v\nwant %v", i+1, text, rec.BOS, got, rec.IDs)
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d of %d strings differ from the reference", bad, len(lines))
	}
}

func readGzipLines(t *testing.T, path string) [][]byte {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	var lines [][]byte
	sc := bufio.NewScanner(zr)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		if len(bytes.TrimSpace(sc.Bytes())) > 0 {
			lines = append(lines, bytes.Clone(sc.Bytes()))
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return lines
}

// TestLlama2CHandChecked checks encodings worked out by hand from the
// vocabulary listing of tok512.bin (ids and pieces as printed by reading
// the file: 403 " Once", 407 " upon", 261 " a", 378 " time", 317 " Lily",
// 410 " ", 469 "Z", 347 "oo", 485 "é", and byte tokens at 3+byte).
func TestLlama2CHandChecked(t *testing.T) {
	tok := loadTok512(t)
	tests := []struct {
		text string
		bos  bool
		want []int
	}{
		{"Once upon a time", true, []int{1, 403, 407, 261, 378}},
		{"Lily", true, []int{1, 317}},
		// There is no " Z" token, so the dummy prefix stays alone.
		{"Zoo", true, []int{1, 410, 469, 347}},
		{"é", false, []int{410, 485}},
		// Not in the vocabulary: four byte tokens.
		{"😀", true, []int{1, 410, 3 + 0xF0, 3 + 0x9F, 3 + 0x98, 3 + 0x80}},
		{"", true, []int{1}},
		{"", false, nil},
	}
	for _, tc := range tests {
		got, err := tok.Encode(tc.text, tc.bos)
		if err != nil {
			t.Fatalf("Encode(%q): %v", tc.text, err)
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("Encode(%q, %v) = %v, want %v", tc.text, tc.bos, got, tc.want)
		}
	}
	decodes := []struct {
		ids  []int
		want string
		all  bool
	}{
		{[]int{1, 403, 407}, "Once upon", false},
		{[]int{403, 407}, " Once upon", false}, // no BOS: the space stays
		{[]int{1, 243, 162, 155, 131}, "😀", false},
		{[]int{1, 403, 2}, "Once", false},
		{[]int{1, 403, 2}, "<s>Once</s>", true},
		{[]int{1, 410, 469, 347}, "Zoo", false},
		{[]int{-1, 9999, 403}, " Once", false}, // out-of-range ids skipped
	}
	for _, tc := range decodes {
		var got string
		if tc.all {
			got = tok.DecodeWithSpecial(tc.ids)
		} else {
			got = tok.Decode(tc.ids)
		}
		if got != tc.want {
			t.Errorf("decode(%v, special=%v) = %q, want %q", tc.ids, tc.all, got, tc.want)
		}
	}
	if tok.VocabSize() != 512 || tok.BOS() != 1 || tok.EOS() != 2 || tok.PAD() != NoToken {
		t.Errorf("VocabSize/BOS/EOS/PAD = %d/%d/%d/%d, want 512/1/2/%d", tok.VocabSize(), tok.BOS(), tok.EOS(), tok.PAD(), NoToken)
	}
	for name, id := range map[string]int{"<s>": 1, "</s>": 2, "<unk>": 0, " Lily": 317} {
		if got, ok := tok.TokenToID(name); !ok || got != id {
			t.Errorf("TokenToID(%q) = %d, %v; want %d", name, got, ok, id)
		}
		if s, ok := tok.IDToToken(id); !ok || s != name {
			t.Errorf("IDToToken(%d) = %q, %v; want %q", id, s, ok, name)
		}
	}
}

// TestLlama2CRoundTrip checks Decode(Encode(s, true)) == s, including for
// invalid UTF-8 (byte tokens carry any byte).
func TestLlama2CRoundTrip(t *testing.T) {
	tok := loadTok512(t)
	for _, s := range randStrings(7, 10000, true) {
		ids, err := tok.Encode(s, true)
		if err != nil {
			t.Fatalf("Encode(%q): %v", s, err)
		}
		if got := tok.Decode(ids); got != s {
			t.Fatalf("Decode(Encode(%q)) = %q", s, got)
		}
	}
}

// llama2cFile writes a tokenizer.bin from pieces and scores.
func llama2cFile(maxLen int32, pieces []string, scores []float32) []byte {
	var b bytes.Buffer
	binary.Write(&b, binary.LittleEndian, maxLen)
	for i, p := range pieces {
		binary.Write(&b, binary.LittleEndian, scores[i])
		binary.Write(&b, binary.LittleEndian, int32(len(p)))
		b.WriteString(p)
	}
	return b.Bytes()
}

// TestLlama2CMergeOrder checks the merge rule on tiny vocabularies where the
// answer follows from the rule directly: highest score first, leftmost on
// equal scores, and no merge into a token scoring -1e10 or less.
func TestLlama2CMergeOrder(t *testing.T) {
	base := []string{"<unk>", "\n<s>\n", "\n</s>\n", " ", "a", "b", "c"}
	tests := []struct {
		name   string
		extra  []string
		scores []float32
		text   string
		want   []string
	}{
		{"leftmost of equal pairs", []string{"aa"}, []float32{-1}, "aaa", []string{" ", "aa", "a"}},
		{"equal scores, different tokens", []string{"ab", "bc"}, []float32{-1, -1}, "abc", []string{" ", "ab", "c"}},
		{"higher score wins", []string{"ab", "bc"}, []float32{-2, -1}, "abc", []string{" ", "a", "bc"}},
		{"chained merges", []string{"ab", "abc", " abc"}, []float32{-1, -2, -3}, "abc", []string{" abc"}},
		{"too low a score never merges", []string{"ab"}, []float32{-1e10}, "ab", []string{" ", "a", "b"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			pieces := append(slices.Clone(base), tc.extra...)
			scores := make([]float32, len(base), len(pieces))
			scores = append(scores, tc.scores...)
			tok, err := ParseLlama2C(llama2cFile(8, pieces, scores))
			if err != nil {
				t.Fatal(err)
			}
			ids, err := tok.Encode(tc.text, false)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, id := range ids {
				p, _ := tok.IDToToken(id)
				got = append(got, p)
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("Encode(%q) = %q, want %q", tc.text, got, tc.want)
			}
		})
	}
	// Without byte tokens, an unknown character is an error, not a drop.
	tok, err := ParseLlama2C(llama2cFile(8, base, make([]float32, len(base))))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tok.Encode("x", false); err == nil || !strings.Contains(err.Error(), "0x78") {
		t.Errorf("Encode of a character outside the vocabulary: err = %v, want one naming byte 0x78", err)
	}
}

func TestLlama2CParseErrors(t *testing.T) {
	good := llama2cFile(8, []string{"<unk>", "<s>", "</s>", "a"}, []float32{0, 0, 0, -1})
	nan := llama2cFile(8, []string{"<unk>", "<s>", "</s>"}, []float32{0, float32(math.NaN()), 0})
	tests := []struct {
		name string
		data []byte
		want string
	}{
		{"empty", nil, "too short"},
		{"zero max length", llama2cFile(0, []string{"<unk>", "<s>", "</s>"}, []float32{0, 0, 0}), "max_token_length 0"},
		{"truncated entry", good[:len(good)-1], "does not fit"},
		{"truncated header", good[:len(good)-6], "truncated header"},
		{"too few tokens", llama2cFile(8, []string{"<unk>", "<s>"}, []float32{0, 0}), "only 2 tokens"},
		{"token longer than max", llama2cFile(2, []string{"<unk>", "<s>", "</s>"}, []float32{0, 0, 0}), "exceeds max_token_length"},
		{"ok", good, ""},
		{"NaN score is accepted", nan, ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			_, err := ParseLlama2C(tc.data)
			if tc.want == "" {
				if err != nil {
					t.Fatalf("unexpected error: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("err = %v, want one containing %q", err, tc.want)
			}
		})
	}
}
