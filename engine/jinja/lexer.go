package jinja

import (
	"fmt"
	"strings"
)

// segKind is what a piece of template source is.
type segKind uint8

const (
	segText    segKind = iota // literal text
	segOutput                 // {{ expression }}
	segBlock                  // {% statement %}
	segComment                // {# comment #}
)

// segment is one piece of template source after whitespace control.
type segment struct {
	kind segKind
	text string // literal text, or the inside of the tag
	line int    // line the segment starts on (1-based)
}

// split cuts src into text and tags and applies whitespace control: "-"
// inside a delimiter strips the white space on that side, and, as
// transformers configures Jinja, trim_blocks (the first newline after a
// block or comment tag is removed) and lstrip_blocks (spaces and tabs
// before a block or comment tag at the start of a line are removed;
// "{%+" keeps them).
func split(src string) ([]segment, error) {
	type rawTag struct {
		seg                 segment
		dashL, dashR, plusL bool
	}
	var segs []segment
	var tags []*rawTag // parallel to segs: nil for text
	line := 1
	i := 0
	for i < len(src) {
		j := indexTagStart(src, i)
		if j < 0 {
			j = len(src)
		}
		if j > i {
			segs = append(segs, segment{kind: segText, text: src[i:j], line: line})
			tags = append(tags, nil)
			line += strings.Count(src[i:j], "\n")
		}
		if j == len(src) {
			break
		}
		open := src[j : j+2]
		var closer string
		var kind segKind
		switch open {
		case "{{":
			closer, kind = "}}", segOutput
		case "{%":
			closer, kind = "%}", segBlock
		default:
			closer, kind = "#}", segComment
		}
		start := j + 2
		t := &rawTag{seg: segment{kind: kind, line: line}}
		if start < len(src) && src[start] == '-' {
			t.dashL = true
			start++
		} else if start < len(src) && src[start] == '+' {
			t.plusL = true
			start++
		}
		end := findTagEnd(src, start, closer, kind == segComment)
		if end < 0 {
			return nil, fmt.Errorf("line %d: %s is never closed with %s", line, open, closer)
		}
		inner := src[start:end]
		if strings.HasSuffix(inner, "-") {
			t.dashR = true
			inner = inner[:len(inner)-1]
		} else if strings.HasSuffix(inner, "+") && kind != segOutput {
			inner = inner[:len(inner)-1]
		}
		t.seg.text = inner
		line += strings.Count(src[j:end+2], "\n")
		segs = append(segs, t.seg)
		tags = append(tags, t)
		i = end + 2
	}
	// Whitespace control, applied to the text on each side of each tag.
	// lineStart marks text that begins a line because the tag before it
	// ended one (its newline was trimmed), as Jinja's lexer tracks it.
	lineStart := make([]bool, len(segs))
	if len(segs) > 0 {
		lineStart[0] = true
	}
	for k, t := range tags {
		if t == nil {
			continue
		}
		block := t.seg.kind != segOutput
		if k > 0 && tags[k-1] == nil {
			prev := &segs[k-1]
			switch {
			case t.dashL:
				prev.text = strings.TrimRight(prev.text, " \t\r\n\f\v")
			case block && !t.plusL:
				prev.text = lstripLine(prev.text, lineStart[k-1])
			}
		}
		if k+1 < len(tags) && tags[k+1] == nil {
			next := &segs[k+1]
			switch {
			case t.dashR:
				trimmed := strings.TrimLeft(next.text, " \t\r\n\f\v")
				cut := next.text[:len(next.text)-len(trimmed)]
				lineStart[k+1] = strings.HasSuffix(cut, "\n")
				next.text = trimmed
			case block:
				if strings.HasPrefix(next.text, "\r\n") {
					next.text, lineStart[k+1] = next.text[2:], true
				} else if strings.HasPrefix(next.text, "\n") {
					next.text, lineStart[k+1] = next.text[1:], true
				}
			}
		}
	}
	out := segs[:0]
	for _, s := range segs {
		if s.kind == segComment || (s.kind == segText && s.text == "") {
			continue
		}
		out = append(out, s)
	}
	return out, nil
}

