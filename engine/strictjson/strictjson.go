// Package strictjson adds what encoding/json does not check to gotune's
// JSON readers: a key that appears twice in one object. encoding/json
// keeps the last value silently, so a hand-edited config.json with two
// "vocab_size" lines, or a data line with two "output" fields, would be
// read as something its author may not have meant; every JSON reader of
// gotune calls CheckKeys on a document before decoding it.
package strictjson

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// CheckKeys returns an error naming the first key that appears twice in
// one object of the JSON document data (with its path and line), or nil.
// A document that is not valid JSON is left to the caller's decoder,
// which reports syntax errors in its own words: CheckKeys returns nil.
func CheckKeys(data []byte) error {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	w := walker{dec: dec, data: data}
	tok, err := dec.Token()
	if err != nil {
		return nil
	}
	dup, _ := w.value(tok, "")
	return dup
}

// walker walks one document; the first duplicate key ends the walk.
type walker struct {
	dec  *json.Decoder
	data []byte
}

// value walks the value that starts with tok, at path. It returns a
// duplicate-key error, or a syntax problem as ok=false (not an error of
// CheckKeys).
func (w *walker) value(tok json.Token, path string) (dup error, ok bool) {
	d, isDelim := tok.(json.Delim)
	if !isDelim {
		return nil, true
	}
	switch d {
	case '{':
		seen := map[string]bool{}
		for w.dec.More() {
			kt, err := w.dec.Token()
			if err != nil {
				return nil, false
			}
			key, _ := kt.(string)
			if seen[key] {
				return fmt.Errorf("duplicate key %q in the object at %s (line %d): JSON keys must be unique", key, show(path), w.line()), false
			}
			seen[key] = true
			vt, err := w.dec.Token()
			if err != nil {
				return nil, false
			}
			if dup, ok := w.value(vt, path+"."+key); !ok {
				return dup, false
			}
		}
	case '[':
		for i := 0; w.dec.More(); i++ {
			vt, err := w.dec.Token()
			if err != nil {
				return nil, false
			}
			if dup, ok := w.value(vt, path+"["+strconv.Itoa(i)+"]"); !ok {
				return dup, false
			}
		}
	}
	if _, err := w.dec.Token(); err != nil { // the closing delimiter
		return nil, false
	}
	return nil, true
}

// line is the 1-based line of the decoder's position.
func (w *walker) line() int {
	off := min(int(w.dec.InputOffset()), len(w.data))
	return 1 + bytes.Count(w.data[:off], []byte("\n"))
}

// show names the top-level object "the top level" rather than "".
func show(path string) string {
	if path == "" {
		return "the top level"
	}
	return strings.TrimPrefix(path, ".")
}
