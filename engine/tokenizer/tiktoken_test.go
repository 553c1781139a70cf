package tokenizer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"sync"
	"testing"

	"github.com/dlclark/regexp2"
	regexp2v2 "github.com/dlclark/regexp2/v2"
	tiktoken "github.com/tiktoken-go/tokenizer"
)

// The byte-level BPE checks compare this package, reading a Hugging Face
// tokenizer.json, with github.com/tiktoken-go/tokenizer, an independent
// implementation of OpenAI's tiktoken that embeds GPT-2's ranks (r50k_base)
// and GPT-4's (cl100k_base, whose split pattern LLaMA-3 reuses). The
// tokenizer.json files are built at test time from tiktoken-go's ranks the
// way Hugging Face converts tiktoken models (as was done for LLaMA-3):
// vocabulary = each rank's bytes in GPT-2's byte-level alphabet, and the
// merge for a token = the two parts that BPE, limited to lower ranks, leaves
// it in. They are tens of MB of JSON, so they are not committed.

// tiktokenRanks returns the bytes of every mergeable token of a codec, by
// id; ids without a token (gaps, special tokens) are absent.
func tiktokenRanks(t testing.TB, enc tiktoken.Encoding, n int) map[int]string {
	t.Helper()
	codec, err := tiktoken.Get(enc)
	if err != nil {
		t.Fatal(err)
	}
	ranks := make(map[int]string, n)
	for id := 0; id < n; id++ {
		s, err := codec.Decode([]uint{uint(id)})
		if err == nil && s != "" {
			ranks[id] = s
		}
	}
	return ranks
}

// gpt2Alphabet is GPT-2's bytes_to_unicode, written here from its
// definition independently of the package's table.
func gpt2Alphabet() [256]string {
	var bs []int
	for b := int('!'); b <= int('~'); b++ {
		bs = append(bs, b)
	}
	for b := 0xA1; b <= 0xAC; b++ {
		bs = append(bs, b)
	}
	for b := 0xAE; b <= 0xFF; b++ {
		bs = append(bs, b)
	}
	var out [256]string
	in := map[int]bool{}
	for _, b := range bs {
		out[b] = string(rune(b))
		in[b] = true
	}
	n := 0
	for b := 0; b < 256; b++ {
		if !in[b] {
			out[b] = string(rune(256 + n))
			n++
		}
	}
	return out
}

// recoverMerges finds, for every multi-byte token, the pair of tokens it
// is merged from: the parts left by BPE that only uses ranks below the
// token's own (tiktoken's simple quadratic BPE, re-implemented here).
func recoverMerges(t testing.TB, ranks map[int]string) [][2]string {
	byBytes := make(map[string]int, len(ranks))
	for id, s := range ranks {
		byBytes[s] = id
	}
	ids := make([]int, 0, len(ranks))
	for id := range ranks {
		ids = append(ids, id)
	}
	sort.Ints(ids)
	var merges [][2]string
	for _, id := range ids {
		tok := ranks[id]
		if len(tok) < 2 {
			continue
		}
		parts := make([]string, len(tok))
		for i := 0; i < len(tok); i++ {
			parts[i] = tok[i : i+1]
		}
		for {
			best, bestRank := -1, id
			for i := 0; i+1 < len(parts); i++ {
				if r, ok := byBytes[parts[i]+parts[i+1]]; ok && r < bestRank {
					best, bestRank = i, r
				}
			}
			if best < 0 {
				break
			}
			parts = slices.Replace(parts, best, best+2, parts[best]+parts[best+1])
		}
		if len(parts) != 2 {
			t.Fatalf("token %d %q: BPE below its rank leaves %d parts, want 2", id, tok, len(parts))
		}
		merges = append(merges, [2]string{parts[0], parts[1]})
	}
	return merges
}

