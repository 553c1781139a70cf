// Package data turns training files into batches of token ids.
//
// The pipeline has three stages, each reusable on its own:
//
//  1. Reading. ReadRecords splits a file into Records (one JSON object a
//     line of JSONL, each element of a JSON array, each row of a Parquet
//     file, with its location), and a Format decodes each Record
//     into Examples: token ids plus per-token labels. Pretokenized is the
//     format of this package ("input_ids" and optional "labels"); formats
//     that need a tokenizer (instruction, chat, plain text) implement the
//     same interface and produce the same Examples, so everything after
//     reading is shared.
//  2. Validation. Every Example is checked against the model's vocabulary
//     (Example.Validate), whatever format produced it.
//  3. Batching. A Loader truncates examples to the sequence length, pads
//     them on the right with ignored labels, shifts labels into next-token
//     targets and groups them into batches, in file order or in a seeded
//     permutation per epoch. With packing it first lays several examples
//     end to end in each sequence, marking each token's example and
//     position (see Pack).
//
// Errors about the data are *Error values naming the file and line.
package data

import (
	"fmt"
)

// IgnoreIndex is the label of a position that is not scored (Hugging
// Face's -100): prompt tokens, padding, and the last position after the
// shift into next-token targets.
const IgnoreIndex = -100

// Loc names where an example came from, for error messages.
type Loc struct {
	// File is the path as the user gave it.
	File string
	// Line is 1-based; 0 means the whole file (or a row of a file
	// without lines).
	Line int
	// Row is the 1-based row of a file without lines (Parquet); 0 when
	// Line locates the record.
	Row int
}

// String formats the location as "file:line", "file row N" (Parquet) or
// just "file".
func (l Loc) String() string {
	switch {
	case l.Line > 0:
		return fmt.Sprintf("%s:%d", l.File, l.Line)
	case l.Row > 0:
		return fmt.Sprintf("%s row %d", l.File, l.Row)
	}
	return l.File
}

// Error is a problem with the training data at a known location.
type Error struct {
	Loc
	// Msg says what is wrong (without the location).
	Msg string
}

// Error formats the error as "file:line: message".
func (e *Error) Error() string { return e.Loc.String() + ": " + e.Msg }

// Errorf returns an *Error at loc with a formatted message. Formats use
// it so every data error reads the same way.
func Errorf(loc Loc, format string, args ...any) *Error {
	return &Error{Loc: loc, Msg: fmt.Sprintf(format, args...)}
}

// Example is one training sequence before truncation and padding.
//
// Labels are aligned with InputIDs as in Hugging Face (the model, not the
// data, shifts them into next-token targets); IgnoreIndex marks positions
// that do not count in the loss.
type Example struct {
	InputIDs []int32
	Labels   []int32
	// Loc is where the example was read, for messages.
	Loc Loc
}

// Validate checks the example against a vocabulary of vocabSize tokens
// (vocabSize <= 0 checks only that ids are not negative): input ids in
// [0, vocabSize), labels the same length and each either IgnoreIndex or a
// valid id. Formats call it after decoding, so every format gets the same
// checks and messages.
func (e *Example) Validate(vocabSize int) error {
	if len(e.InputIDs) == 0 {
		return Errorf(e.Loc, `"input_ids" is empty`)
	}
	if len(e.Labels) != len(e.InputIDs) {
		return Errorf(e.Loc, `"labels" has %d elements but "input_ids" has %d; they must be the same length`, len(e.Labels), len(e.InputIDs))
	}
	for i, id := range e.InputIDs {
		if id < 0 || (vocabSize > 0 && int(id) >= vocabSize) {
			return Errorf(e.Loc, "input_ids[%d] = %d is outside the model's vocabulary [0, %s)", i, id, vocabString(vocabSize))
		}
	}
	for i, id := range e.Labels {
		if id == IgnoreIndex {
			continue
		}
		if id < 0 {
			return Errorf(e.Loc, "labels[%d] = %d: a label must be %d (ignored) or a token id", i, id, IgnoreIndex)
		}
		if vocabSize > 0 && int(id) >= vocabSize {
			return Errorf(e.Loc, "labels[%d] = %d is outside the model's vocabulary [0, %d)", i, id, vocabSize)
		}
	}
	return nil
}

func vocabString(v int) string {
	if v <= 0 {
		return "∞"
	}
	return fmt.Sprint(v)
}

// Targets returns how many positions of the first n tokens would be
// scored after the shift into next-token targets: labels[1:n] that are
// not ignored.
func (e *Example) Targets(n int) int {
	if n > len(e.Labels) {
		n = len(e.Labels)
	}
	c := 0
	for t := 1; t < n; t++ {
		if e.Labels[t] != IgnoreIndex {
			c++
		}
	}
	return c
}

// Dataset is an ordered, validated collection of examples from one source.
type Dataset struct {
	// Name is the source (a file path), used in messages.
	Name string
	// Format is the name of the Format that decoded it.
	Format   string
	Examples []Example
}

// Len returns the number of examples.
func (d *Dataset) Len() int { return len(d.Examples) }

// Tokens returns the total number of input tokens before truncation.
func (d *Dataset) Tokens() int {
	n := 0
	for i := range d.Examples {
		n += len(d.Examples[i].InputIDs)
	}
	return n
}
