package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gotune/gotune/engine/strictjson"
	"io"
	"os"
	"sort"
	"strings"
	"unicode/utf8"
)

// Record is one JSONL line decoded into its top-level fields, values
// still raw so each Format decides their types.
type Record struct {
	Loc    Loc
	Fields map[string]json.RawMessage
}

// Format decodes records of one kind into examples. The pre-tokenized
// format lives here; formats that tokenize text (instruction, chat,
// plain text) implement the same interface elsewhere.
type Format interface {
	// Name is the format's name on the command line ("pretokenized", ...).
	Name() string
	// Detect reports whether a record looks like this format (used to
	// pick a format from a file's first record).
	Detect(r Record) bool
	// Decode turns one record into zero or more examples, each carrying
	// r.Loc. Errors should be *Error values at r.Loc.
	Decode(r Record) ([]Example, error)
}

// ReadJSONL reads path line by line and calls fn with each record.
//
// Rules, chosen so mistakes surface instead of silently changing the data:
// every line must hold exactly one JSON object; blank (whitespace-only)
// lines are errors, except that the newline ending the last line does not
// start another line; "\r\n" line endings and a UTF-8 byte-order mark on
// the first line are accepted. Lines may be arbitrarily long.
func ReadJSONL(path string, fn func(Record) error) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("data file: %w", err)
	}
	defer f.Close()
	return readJSONL(path, f, fn)
}

func readJSONL(path string, r io.Reader, fn func(Record) error) error {
	br := bufio.NewReaderSize(r, 1<<16)
	for lineNo := 1; ; lineNo++ {
		line, err := br.ReadBytes('\n')
		if err != nil && err != io.EOF {
			return Errorf(Loc{File: path, Line: lineNo}, "read error: %v", err)
		}
		if err == io.EOF && len(line) == 0 {
			return nil // the previous line's newline ended the file
		}
		line = bytes.TrimSuffix(line, []byte("\n"))
		line = bytes.TrimSuffix(line, []byte("\r"))
		if lineNo == 1 {
			line = bytes.TrimPrefix(line, []byte("\xef\xbb\xbf"))
		}
		loc := Loc{File: path, Line: lineNo}
		rec, perr := parseRecord(loc, line)
		if perr != nil {
			return perr
		}
		if ferr := fn(rec); ferr != nil {
			return ferr
		}
		if err == io.EOF {
			return nil
		}
	}
}

