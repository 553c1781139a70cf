package tokenizer

import (
	"slices"
	"strings"
	"testing"

	"github.com/dlclark/regexp2"
)

// explicitCase spells out the case-insensitive contraction group of the
// LLaMA-3 and Qwen2 patterns character by character. Under Unicode simple
// case folding, which the Rust, Oniguruma and Python engines behind
// tiktoken and Hugging Face use, "s" also matches U+017F (ſ) and no other
// letter of the group has a non-ASCII partner; regexp2's interpreter does
// not fold ſ, so the reference runs this equivalent spelling.
func explicitCase(pattern string) string {
	return strings.Replace(pattern, `(?i:'s|'t|'re|'ve|'m|'ll|'d)`,
		`(?:'[sSſ]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])`, 1)
}

// TestSplittersMatchRegexEngine checks the hand-written splitters against
// regexp2's backtracking interpreter running the patterns themselves, on
// random strings (invalid UTF-8 included) and on cases picked for the
// look-ahead and backtracking corners.
func TestSplittersMatchRegexEngine(t *testing.T) {
	corners := []string{"", " ", "  a", "   a", "\t\ta", " \n \nx", " \n \n", "\n \n", "a \n  b",
		"x  \ty", "'s", "'S", "'ſ", "'ſit", "''s", "'re'", "'RE", "'Ll", "it's", "'x", "a'",
		"123456789", "12 345", " 12", "!!a", " !!\n\n", "(hello", "\rhello", "\nhello", "\u00a0hello",
		"a\x7fb", "\x80\x81 a", "é\u0301", "  \r\n  x", "\r\n\r\n", "x\n\n\n", strings.Repeat(" ", 9)}
	texts := append(corners, randStrings(11, 20000, true)...)
	for _, tc := range []struct {
		name    string
		pattern string
		hand    matcher
	}{
		{"gpt2", gpt2Pattern, gpt2Splitter{}},
		{"llama3", llama3Pattern, cl100kSplitter{maxDigits: 3}},
		{"qwen2", qwen2Pattern, cl100kSplitter{maxDigits: 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := compileMatcher(tc.pattern, true)
			if err != nil {
				t.Fatal(err)
			}
			if _, ok := m.(regexMatcher); ok {
				t.Fatalf("compileMatcher(%s) did not pick the hand-written splitter", tc.name)
			}
			ref := regexMatcher{regexp2.MustCompile(explicitCase(tc.pattern), regexp2.None)}
			bad := 0
			for _, s := range texts {
				got, _ := tc.hand.matches(s, nil)
				want, err := ref.matches(s, nil)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, want) {
					if bad++; bad <= 5 {
						t.Errorf("split(%q)\n got %q\nwant %q", s, spanStrings(s, got), spanStrings(s, want))
					}
				}
			}
			if bad > 0 {
				t.Errorf("%d of %d strings split differently", bad, len(texts))
			}
		})
	}
}

func spanStrings(s string, spans []span) []string {
	out := make([]string, len(spans))
	for i, sp := range spans {
		out[i] = s[sp.start:sp.end]
	}
	return out
}

func TestSplitBehaviors(t *testing.T) {
	// "a-b--c" split at "-", each behavior as Hugging Face documents it.
	tests := []struct {
		behavior string
		invert   bool
		want     []string
	}{
		{"Removed", false, []string{"a", "b", "c"}},
		{"Isolated", false, []string{"a", "-", "b", "-", "-", "c"}},
		{"MergedWithPrevious", false, []string{"a-", "b-", "-", "c"}},
		{"MergedWithNext", false, []string{"a", "-b", "-", "-c"}},
		{"Contiguous", false, []string{"a", "-", "b", "--", "c"}},
		{"Removed", true, []string{"-", "-", "-"}},
	}
	s := "a-b--c"
	for _, tc := range tests {
		spans, _ := literalMatcher("-").matches(s, nil)
		got := spanStrings(s, splitSpans(s, spans, tc.invert, tc.behavior))
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s (invert %v): got %q, want %q", tc.behavior, tc.invert, got, tc.want)
		}
	}
}
