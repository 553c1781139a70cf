package tokenizer

import (
	"encoding/json"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// This file holds the tokenizer.json pipeline stages that run around the
// model: normalizers, pre-tokenizers and decoders, each built from its JSON
// object. Stages the supported models do not use are rejected by name.

// component is the part of every stage object that says what it is.
type component struct {
	Type string `json:"type"`
}

// pattern is the {"String": "..."} or {"Regex": "..."} object of Split and
// Replace.
type pattern struct {
	String *string `json:"String"`
	Regex  *string `json:"Regex"`
}

func (p pattern) get() (string, bool, error) {
	switch {
	case p.String != nil:
		return *p.String, false, nil
	case p.Regex != nil:
		return *p.Regex, true, nil
	}
	return "", false, fmt.Errorf("pattern has neither String nor Regex")
}

// ---- normalizers ----

// normalizer rewrites a piece of text before it is split.
type normalizer func(string) (string, error)

func parseNormalizer(raw json.RawMessage) (normalizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("normalizer: %w", err)
	}
	switch c.Type {
	case "Sequence":
		steps, err := parseSequence(raw, "normalizer", "normalizers", parseNormalizer)
		if err != nil {
			return nil, err
		}
		return chain(steps), nil
	case "Prepend":
		var v struct {
			Prepend string `json:"prepend"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("normalizer Prepend: %w", err)
		}
		// Hugging Face leaves empty text empty.
		return func(s string) (string, error) {
			if s == "" {
				return s, nil
			}
			return v.Prepend + s, nil
		}, nil
	case "Replace":
		var v struct {
			Pattern pattern `json:"pattern"`
			Content string  `json:"content"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("normalizer Replace: %w", err)
		}
		rep, err := replacer(v.Pattern, v.Content)
		if err != nil {
			return nil, fmt.Errorf("normalizer Replace: %w", err)
		}
		return rep, nil
	case "NFC":
		return func(s string) (string, error) { return norm.NFC.String(s), nil }, nil
	case "NFD":
		return func(s string) (string, error) { return norm.NFD.String(s), nil }, nil
	case "NFKC":
		return func(s string) (string, error) { return norm.NFKC.String(s), nil }, nil
	case "NFKD":
		return func(s string) (string, error) { return norm.NFKD.String(s), nil }, nil
	case "Lowercase":
		return func(s string) (string, error) { return strings.ToLower(s), nil }, nil
	case "Strip":
		var v struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("normalizer Strip: %w", err)
		}
		return func(s string) (string, error) {
			if v.Left {
				s = strings.TrimLeftFunc(s, unicode.IsSpace)
			}
			if v.Right {
				s = strings.TrimRightFunc(s, unicode.IsSpace)
			}
			return s, nil
		}, nil
	}
	return nil, fmt.Errorf("unsupported normalizer %q", c.Type)
}

// replacer replaces every match of p with content.
func replacer(p pattern, content string) (func(string) (string, error), error) {
	pat, isRegex, err := p.get()
	if err != nil {
		return nil, err
	}
	if !isRegex {
		if pat == "" {
			return func(s string) (string, error) { return s, nil }, nil
		}
		return func(s string) (string, error) { return strings.ReplaceAll(s, pat, content), nil }, nil
	}
	m, err := compileMatcher(pat, true)
	if err != nil {
		return nil, err
	}
	return func(s string) (string, error) {
		ms, err := m.matches(s, nil)
		if err != nil || len(ms) == 0 {
			return s, err
		}
		var b strings.Builder
		prev := 0
		for _, sp := range ms {
			b.WriteString(s[prev:sp.start])
			b.WriteString(content)
			prev = sp.end
		}
		b.WriteString(s[prev:])
		return b.String(), nil
	}, nil
}

// ---- pre-tokenizers ----

// piece is a pre-tokenized word. When byteLevel is set the text is still
// raw and the model must read it in the byte-level alphabet; doing that
// mapping lazily lets byte-level BPE work on bytes without building the
// mapped string (see preTokenizer.byteLevel).
type piece struct {
	text      string
	byteLevel bool
	// atStart marks the piece that begins the original input (Metaspace's
	// prepend_scheme "first" looks at it).
	atStart bool
}

// materialize writes a byte-level piece in the byte-level alphabet, for a
// stage that must see the mapped text.
func (p piece) materialize() piece {
	if p.byteLevel {
		return piece{text: byteLevelEncode(p.text), atStart: p.atStart}
	}
	return p
}

// preTokenizer splits pieces into smaller pieces.
type preTokenizer func(in []piece) ([]piece, error)