// tiktokenJSON writes a tokenizer.json for a tiktoken encoding in the style
// of GPT-2's (ByteLevel pre-tokenizer, "a b" merges) or LLaMA-3's (Split
// with the cl100k pattern then ByteLevel, [a, b] merges, ignore_merges, a
// BOS template).
func tiktokenJSON(t testing.TB, ranks map[int]string, style string, added []addedToken) []byte {
	t.Helper()
	alpha := gpt2Alphabet()
	enc := func(s string) string {
		out := ""
		for i := 0; i < len(s); i++ {
			out += alpha[s[i]]
		}
		return out
	}
	vocab := make(map[string]int, len(ranks))
	for id, s := range ranks {
		vocab[enc(s)] = id
	}
	var merges any
	raw := recoverMerges(t, ranks)
	if style == "gpt2" {
		ms := make([]string, len(raw))
		for i, m := range raw {
			ms[i] = enc(m[0]) + " " + enc(m[1])
		}
		merges = ms
	} else {
		ms := make([][2]string, len(raw))
		for i, m := range raw {
			ms[i] = [2]string{enc(m[0]), enc(m[1])}
		}
		merges = ms
	}
	byteLevel := map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true}
	model := map[string]any{"type": "BPE", "dropout": nil, "unk_token": nil,
		"continuing_subword_prefix": "", "end_of_word_suffix": "", "fuse_unk": false,
		"byte_fallback": false, "vocab": vocab, "merges": merges}
	file := map[string]any{"version": "1.0", "truncation": nil, "padding": nil,
		"added_tokens": added, "normalizer": nil, "decoder": byteLevel, "model": model}
	switch style {
	case "gpt2":
		file["pre_tokenizer"] = byteLevel
		file["post_processor"] = byteLevel
	case "llama3":
		model["ignore_merges"] = true
		file["pre_tokenizer"] = map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": llama3Pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false},
		}}
		bos := added[0]
		file["post_processor"] = map[string]any{"type": "Sequence", "processors": []any{
			map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true},
			map[string]any{"type": "TemplateProcessing",
				"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": bos.Content, "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
				"special_tokens": map[string]any{bos.Content: map[string]any{"id": bos.Content, "ids": []int{bos.ID}, "tokens": []string{bos.Content}}}},
		}}
	default:
		t.Fatalf("unknown style %q", style)
	}
	data, err := json.Marshal(file)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

var (
	gpt2Once, llama3Once sync.Once
	gpt2Tok, llama3Tok   *HF
	gpt2Err, llama3Err   error
)

var (
	gpt2JSONOnce sync.Once
	gpt2JSON     []byte
)

// gpt2FromTiktokenJSON is the GPT-2 tokenizer.json built from r50k_base.
func gpt2FromTiktokenJSON(t testing.TB) []byte {
	gpt2JSONOnce.Do(func() {
		gpt2JSON = tiktokenJSON(t, tiktokenRanks(t, tiktoken.R50kBase, 50256), "gpt2",
			[]addedToken{{ID: 50256, Content: "<|endoftext|>", Normalized: true, Special: true}})
	})
	if gpt2JSON == nil {
		t.Fatal("building the GPT-2 tokenizer.json failed (here or in an earlier test)")
	}
	return gpt2JSON
}

// gpt2FromTiktoken loads the GPT-2 tokenizer.json built from r50k_base,
// through a file so that Load's path handling is exercised too.
func gpt2FromTiktoken(t testing.TB) *HF {
	gpt2Once.Do(func() {
		data := gpt2FromTiktokenJSON(t)
		dir, err := os.MkdirTemp("", "gpt2tok")
		if err != nil {
			gpt2Err = err
			return
		}
		defer os.RemoveAll(dir)
		if err := os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644); err != nil {
			gpt2Err = err
			return
		}
		tok, err := Load(dir)
		if err != nil {
			gpt2Err = err
			return
		}
		gpt2Tok = tok.(*HF)
	})
	if gpt2Err != nil || gpt2Tok == nil {
		t.Fatalf("building the GPT-2 tokenizer failed (here or in an earlier test): %v", gpt2Err)
	}
	return gpt2Tok
}

