package tokenizer

import (
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/dlclark/regexp2"
)

// The pre-tokenization patterns of the byte-level BPE models this package
// targets, exactly as their tokenizer.json files (or, for GPT-2, the
// ByteLevel pre-tokenizer) spell them. They need look-ahead (\s+(?!\S)),
// which Go's regexp lacks, so each has a hand-written splitter below that
// runs in one linear pass; any other pattern goes through regexp2.
const (
	// gpt2Pattern is the regex of the ByteLevel pre-tokenizer (GPT-2,
	// RoBERTa, tiktoken's r50k_base and p50k_base).
	gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`
	// llama3Pattern is LLaMA-3's Split pattern (tiktoken's cl100k_base).
	llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
	// qwen2Pattern is Qwen2's Split pattern: LLaMA-3's with single digits.
	qwen2Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`
)

// span is a byte range [start, end) of a string.
type span struct{ start, end int }

// matcher finds the non-overlapping, non-empty matches of a pattern in s,
// left to right, appending them to dst.
type matcher interface {
	matches(s string, dst []span) ([]span, error)
}

// compileMatcher returns the matcher for a Split pattern: a hand-written
// one for the known regexes, regexp2 for other regexes, and a substring
// search for a literal String pattern.
func compileMatcher(pattern string, isRegex bool) (matcher, error) {
	if !isRegex {
		return literalMatcher(pattern), nil
	}
	switch pattern {
	case gpt2Pattern:
		return gpt2Splitter{}, nil
	case llama3Pattern:
		return cl100kSplitter{maxDigits: 3}, nil
	case qwen2Pattern:
		return cl100kSplitter{maxDigits: 1}, nil
	}
	re, err := regexp2.Compile(pattern, regexp2.None)
	if err != nil {
		return nil, fmt.Errorf("pattern %q: %w", pattern, err)
	}
	return regexMatcher{re}, nil
}

// literalMatcher matches every occurrence of a fixed string.
type literalMatcher string

func (l literalMatcher) matches(s string, dst []span) ([]span, error) {
	if l == "" {
		return dst, nil
	}
	for off := 0; ; {
		i := strings.Index(s[off:], string(l))
		if i < 0 {
			return dst, nil
		}
		dst = append(dst, span{off + i, off + i + len(l)})
		off += i + len(l)
	}
}

// regexMatcher runs a regexp2 pattern. regexp2 works on runes, and turns
// each invalid UTF-8 byte into one U+FFFD rune, so rune indexes are mapped
// back to byte offsets with the same decoding.
type regexMatcher struct{ re *regexp2.Regexp }

func (m regexMatcher) matches(s string, dst []span) ([]span, error) {
	runes := []rune(s)
	offs := make([]int, 0, len(runes)+1)
	for i := range s {
		offs = append(offs, i)
	}
	offs = append(offs, len(s))
	match, err := m.re.FindRunesMatch(runes)
	for err == nil && match != nil {
		if match.Length > 0 {
			dst = append(dst, span{offs[match.Index], offs[match.Index+match.Length]})
		}
		match, err = m.re.FindNextMatch(match)
	}
	if err != nil {
		return dst, fmt.Errorf("pattern %q: %w", m.re.String(), err)
	}
	return dst, nil
}

// Character classes of the patterns: \p{L}, \p{N}, \s and everything else.
// An invalid UTF-8 byte decodes to U+FFFD, a symbol, hence "other", which is
// also what the regex engines see.
const (
	clsOther = iota
	clsLetter
	clsNumber
	clsSpace
)

func classOf(r rune) int {
	if r < utf8.RuneSelf {
		return asciiClass[r]
	}
	switch {
	case unicode.IsLetter(r):
		return clsLetter
	case unicode.IsNumber(r):
		return clsNumber
	case unicode.IsSpace(r):
		return clsSpace
	}
	return clsOther
}

var asciiClass [utf8.RuneSelf]int

func init() {
	for r := rune(0); r < utf8.RuneSelf; r++ {
		switch {
		case unicode.IsLetter(r):
			asciiClass[r] = clsLetter
		case unicode.IsNumber(r):
			asciiClass[r] = clsNumber
		case unicode.IsSpace(r):
			asciiClass[r] = clsSpace
		default:
			asciiClass[r] = clsOther
		}
	}
}

// runeAt decodes the rune at byte offset i of s, with its class and width.
func runeAt(s string, i int) (rune, int, int) {
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), asciiClass[c], 1
	}
	r, w := utf8.DecodeRuneInString(s[i:])
	return r, classOf(r), w
}

// runOf returns the end of the run of class cls starting at byte i.
func runOf(s string, i, cls int) int {
	for i < len(s) {
		_, c, w := runeAt(s, i)
		if c != cls {
			break
		}
		i += w
	}
	return i
}