// lstripLine removes the spaces and tabs that end text when only they
// stand between the last newline (or the template's start, when atStart)
// and the tag that follows.
func lstripLine(text string, atStart bool) string {
	nl := strings.LastIndexByte(text, '\n')
	if nl < 0 && !atStart {
		return text
	}
	tail := text[nl+1:]
	if strings.Trim(tail, " \t") != "" {
		return text
	}
	return text[:nl+1]
}

// indexTagStart finds the next "{{", "{%" or "{#" at or after i.
func indexTagStart(src string, i int) int {
	for {
		k := strings.IndexByte(src[i:], '{')
		if k < 0 || i+k+1 >= len(src) {
			return -1
		}
		switch src[i+k+1] {
		case '{', '%', '#':
			return i + k
		}
		i += k + 1
	}
}

// findTagEnd finds closer after start, skipping string literals (not in
// comments).
func findTagEnd(src string, start int, closer string, comment bool) int {
	if comment {
		k := strings.Index(src[start:], closer)
		if k < 0 {
			return -1
		}
		return start + k
	}
	var quote byte
	for i := start; i+1 < len(src); i++ {
		c := src[i]
		switch {
		case quote != 0:
			if c == '\\' {
				i++
			} else if c == quote {
				quote = 0
			}
		case c == '\'' || c == '"':
			quote = c
		case c == closer[0] && src[i+1] == closer[1]:
			return i
		}
	}
	return -1
}

// tokKind classifies an expression token.
type tokKind uint8

const (
	tokEOF tokKind = iota
	tokName
	tokString
	tokInt
	tokFloat
	tokOp
)

// token is one token of an expression.
type token struct {
	kind tokKind
	text string // name, decoded string, number or operator
}

// operators, longest first so "//" wins over "/".
var operators = []string{"**", "//", "==", "!=", "<=", ">=", "+", "-", "*", "/", "%", "~", "|", ".", ",", ":", "(", ")", "[", "]", "{", "}", "<", ">", "="}

// tokenize splits the inside of a tag into tokens.
func tokenize(s string) ([]token, error) {
	var toks []token
	i := 0
	for i < len(s) {
		c := s[i]
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '\'' || c == '"':
			str, n, err := readString(s[i:])
			if err != nil {
				return nil, err
			}
			toks = append(toks, token{tokString, str})
			i += n
		case isDigit(c):
			j := i
			for j < len(s) && (isDigit(s[j]) || s[j] == '_') {
				j++
			}
			kind := tokInt
			if j+1 < len(s) && s[j] == '.' && isDigit(s[j+1]) {
				kind = tokFloat
				j++
				for j < len(s) && isDigit(s[j]) {
					j++
				}
			}
			if j < len(s) && (s[j] == 'e' || s[j] == 'E') {
				k := j + 1
				if k < len(s) && (s[k] == '+' || s[k] == '-') {
					k++
				}
				if k < len(s) && isDigit(s[k]) {
					kind = tokFloat
					for j = k; j < len(s) && isDigit(s[j]); j++ {
					}
				}
			}
			toks = append(toks, token{kind, strings.ReplaceAll(s[i:j], "_", "")})
			i = j
		case isNameStart(c):
			j := i
			for j < len(s) && (isNameStart(s[j]) || isDigit(s[j])) {
				j++
			}
			toks = append(toks, token{tokName, s[i:j]})
			i = j
		default:
			op := ""
			for _, o := range operators {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, fmt.Errorf("unexpected character %q", c)
			}
			toks = append(toks, token{tokOp, op})
			i += len(op)
		}
	}
	return append(toks, token{kind: tokEOF}), nil
}

func isDigit(c byte) bool     { return c >= '0' && c <= '9' }
func isNameStart(c byte) bool { return c == '_' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }

// readString decodes the quoted string literal at the start of s (Python
// escapes) and returns it with the number of bytes it took.
func readString(s string) (string, int, error) {
	quote := s[0]
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c == quote {
			return b.String(), i + 1, nil
		}
		if c != '\\' || i+1 == len(s) {
			b.WriteByte(c)
			continue
		}
		i++
		switch s[i] {
		case 'n':
			b.WriteByte('\n')
		case 't':
			b.WriteByte('\t')
		case 'r':
			b.WriteByte('\r')
		case '\\', '\'', '"':
			b.WriteByte(s[i])
		default:
			b.WriteByte('\\')
			b.WriteByte(s[i])
		}
	}
	return "", 0, fmt.Errorf("string %s... is never closed", s[:min(len(s), 20)])
}
