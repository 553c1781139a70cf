package data

import "bytes"

// Pretokenized is the JSONL format of already tokenized data: one object
// a line with "input_ids" (a non-empty array of token ids) and optional
// "labels" (the same length; -100 = not scored; absent or null = the
// input_ids, i.e. every token is trained on). Any other field is an
// error, because it usually means a file of another format.
type Pretokenized struct{}

// Name returns "pretokenized".
func (Pretokenized) Name() string { return "pretokenized" }

// Detect reports whether the record has "input_ids".
func (Pretokenized) Detect(r Record) bool {
	_, ok := r.Fields["input_ids"]
	return ok
}

var pretokenizedFields = []string{"input_ids", "labels"}

// Decode checks the record's fields and types and returns its example.
// Vocabulary checks are left to Example.Validate.
func (Pretokenized) Decode(r Record) ([]Example, error) {
	if err := UnknownFields(r, pretokenizedFields, `a pre-tokenized line has "input_ids" and optional "labels"`); err != nil {
		return nil, err
	}
	rawIDs, ok := r.Fields["input_ids"]
	if !ok {
		return nil, Errorf(r.Loc, `missing "input_ids"`)
	}
	ids, err := IntArray(r.Loc, "input_ids", rawIDs)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		return nil, Errorf(r.Loc, `"input_ids" is empty`)
	}
	labels := ids
	if raw, ok := r.Fields["labels"]; ok && !bytes.Equal(bytes.TrimSpace(raw), []byte("null")) {
		if labels, err = IntArray(r.Loc, "labels", raw); err != nil {
			return nil, err
		}
	}
	return []Example{{InputIDs: ids, Labels: labels, Loc: r.Loc}}, nil
}