// parseRecord decodes one line into a Record with a message naming the
// problem and, for syntax errors, the column.
func parseRecord(loc Loc, line []byte) (Record, error) {
	trimmed := bytes.TrimSpace(line)
	if len(trimmed) == 0 {
		return Record{}, Errorf(loc, "empty line (JSONL needs one JSON object on every line; remove blank lines)")
	}
	if trimmed[0] != '{' {
		return Record{}, Errorf(loc, "line is not a JSON object (it starts with %q)", firstRunes(trimmed, 20))
	}
	if !utf8.Valid(line) {
		return Record{}, Errorf(loc, "invalid UTF-8 at byte %d of the line (the file must be UTF-8 text; gotune does not guess another encoding)", invalidUTF8At(line))
	}
	if err := strictjson.CheckKeys(line); err != nil {
		return Record{}, Errorf(loc, "%v", err)
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(line, &fields); err != nil {
		var se *json.SyntaxError
		if errors.As(err, &se) {
			return Record{}, Errorf(loc, "malformed JSON at column %d: %v", se.Offset, se)
		}
		return Record{}, Errorf(loc, "malformed JSON: %v", err)
	}
	return Record{Loc: loc, Fields: fields}, nil
}

// CheckUTF8 returns an error naming the line and byte of the first
// invalid UTF-8 sequence in the text file path's contents raw, or nil.
// Reading such bytes as text would silently turn them into U+FFFD.
func CheckUTF8(path string, raw []byte) error {
	if utf8.Valid(raw) {
		return nil
	}
	at := invalidUTF8At(raw) - 1
	line := 1 + bytes.Count(raw[:at], []byte("\n"))
	col := at - bytes.LastIndexByte(raw[:at], '\n')
	return Errorf(Loc{File: path, Line: line}, "invalid UTF-8 at byte %d of the line (the file must be UTF-8 text; gotune does not guess another encoding)", col)
}

// invalidUTF8At returns the 1-based byte position of the first invalid
// UTF-8 sequence in b.
func invalidUTF8At(b []byte) int {
	for i := 0; i < len(b); {
		r, size := utf8.DecodeRune(b[i:])
		if r == utf8.RuneError && size <= 1 {
			return i + 1
		}
		i += size
	}
	return len(b) + 1
}

func firstRunes(b []byte, n int) string {
	s := []rune(string(b))
	if len(s) > n {
		return string(s[:n]) + "…"
	}
	return string(s)
}

// errStop ends ReadJSONL early without an error.
var errStop = errors.New("stop")

// DetectFormat returns the first of formats whose Detect accepts the
// file's first record, or an error naming the file's first line and the
// formats tried.
func DetectFormat(path string, formats []Format) (Format, error) {
	var found Format
	var first *Record
	err := ReadRecords(path, func(r Record) error {
		first = &r
		for _, f := range formats {
			if f.Detect(r) {
				found = f
				break
			}
		}
		return errStop
	})
	if err != nil && !errors.Is(err, errStop) {
		return nil, err
	}
	if first == nil {
		return nil, Errorf(Loc{File: path}, "no examples (the file is empty)")
	}
	if found == nil {
		names := make([]string, len(formats))
		for i, f := range formats {
			names[i] = f.Name()
		}
		keys := make([]string, 0, len(first.Fields))
		for k := range first.Fields {
			keys = append(keys, fmt.Sprintf("%q", k))
		}
		sort.Strings(keys)
		return nil, Errorf(first.Loc, "cannot tell the data format from the fields %s (known formats: %s)", strings.Join(keys, ", "), strings.Join(names, ", "))
	}
	return found, nil
}

// LoadOptions configures Load.
type LoadOptions struct {
	// Format decodes the records; nil means Pretokenized.
	Format Format
	// VocabSize is the model's vocabulary size; ids at or above it are
	// errors. <= 0 skips the upper bound check.
	VocabSize int
}

// Load reads a JSONL file into a validated Dataset. It fails on the first
// bad line with an *Error naming file:line, and on a file with no lines.
func Load(path string, opts LoadOptions) (*Dataset, error) {
	format := opts.Format
	if format == nil {
		format = Pretokenized{}
	}
	ds := &Dataset{Name: path, Format: format.Name()}
	err := ReadRecords(path, func(r Record) error {
		exs, err := format.Decode(r)
		if err != nil {
			return err
		}
		for i := range exs {
			if exs[i].Loc.File == "" {
				exs[i].Loc = r.Loc
			}
			if err := exs[i].Validate(opts.VocabSize); err != nil {
				return err
			}
		}
		ds.Examples = append(ds.Examples, exs...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	if len(ds.Examples) == 0 {
		return nil, Errorf(Loc{File: path}, "no examples (the file is empty)")
	}
	return ds, nil
}

// UnknownFields returns an error naming the fields of r not in allowed
// (sorted, so the message is stable), or nil. what describes the format
// for the message, e.g. `a pre-tokenized line has "input_ids" and optional "labels"`.
func UnknownFields(r Record, allowed []string, what string) error {
	var unknown []string
	for k := range r.Fields {
		ok := false
		for _, a := range allowed {
			if k == a {
				ok = true
				break
			}
		}
		if !ok {
			unknown = append(unknown, fmt.Sprintf("%q", k))
		}
	}
	if len(unknown) == 0 {
		return nil
	}
	sort.Strings(unknown)
	noun := "field"
	if len(unknown) > 1 {
		noun = "fields"
	}
	return Errorf(r.Loc, "unknown %s %s (%s)", noun, strings.Join(unknown, ", "), what)
}

// JSONKind names the JSON type of a raw value for error messages ("a
// string", "an array", ...); format decoders share it so their messages agree.
func JSONKind(raw json.RawMessage) string {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 {
		return "nothing"
	}
	switch c := raw[0]; {
	case c == '"':
		return "a string"
	case c == '{':
		return "an object"
	case c == '[':
		return "an array"
	case c == 't' || c == 'f':
		return "a boolean"
	case c == 'n':
		return "null"
	default:
		return "a number"
	}
}

// IntArray decodes a field that must be a JSON array of integers fitting
// int32, naming the field, the bad element and its type on error.
func IntArray(loc Loc, field string, raw json.RawMessage) ([]int32, error) {
	if k := JSONKind(raw); k != "an array" {
		return nil, Errorf(loc, "%q must be an array of integers, got %s", field, k)
	}
	var elems []json.RawMessage
	if err := json.Unmarshal(raw, &elems); err != nil {
		return nil, Errorf(loc, "%q: %v", field, err)
	}
	out := make([]int32, len(elems))
	for i, e := range elems {
		v, err := parseInt32(e)
		if err != nil {
			return nil, Errorf(loc, "%s[%d] %v", field, i, err)
		}
		out[i] = v
	}
	return out, nil
}

// parseInt32 parses one JSON value that must be an integer in int32 range.
// JSON numbers like 1.0 or 1e3 are rejected: token ids are written as
// integers by every tokenizer, and a float usually means the wrong column.
func parseInt32(raw json.RawMessage) (int32, error) {
	if k := JSONKind(raw); k != "a number" {
		return 0, fmt.Errorf("is %s, not an integer", k)
	}
	s := string(bytes.TrimSpace(raw))
	neg := false
	digits := s
	if strings.HasPrefix(digits, "-") {
		neg = true
		digits = digits[1:]
	}
	if digits == "" || strings.ContainsAny(digits, ".eE") {
		return 0, fmt.Errorf("is %s, not an integer", s)
	}
	var v int64
	for _, c := range digits {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("is %s, not an integer", s)
		}
		v = v*10 + int64(c-'0')
		if v > 1<<31 {
			return 0, fmt.Errorf("is %s, outside the 32-bit integer range", s)
		}
	}
	if neg {
		v = -v
	}
	if v > 1<<31-1 || v < -(1<<31) {
		return 0, fmt.Errorf("is %s, outside the 32-bit integer range", s)
	}
	return int32(v), nil
}