func parsePreTokenizer(raw json.RawMessage) (preTokenizer, error) {
	if isNull(raw) {
		return nil, nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("pre_tokenizer: %w", err)
	}
	switch c.Type {
	case "Sequence":
		steps, err := parseSequence(raw, "pre_tokenizer", "pretokenizers", parsePreTokenizer)
		if err != nil {
			return nil, err
		}
		return chain(steps), nil
	case "ByteLevel":
		var v struct {
			AddPrefixSpace bool  `json:"add_prefix_space"`
			UseRegex       *bool `json:"use_regex"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer ByteLevel: %w", err)
		}
		var m matcher
		if v.UseRegex == nil || *v.UseRegex { // Hugging Face's default is true
			m = gpt2Splitter{}
		}
		return func(in []piece) ([]piece, error) {
			out := in[:0:0]
			for _, p := range in {
				p = p.materialize()
				if v.AddPrefixSpace && !strings.HasPrefix(p.text, " ") {
					p.text = " " + p.text
				}
				if m == nil {
					out = append(out, piece{text: p.text, byteLevel: true, atStart: p.atStart})
					continue
				}
				spans, err := m.matches(p.text, nil)
				if err != nil {
					return nil, err
				}
				// Isolated: matches and the gaps between them are pieces.
				prev := 0
				for _, sp := range spans {
					if sp.start > prev {
						out = append(out, piece{text: p.text[prev:sp.start], byteLevel: true, atStart: p.atStart && prev == 0})
					}
					out = append(out, piece{text: p.text[sp.start:sp.end], byteLevel: true, atStart: p.atStart && sp.start == 0})
					prev = sp.end
				}
				if prev < len(p.text) {
					out = append(out, piece{text: p.text[prev:], byteLevel: true, atStart: p.atStart && prev == 0})
				}
			}
			return out, nil
		}, nil
	case "Split":
		var v struct {
			Pattern  pattern `json:"pattern"`
			Behavior string  `json:"behavior"`
			Invert   bool    `json:"invert"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer Split: %w", err)
		}
		pat, isRegex, err := v.Pattern.get()
		if err != nil {
			return nil, fmt.Errorf("pre_tokenizer Split: %w", err)
		}
		if !validBehavior(v.Behavior) {
			return nil, fmt.Errorf("pre_tokenizer Split: unsupported behavior %q", v.Behavior)
		}
		m, err := compileMatcher(pat, isRegex)
		if err != nil {
			return nil, fmt.Errorf("pre_tokenizer Split: %w", err)
		}
		return func(in []piece) ([]piece, error) {
			return splitPieces(in, m, v.Invert, v.Behavior)
		}, nil
	case "Digits":
		var v struct {
			Individual bool `json:"individual_digits"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer Digits: %w", err)
		}
		behavior := "Contiguous"
		if v.Individual {
			behavior = "Isolated"
		}
		return func(in []piece) ([]piece, error) {
			return splitPieces(in, digitMatcher{}, false, behavior)
		}, nil
	case "Metaspace":
		var v struct {
			Replacement    string  `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
			Split          *bool   `json:"split"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("pre_tokenizer Metaspace: %w", err)
		}
		ms, err := newMetaspace(v.Replacement, v.PrependScheme, v.AddPrefixSpace)
		if err != nil {
			return nil, fmt.Errorf("pre_tokenizer Metaspace: %w", err)
		}
		split := v.Split == nil || *v.Split
		return func(in []piece) ([]piece, error) {
			out := in[:0:0]
			for _, p := range in {
				p = p.materialize()
				t := strings.ReplaceAll(p.text, " ", ms.rep)
				// Hugging Face prepends unless the text already starts with
				// the replacement (so " Hi" gets one "▁", not two).
				if (ms.scheme == "always" || ms.scheme == "first" && p.atStart) && !strings.HasPrefix(t, ms.rep) {
					t = ms.rep + t
				}
				q := piece{text: t, atStart: p.atStart}
				if !split {
					out = append(out, q)
					continue
				}
				parts, err := splitPieces([]piece{q}, literalMatcher(ms.rep), false, "MergedWithNext")
				if err != nil {
					return nil, err
				}
				out = append(out, parts...)
			}
			return out, nil
		}, nil
	}
	return nil, fmt.Errorf("unsupported pre_tokenizer %q", c.Type)
}

// metaspace holds the settings shared by the Metaspace pre-tokenizer and
// decoder. Older files say add_prefix_space, newer ones prepend_scheme.
type metaspace struct {
	rep    string // the replacement character, "▁"
	scheme string // always, first or never
}

func newMetaspace(rep string, scheme *string, addPrefix *bool) (metaspace, error) {
	if utf8.RuneCountInString(rep) != 1 {
		return metaspace{}, fmt.Errorf("replacement %q is not one character", rep)
	}
	m := metaspace{rep: rep, scheme: "always"}
	switch {
	case scheme != nil:
		m.scheme = *scheme
	case addPrefix != nil && !*addPrefix:
		m.scheme = "never"
	}
	if m.scheme != "always" && m.scheme != "first" && m.scheme != "never" {
		return metaspace{}, fmt.Errorf("unsupported prepend_scheme %q", m.scheme)
	}
	return m, nil
}

// digitMatcher matches each numeric character on its own, as Hugging
// Face's Digits pre-tokenizer does before applying its behavior.
type digitMatcher struct{}

func (digitMatcher) matches(s string, dst []span) ([]span, error) {
	for i, r := range s {
		if unicode.IsNumber(r) {
			dst = append(dst, span{i, i + utf8.RuneLen(r)})
		}
	}
	return dst, nil
}

func validBehavior(b string) bool {
	switch b {
	case "Removed", "Isolated", "MergedWithPrevious", "MergedWithNext", "Contiguous":
		return true
	}
	return false
}

// splitPieces splits every piece at the matches of m.
func splitPieces(in []piece, m matcher, invert bool, behavior string) ([]piece, error) {
	out := in[:0:0]
	for _, p := range in {
		p = p.materialize()
		spans, err := m.matches(p.text, nil)
		if err != nil {
			return nil, err
		}
		for k, sp := range splitSpans(p.text, spans, invert, behavior) {
			out = append(out, piece{text: p.text[sp.start:sp.end], atStart: p.atStart && sp.start == 0 && k == 0})
		}
	}
	return out, nil
}

// splitSpans turns the matches of a pattern in s into the pieces Hugging
// Face's split with the given behavior keeps, dropping empty ones.
func splitSpans(s string, matches []span, invert bool, behavior string) []span {
	type part struct {
		span
		isMatch bool
	}
	parts := make([]part, 0, 2*len(matches)+1)
	prev := 0
	for _, m := range matches {
		if m.start > prev {
			parts = append(parts, part{span{prev, m.start}, invert})
		}
		parts = append(parts, part{m, !invert})
		prev = m.end
	}
	if prev < len(s) {
		parts = append(parts, part{span{prev, len(s)}, invert})
	}
	var out []span
	switch behavior {
	case "Removed":
		for _, p := range parts {
			if !p.isMatch {
				out = append(out, p.span)
			}
		}
	case "Isolated":
		for _, p := range parts {
			out = append(out, p.span)
		}
	case "MergedWithPrevious":
		prevMatch := false
		for _, p := range parts {
			if p.isMatch && !prevMatch && len(out) > 0 {
				out[len(out)-1].end = p.end
			} else {
				out = append(out, p.span)
			}
			prevMatch = p.isMatch
		}
	case "MergedWithNext":
		prevMatch := false
		for i := len(parts) - 1; i >= 0; i-- {
			p := parts[i]
			if p.isMatch && !prevMatch && len(out) > 0 {
				out[len(out)-1].start = p.start
			} else {
				out = append(out, p.span)
			}
			prevMatch = p.isMatch
		}
		for i, j := 0, len(out)-1; i < j; i, j = i+1, j-1 {
			out[i], out[j] = out[j], out[i]
		}
	case "Contiguous":
		prevMatch := false
		for _, p := range parts {
			if p.isMatch == prevMatch && len(out) > 0 {
				out[len(out)-1].end = p.end
			} else {
				out = append(out, p.span)
			}
			prevMatch = p.isMatch
		}
	}
	kept := out[:0]
	for _, sp := range out {
		if sp.end > sp.start {
			kept = append(kept, sp)
		}
	}
	return kept
}

// ---- decoders ----

// decoder rewrites the list of token strings on the way back to text.
type decoder func(toks []string) []string

func parseDecoder(raw json.RawMessage) (decoder, error) {
	if isNull(raw) {
		return nil, nil
	}
	var c component
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("decoder: %w", err)
	}
	switch c.Type {
	case "Sequence":
		steps, err := parseSequence(raw, "decoder", "decoders", parseDecoder)
		if err != nil {
			return nil, err
		}
		return func(toks []string) []string {
			for _, d := range steps {
				toks = d(toks)
			}
			return toks
		}, nil
	case "ByteLevel":
		return func(toks []string) []string {
			var b strings.Builder
			for _, t := range toks {
				s, _ := byteLevelDecode(t)
				b.WriteString(s)
			}
			return []string{b.String()}
		}, nil
	case "Replace":
		var v struct {
			Pattern pattern `json:"pattern"`
			Content string  `json:"content"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("decoder Replace: %w", err)
		}
		rep, err := replacer(v.Pattern, v.Content)
		if err != nil {
			return nil, fmt.Errorf("decoder Replace: %w", err)
		}
		return func(toks []string) []string {
			out := make([]string, len(toks))
			for i, t := range toks {
				out[i], _ = rep(t) // literal and known patterns cannot fail
			}
			return out
		}, nil
	case "ByteFallback":
		return byteFallbackDecode, nil
	case "Fuse":
		return func(toks []string) []string { return []string{strings.Join(toks, "")} }, nil
	case "Strip":
		var v struct {
			Content string `json:"content"`
			Start   int    `json:"start"`
			Stop    int    `json:"stop"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("decoder Strip: %w", err)
		}
		if utf8.RuneCountInString(v.Content) != 1 {
			return nil, fmt.Errorf("decoder Strip: content %q is not one character", v.Content)
		}
		return func(toks []string) []string {
			out := make([]string, len(toks))
			for i, t := range toks {
				for k := 0; k < v.Start && strings.HasPrefix(t, v.Content); k++ {
					t = t[len(v.Content):]
				}
				for k := 0; k < v.Stop && strings.HasSuffix(t, v.Content); k++ {
					t = t[:len(t)-len(v.Content)]
				}
				out[i] = t
			}
			return out
		}, nil
	case "Metaspace":
		var v struct {
			Replacement    string  `json:"replacement"`
			PrependScheme  *string `json:"prepend_scheme"`
			AddPrefixSpace *bool   `json:"add_prefix_space"`
		}
		if err := json.Unmarshal(raw, &v); err != nil {
			return nil, fmt.Errorf("decoder Metaspace: %w", err)
		}
		ms, err := newMetaspace(v.Replacement, v.PrependScheme, v.AddPrefixSpace)
		if err != nil {
			return nil, fmt.Errorf("decoder Metaspace: %w", err)
		}
		return func(toks []string) []string {
			out := make([]string, len(toks))
			for i, t := range toks {
				// Hugging Face drops every replacement character of the
				// first token (the prepended space) and turns the others
				// into spaces.
				if i == 0 && ms.scheme != "never" {
					out[i] = strings.ReplaceAll(t, ms.rep, "")
				} else {
					out[i] = strings.ReplaceAll(t, ms.rep, " ")
				}
			}
			return out
		}, nil
	}
	return nil, fmt.Errorf("unsupported decoder %q", c.Type)
}

// byteFallbackDecode turns runs of "<0xAB>" tokens into the bytes they
// stand for. Hugging Face replaces a run that is not valid UTF-8 with
// U+FFFD per byte; the bytes are kept here so that text decoded in pieces
// (streaming) concatenates to the right string.
func byteFallbackDecode(toks []string) []string {
	out := make([]string, 0, len(toks))
	var pending []byte
	for _, t := range toks {
		if b, ok := parseByteToken(t); ok {
			pending = append(pending, b)
			continue
		}
		if len(pending) > 0 {
			out = append(out, string(pending))
			pending = pending[:0]
		}
		out = append(out, t)
	}
	if len(pending) > 0 {
		out = append(out, string(pending))
	}
	return out
}

// parseByteToken reads a "<0xAB>" byte token.
func parseByteToken(t string) (byte, bool) {
	if len(t) != 6 || t[:3] != "<0x" || t[5] != '>' {
		return 0, false
	}
	hi, ok1 := hexDigit(t[3])
	lo, ok2 := hexDigit(t[4])
	return hi<<4 | lo, ok1 && ok2
}

func hexDigit(c byte) (byte, bool) {
	switch {
	case c >= '0' && c <= '9':
		return c - '0', true
	case c >= 'A' && c <= 'F':
		return c - 'A' + 10, true
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10, true
	}
	return 0, false
}

// parseSequence parses the stages listed under field of a "Sequence" stage
// of the given kind ("normalizer", "pre_tokenizer", "decoder"), dropping
// the null ones. Errors name the kind and the index of the failing stage.
func parseSequence[T normalizer | preTokenizer | decoder](raw json.RawMessage, kind, field string, parse func(json.RawMessage) (T, error)) ([]T, error) {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("%s Sequence: %w", kind, err)
	}
	var items []json.RawMessage
	if list, ok := fields[field]; ok && !isNull(list) {
		if err := json.Unmarshal(list, &items); err != nil {
			return nil, fmt.Errorf("%s Sequence: %q: %w", kind, field, err)
		}
	}
	var steps []T
	for i, r := range items {
		st, err := parse(r)
		if err != nil {
			return nil, fmt.Errorf("%s Sequence[%d]: %w", kind, i, err)
		}
		if st != nil {
			steps = append(steps, st)
		}
	}
	return steps, nil
}

// chain runs steps one after the other, stopping at the first error.
func chain[T any, F ~func(T) (T, error)](steps []F) F {
	return func(x T) (T, error) {
		var err error
		for _, st := range steps {
			if x, err = st(x); err != nil {
				var zero T
				return zero, err
			}
		}
		return x, nil
	}
}

func isNull(raw json.RawMessage) bool {
	s := strings.TrimSpace(string(raw))
	return s == "" || s == "null"
}
