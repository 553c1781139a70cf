package data

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzParquet feeds arbitrary bytes, seeded with the Parquet fixtures and
// damaged copies of them, to the Parquet record reader: a broken file
// must be an error, never a panic or a hang.
func FuzzParquet(f *testing.F) {
	for _, p := range []string{"../../testdata/parquet/alpaca.parquet", "../../testdata/parquet/sharegpt.parquet"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-9])
		mid := append([]byte(nil), b...)
		mid[len(mid)/2] ^= 0xff
		f.Add(mid)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "d.parquet")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		_ = ReadRecords(path, func(Record) error { return nil })
	})
}

// FuzzLoad feeds arbitrary bytes to the pre-tokenized JSONL reader and
// batches what it accepts. Seeds: the tiny and golden data files and
// broken lines (invalid UTF-8, duplicate keys, huge ids, bad labels).
func FuzzLoad(f *testing.F) {
	for _, p := range []string{"../../testdata/tiny/data.jsonl", "../../testdata/golden/llama-gqa/data.jsonl"} {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])
	}
	for _, s := range []string{
		`{"input_ids":[1,2,3],"input_ids":[4]}`,
		"{\"input_ids\":[1,2,\xff]}",
		`{"input_ids":[1,2,1000000000000]}`,
		`{"input_ids":[1,2,3],"labels":[-100,-100]}`,
		"\xef\xbb\xbf{\"input_ids\":[1,2]}\r\n\n",
		"[\n {\"input_ids\":[1,2]},\n {\"input_ids\":[3,4],\"labels\":[-100,4]}\n]",
		`[{"input_ids":[1]}, 3]`,
		`[{"input_ids":[1,2]}] trailing`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "d.jsonl")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		ds, err := Load(path, LoadOptions{VocabSize: 300})
		if err != nil {
			return
		}
		l, err := NewLoader(ds, LoaderConfig{BatchSize: 2, SeqLen: 16, Shuffle: true, Seed: 1})
		if err != nil {
			return
		}
		for i := 0; i < l.BatchesPerEpoch(); i++ {
			l.Next()
		}
	})
}