// spaceRun returns the end of the whitespace run starting at i, the start
// of its last rune, and the end of its last '\r' or '\n' (or -1).
func spaceRun(s string, i int) (end, lastStart, lastNL int) {
	lastStart, lastNL = i, -1
	for i < len(s) {
		r, c, w := runeAt(s, i)
		if c != clsSpace {
			break
		}
		if r == '\r' || r == '\n' {
			lastNL = i + 1
		}
		lastStart = i
		i += w
	}
	return i, lastStart, lastNL
}

// whitespace matches \s+(?!\S)|\s+ at i, where s[i] is whitespace: the run
// without its last character when a non-space follows (that character then
// goes with the next word), else the whole run.
func whitespace(s string, i int) int {
	end, lastStart, _ := spaceRun(s, i)
	if end < len(s) && lastStart > i {
		return lastStart
	}
	return end
}

// gpt2Splitter implements gpt2Pattern.
type gpt2Splitter struct{}

func (gpt2Splitter) matches(s string, dst []span) ([]span, error) {
	for i := 0; i < len(s); {
		e := gpt2Next(s, i)
		dst = append(dst, span{i, e})
		i = e
	}
	return dst, nil
}

func gpt2Next(s string, i int) int {
	if s[i] == '\'' && i+1 < len(s) {
		switch s[i+1] {
		case 's', 't', 'm', 'd':
			return i + 2
		}
		if i+2 < len(s) {
			switch s[i+1 : i+3] {
			case "re", "ve", "ll":
				return i + 3
			}
		}
	}
	_, c, w := runeAt(s, i)
	if s[i] == ' ' && i+1 < len(s) {
		if _, c2, _ := runeAt(s, i+1); c2 != clsSpace {
			return runOf(s, i+1, c2)
		}
	}
	if c != clsSpace {
		return runOf(s, i+w, c)
	}
	return whitespace(s, i)
}

// cl100kSplitter implements llama3Pattern (maxDigits 3) and qwen2Pattern
// (maxDigits 1).
type cl100kSplitter struct{ maxDigits int }

func (p cl100kSplitter) matches(s string, dst []span) ([]span, error) {
	for i := 0; i < len(s); {
		e := p.next(s, i)
		dst = append(dst, span{i, e})
		i = e
	}
	return dst, nil
}

// contraction matches (?i:'s|'t|'re|'ve|'m|'ll|'d) at i and returns its
// end, or -1. Case-insensitive matching uses Unicode simple case folding,
// under which 's' also matches U+017F LATIN SMALL LETTER LONG S, as it does
// in the Rust, Python and .NET regex engines.
func contraction(s string, i int) int {
	if s[i] != '\'' || i+1 >= len(s) {
		return -1
	}
	r1, _, w1 := runeAt(s, i+1)
	switch r1 {
	case 's', 'S', 'ſ', 't', 'T', 'm', 'M', 'd', 'D':
		return i + 1 + w1
	}
	j := i + 1 + w1
	if j >= len(s) {
		return -1
	}
	r2, _, w2 := runeAt(s, j)
	l1, l2 := unicode.ToLower(r1), unicode.ToLower(r2)
	if r1 < utf8.RuneSelf && r2 < utf8.RuneSelf &&
		(l1 == 'r' && l2 == 'e' || l1 == 'v' && l2 == 'e' || l1 == 'l' && l2 == 'l') {
		return j + w2
	}
	return -1
}

func (p cl100kSplitter) next(s string, i int) int {
	if e := contraction(s, i); e >= 0 {
		return e
	}
	r, c, w := runeAt(s, i)
	switch c {
	case clsLetter:
		return runOf(s, i+w, clsLetter)
	case clsNumber:
		e := i + w
		for k := 1; k < p.maxDigits && e < len(s); k++ {
			_, c2, w2 := runeAt(s, e)
			if c2 != clsNumber {
				break
			}
			e += w2
		}
		return e
	}
	// [^\r\n\p{L}\p{N}]?\p{L}+ with the optional character present.
	if r != '\r' && r != '\n' && i+w < len(s) {
		if _, c2, _ := runeAt(s, i+w); c2 == clsLetter {
			return runOf(s, i+w, clsLetter)
		}
	}
	// ` ?[^\s\p{L}\p{N}]+[\r\n]*`
	start := -1
	if c == clsOther {
		start = i
	} else if r == ' ' && i+1 < len(s) {
		if _, c2, _ := runeAt(s, i+1); c2 == clsOther {
			start = i + 1
		}
	}
	if start >= 0 {
		e := runOf(s, start, clsOther)
		for e < len(s) && (s[e] == '\r' || s[e] == '\n') {
			e++
		}
		return e
	}
	// c is whitespace here. \s*[\r\n]+ matches up to the last newline of
	// the run, if it has one.
	if _, _, nl := spaceRun(s, i); nl > 0 {
		return nl
	}
	return whitespace(s, i)
}