// llama3FromTiktoken builds a LLaMA-3-style tokenizer from cl100k_base,
// with LLaMA-3's special tokens added after cl100k's.
func llama3FromTiktoken(t testing.TB) *HF {
	llama3Once.Do(func() {
		added := []addedToken{
			{ID: 100300, Content: "<|begin_of_text|>", Special: true},
			{ID: 100301, Content: "<|end_of_text|>", Special: true},
			{ID: 100302, Content: "<|eot_id|>", Special: true},
			{ID: 100257, Content: "<|endoftext|>", Special: true},
		}
		data := tiktokenJSON(t, tiktokenRanks(t, tiktoken.Cl100kBase, 100257), "llama3", added)
		llama3Tok, llama3Err = ParseHF(data, nil)
	})
	if llama3Err != nil || llama3Tok == nil {
		t.Fatalf("building the LLaMA-3-style tokenizer failed (here or in an earlier test): %v", llama3Err)
	}
	return llama3Tok
}

// compareWithTiktoken encodes random strings with both implementations
// until want strings have been compared whole.
//
// tiktoken-go runs its split patterns through code generated by
// regexp2cg, which departs from the patterns' definition in two corners
// (found by this test, confirmed against regexp2's interpreter and by hand):
// it drops U+007F (DEL) instead of matching it as a symbol, and in
// \s*[\r\n]+ it backtracks to the first newline of a whitespace run instead
// of the last (" \n \nx" splits as " \n", " \n", "x" instead of
// " \n \n", "x"). Real tiktoken, and Hugging Face's tokenizers, follow the
// definition. (The interpreter has a corner of its own, (?i) not matching
// U+017F for "s", so it runs explicitCase's spelling of the pattern.)
// Strings where the generated splitter and the interpreter
// disagree are therefore compared piece by piece on the pieces both
// splitters agree on, the other pieces must round-trip, and they do not
// count toward want.
func compareWithTiktoken(t *testing.T, tok *HF, enc tiktoken.Encoding, pattern string, seed uint64, want int) {
	codec, err := tiktoken.Get(enc)
	if err != nil {
		t.Fatal(err)
	}
	defined := regexp2.MustCompile(explicitCase(pattern), regexp2.None)
	generated := regexp2v2.MustCompile(pattern, regexp2v2.None)
	encode := func(s string) []int {
		ids, err := tok.Encode(s, false)
		if err != nil {
			t.Fatalf("Encode(%q): %v", s, err)
		}
		return ids
	}
	compared, affected, bad := 0, 0, 0
	fail := func(format string, args ...any) {
		if bad++; bad <= 5 {
			t.Errorf(format, args...)
		}
	}
	for batch := uint64(0); compared < want; batch++ {
		if batch > 10 {
			t.Fatalf("only %d of %d strings were comparable whole", compared, want)
		}
		for _, s := range randStrings(seed*1000+batch, want-compared, false) {
			got := encode(s)
			if back := tok.Decode(got); back != s {
				fail("Decode(Encode(%q)) = %q", s, back)
			}
			pv1, pv2 := piecesV1(t, defined, s), piecesV2(t, generated, s)
			if slices.Equal(pv1, pv2) {
				compared++
				ref, _, err := codec.Encode(s)
				if err != nil {
					t.Fatalf("tiktoken-go Encode(%q): %v", s, err)
				}
				if !equalIDs(got, ref) {
					fail("Encode(%q)\n got %v\nwant %v", s, got, ref)
				}
				continue
			}
			affected++
			agreed := map[string]bool{}
			for _, p := range pv2 {
				agreed[p] = true
			}
			for _, p := range pv1 {
				ids := encode(p)
				if !agreed[p] {
					if back := tok.Decode(ids); back != p {
						fail("piece %q of %q: Decode(Encode) = %q", p, s, back)
					}
					continue
				}
				ref, _, err := codec.Encode(p)
				if err != nil {
					t.Fatalf("tiktoken-go Encode(%q): %v", p, err)
				}
				if !equalIDs(ids, ref) {
					fail("piece %q of %q\n got %v\nwant %v", p, s, ids, ref)
				}
			}
		}
	}
	if bad > 0 {
		t.Errorf("%d mismatches with tiktoken-go %s", bad, enc)
	}
	t.Logf("%s: %d strings identical to tiktoken-go; %d more, where its generated splitter departs from the pattern, compared piece by piece", enc, compared, affected)
}

