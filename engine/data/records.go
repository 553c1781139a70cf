package data

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/gotune/gotune/engine/strictjson"
)

// ReadRecords reads the records of a data file in whichever container it
// is, calling fn with each in order:
//
//   - Parquet (a .parquet name): one record per row, its columns as JSON
//     values (lists as arrays, groups as objects), located by row;
//   - a JSON array of objects (a file whose first non-blank character is
//     "["): one record per element, located by the line it starts on;
//   - JSONL otherwise (see ReadJSONL).
//
// Hugging Face's "json" loader accepts both JSON forms under either
// extension, and so does this.
func ReadRecords(path string, fn func(Record) error) error {
	if IsParquet(path) {
		return readParquet(path, fn)
	}
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("data file: %w", err)
	}
	defer f.Close()
	br := bufio.NewReaderSize(f, 1<<16)
	if isJSONArray(br) {
		return readJSONArray(path, br, fn)
	}
	return readJSONL(path, br, fn)
}

// IsParquet reports whether path names a Parquet file (by its extension).
func IsParquet(path string) bool {
	return strings.HasSuffix(strings.ToLower(path), ".parquet")
}

// isJSONArray peeks past a byte-order mark and white space for a "[".
func isJSONArray(br *bufio.Reader) bool {
	for n := 64; ; n *= 2 {
		head, err := br.Peek(n)
		rest := bytes.TrimLeft(bytes.TrimPrefix(head, []byte("\xef\xbb\xbf")), " \t\r\n")
		if len(rest) > 0 {
			return rest[0] == '['
		}
		if err != nil || n >= br.Size() {
			return false
		}
	}
}

// readJSONArray reads a file holding one JSON array of objects. Each
// element must be an object; its location is the line it starts on.
func readJSONArray(path string, r io.Reader, fn func(Record) error) error {
	raw, err := io.ReadAll(r)
	if err != nil {
		return Errorf(Loc{File: path}, "read error: %v", err)
	}
	raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf"))
	if err := CheckUTF8(path, raw); err != nil {
		return err
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	lineAt := func(off int64) int { return 1 + bytes.Count(raw[:off], []byte("\n")) }
	if _, err := dec.Token(); err != nil { // the opening "["
		return Errorf(Loc{File: path}, "malformed JSON array: %v", err)
	}
	for i := 0; dec.More(); i++ {
		start := dec.InputOffset()
		var elem json.RawMessage
		if err := dec.Decode(&elem); err != nil {
			return jsonArrayError(path, lineAt(start), err)
		}
		// InputOffset is before the separator; the element starts at
		// its first non-blank byte after it.
		start += int64(len(raw[start:]) - len(bytes.TrimLeft(raw[start:], " \t\r\n,")))
		loc := Loc{File: path, Line: lineAt(start)}
		if k := JSONKind(elem); k != "an object" {
			return Errorf(loc, "element %d of the JSON array is %s; each example must be an object", i, k)
		}
		if err := strictjson.CheckKeys(elem); err != nil {
			return Errorf(loc, "%v", err)
		}
		var fields map[string]json.RawMessage
		if err := json.Unmarshal(elem, &fields); err != nil {
			return Errorf(loc, "malformed JSON: %v", err)
		}
		if err := fn(Record{Loc: loc, Fields: fields}); err != nil {
			return err
		}
	}
	if _, err := dec.Token(); err != nil { // the closing "]"
		return Errorf(Loc{File: path, Line: lineAt(dec.InputOffset())}, "malformed JSON array: %v", err)
	}
	if rest := bytes.TrimSpace(raw[dec.InputOffset():]); len(rest) > 0 {
		return Errorf(Loc{File: path, Line: lineAt(dec.InputOffset())}, "text after the end of the JSON array (starting %q)", firstRunes(rest, 20))
	}
	return nil
}

func jsonArrayError(path string, line int, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return Errorf(Loc{File: path, Line: line}, "malformed JSON in the array: %v", se)
	}
	return Errorf(Loc{File: path, Line: line}, "malformed JSON in the array: %v", err)
}

// jsonValue converts a value read from a non-JSON container (Parquet)
// into JSON: byte strings that are valid UTF-8 become strings (Parquet
// writers do not always mark text columns as UTF8), so formats see the
// same types as in a JSON file.
func jsonValue(v any) (json.RawMessage, error) {
	return json.Marshal(normalize(v))
}

func normalize(v any) any {
	switch x := v.(type) {
	case []byte:
		if utf8.Valid(x) {
			return string(x)
		}
		return x
	case map[string]any:
		for k, e := range x {
			x[k] = normalize(e)
		}
		return x
	case []any:
		for i, e := range x {
			x[i] = normalize(e)
		}
		return x
	}
	return v
}
