package data

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/parquet-go/parquet-go"
)

// readParquet reads a Parquet file (as the Hugging Face hub stores
// datasets: one row per example) row by row into records whose fields
// are the top-level columns as JSON values.
func readParquet(path string, fn func(Record) error) (err error) {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("data file: %w", err)
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return fmt.Errorf("data file: %w", err)
	}
	// The reader panics on some malformed files instead of returning an
	// error; a damaged file is the user's input, so it becomes one.
	defer func() {
		if p := recover(); p != nil {
			err = Errorf(Loc{File: path}, "not a readable Parquet file: %v", p)
		}
	}()
	pf, err := parquet.OpenFile(f, st.Size())
	if err != nil {
		return Errorf(Loc{File: path}, "not a readable Parquet file: %v", err)
	}
	rd := parquet.NewReader(pf)
	defer rd.Close()
	for row := 1; ; row++ {
		values := map[string]any{}
		if err := rd.Read(&values); err != nil {
			if errors.Is(err, io.EOF) {
				return nil
			}
			return Errorf(Loc{File: path, Row: row}, "reading Parquet: %v", err)
		}
		loc := Loc{File: path, Row: row}
		rec := Record{Loc: loc, Fields: make(map[string]json.RawMessage, len(values))}
		for name, v := range values {
			raw, err := jsonValue(v)
			if err != nil {
				return Errorf(loc, "column %q: %v", name, err)
			}
			rec.Fields[name] = raw
		}
		if err := fn(rec); err != nil {
			return err
		}
	}
}