func piecesV1(t *testing.T, re *regexp2.Regexp, s string) []string {
	var out []string
	m, err := re.FindStringMatch(s)
	for err == nil && m != nil {
		out = append(out, m.String())
		m, err = re.FindNextMatch(m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func piecesV2(t *testing.T, re *regexp2v2.Regexp, s string) []string {
	var out []string
	m, err := re.FindStringMatch(s)
	for err == nil && m != nil {
		out = append(out, m.String())
		m, err = re.FindNextMatch(m)
	}
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func equalIDs(a []int, b []uint) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if uint(a[i]) != b[i] {
			return false
		}
	}
	return true
}

func TestByteLevelGPT2MatchesTiktoken(t *testing.T) {
	compareWithTiktoken(t, gpt2FromTiktoken(t), tiktoken.R50kBase, gpt2Pattern, 1, 10000)
}

func TestByteLevelLLaMA3MatchesTiktoken(t *testing.T) {
	compareWithTiktoken(t, llama3FromTiktoken(t), tiktoken.Cl100kBase, llama3Pattern, 2, 10000)
}

// TestByteLevelSpecials checks added tokens, the BOS template and the
// round trip of bytes that are not valid UTF-8 (which byte-level BPE
// represents exactly).
func TestByteLevelSpecials(t *testing.T) {
	gpt2 := gpt2FromTiktoken(t)
	llama3 := llama3FromTiktoken(t)
	enc := func(tok *HF, s string, special bool) []int {
		ids, err := tok.Encode(s, special)
		if err != nil {
			t.Fatalf("Encode(%q): %v", s, err)
		}
		return ids
	}
	hello := enc(gpt2, "Hello", false)
	if got := enc(gpt2, "<|endoftext|>Hello", false); !slices.Equal(got, append([]int{50256}, hello...)) {
		t.Errorf("GPT-2 Encode(<|endoftext|>Hello) = %v, want 50256 then %v", got, hello)
	}
	if got := enc(gpt2, "Hello", true); !slices.Equal(got, hello) {
		t.Errorf("GPT-2 adds no special tokens, got %v", got)
	}
	if gpt2.BOS() != 50256 || gpt2.EOS() != 50256 || gpt2.PAD() != NoToken || gpt2.VocabSize() != 50257 {
		t.Errorf("GPT-2 BOS/EOS/PAD/VocabSize = %d/%d/%d/%d", gpt2.BOS(), gpt2.EOS(), gpt2.PAD(), gpt2.VocabSize())
	}
	ids := enc(llama3, "Hi<|eot_id|>", true)
	if ids[0] != 100300 || ids[len(ids)-1] != 100302 {
		t.Errorf("LLaMA-3 Encode(Hi<|eot_id|>, true) = %v, want BOS 100300 first and 100302 last", ids)
	}
	if got := llama3.Decode(ids); got != "Hi" {
		t.Errorf("Decode skipping specials = %q, want %q", got, "Hi")
	}
	if got := llama3.DecodeWithSpecial(ids); got != "<|begin_of_text|>Hi<|eot_id|>" {
		t.Errorf("DecodeWithSpecial = %q", got)
	}
	if llama3.BOS() != 100300 || llama3.EOS() != 100301 {
		t.Errorf("LLaMA-3 BOS/EOS = %d/%d, want 100300/100301", llama3.BOS(), llama3.EOS())
	}
	for _, tok := range []*HF{gpt2, llama3} {
		for _, s := range randStrings(3, 3000, true) {
			if got := tok.Decode(enc(tok, s, false)); got != s {
				t.Fatalf("Decode(Encode(%q)) = %q", s, got)
			}
		}
	}
	// A token that starts in the middle of a character decodes to its bytes.
	euro := enc(gpt2, "€", false)
	var joined string
	for _, id := range euro {
		joined += gpt2.Decode([]int{id})
	}
	if joined != "€" {
		t.Errorf("token-by-token decode of € = %q (ids %v)", joined, euro)
	}
}
