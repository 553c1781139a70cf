package data

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

func writeFile(t *testing.T, content string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "d.jsonl")
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestLoadErrors(t *testing.T) {
	tests := []struct {
		name    string
		content string
		vocab   int
		line    int    // expected line in the error (0 = whole file)
		want    string // substring of the message
	}{
		{"empty file", "", 0, 0, "no examples"},
		{"malformed json", `{"input_ids":[1,2]}` + "\n" + `{"input_ids":[1,2}`, 0, 2, "malformed JSON"},
		{"not an object", `[1,2,3]`, 0, 1, "element 0 of the JSON array is a number; each example must be an object"},
		{"trailing garbage", `{"input_ids":[1,2]} x`, 0, 1, "malformed JSON"},
		{"missing input_ids", `{"labels":[1,2]}`, 0, 1, `missing "input_ids"`},
		{"input_ids string", `{"input_ids":"1 2 3"}`, 0, 1, `"input_ids" must be an array of integers, got a string`},
		{"input_ids null", `{"input_ids":null}`, 0, 1, "got null"},
		{"element string", `{"input_ids":[1,"2",3]}`, 0, 1, "input_ids[1] is a string, not an integer"},
		{"element float", `{"input_ids":[1,2.5,3]}`, 0, 1, "input_ids[1] is 2.5, not an integer"},
		{"element float integral", `{"input_ids":[1,2.0]}`, 0, 1, "input_ids[1] is 2.0, not an integer"},
		{"element exponent", `{"input_ids":[1e2,2]}`, 0, 1, "input_ids[0] is 1e2, not an integer"},
		{"element nested", `{"input_ids":[[1],2]}`, 0, 1, "input_ids[0] is an array"},
		{"element bool", `{"input_ids":[1,true]}`, 0, 1, "input_ids[1] is a boolean"},
		{"element too big", `{"input_ids":[1,99999999999]}`, 0, 1, "outside the 32-bit integer range"},
		{"empty input_ids", `{"input_ids":[]}`, 0, 1, `"input_ids" is empty`},
		{"length mismatch", `{"input_ids":[1,2,3],"labels":[1,2]}`, 0, 1, `"labels" has 2 elements but "input_ids" has 3`},
		{"labels wrong type", `{"input_ids":[1,2],"labels":{"a":1}}`, 0, 1, `"labels" must be an array of integers, got an object`},
		{"unknown field", `{"input_ids":[1,2],"text":"hi"}`, 0, 1, `unknown field "text"`},
		{"unknown fields sorted", `{"input_ids":[1,2],"zz":1,"attention_mask":[1,1]}`, 0, 1, `unknown fields "attention_mask", "zz"`},
		{"blank line in the middle", `{"input_ids":[1,2]}` + "\n\n" + `{"input_ids":[1,2]}`, 0, 2, "empty line"},
		{"whitespace line", `{"input_ids":[1,2]}` + "\n   \n", 0, 2, "empty line"},
		{"two trailing newlines", `{"input_ids":[1,2]}` + "\n\n", 0, 2, "empty line"},
		{"id out of vocab", `{"input_ids":[1,2]}` + "\n" + `{"input_ids":[1,32]}`, 32, 2, "input_ids[1] = 32 is outside the model's vocabulary [0, 32)"},
		{"negative id", `{"input_ids":[-1,2]}`, 32, 1, "input_ids[0] = -1 is outside"},
		{"label out of vocab", `{"input_ids":[1,2],"labels":[-100,40]}`, 32, 1, "labels[1] = 40 is outside"},
		{"label negative not -100", `{"input_ids":[1,2],"labels":[-100,-1]}`, 32, 1, "labels[1] = -1: a label must be -100"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.content)
			_, err := Load(p, LoadOptions{VocabSize: tc.vocab})
			if err == nil {
				t.Fatal("want an error, got none")
			}
			var de *Error
			if !errors.As(err, &de) {
				t.Fatalf("error %q is not a *data.Error", err)
			}
			if de.File != p || de.Line != tc.line {
				t.Errorf("error at %s:%d, want %s:%d (%v)", de.File, de.Line, p, tc.line, err)
			}
			if !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %q does not contain %q", err, tc.want)
			}
			if tc.line > 0 && !strings.HasPrefix(err.Error(), p+":"+strconv.Itoa(tc.line)+": ") {
				t.Errorf("error %q does not start with file:line", err)
			}
		})
	}
}

func TestLoadMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "nope.jsonl")
	_, err := Load(p, LoadOptions{})
	if err == nil || !strings.Contains(err.Error(), p) || !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("got %v, want a not-exist error naming %s", err, p)
	}
}

func TestLoadAccepts(t *testing.T) {
	tests := []struct {
		name    string
		content string
		want    []Example // Loc.File filled in by the test
	}{
		{"labels default to input_ids", `{"input_ids":[5,6,7]}`,
			[]Example{{InputIDs: []int32{5, 6, 7}, Labels: []int32{5, 6, 7}, Loc: Loc{Line: 1}}}},
		{"explicit labels", `{"input_ids":[5,6,7],"labels":[-100,6,7]}`,
			[]Example{{InputIDs: []int32{5, 6, 7}, Labels: []int32{-100, 6, 7}, Loc: Loc{Line: 1}}}},
		{"null labels", `{"input_ids":[5,6],"labels":null}`,
			[]Example{{InputIDs: []int32{5, 6}, Labels: []int32{5, 6}, Loc: Loc{Line: 1}}}},
		{"crlf, bom, spaces, no final newline", "\xef\xbb\xbf{ \"input_ids\" : [ 1 , 2 ] }\r\n{\"input_ids\":[3,4]}",
			[]Example{
				{InputIDs: []int32{1, 2}, Labels: []int32{1, 2}, Loc: Loc{Line: 1}},
				{InputIDs: []int32{3, 4}, Labels: []int32{3, 4}, Loc: Loc{Line: 2}},
			}},
		{"final newline", "{\"input_ids\":[0,31]}\n",
			[]Example{{InputIDs: []int32{0, 31}, Labels: []int32{0, 31}, Loc: Loc{Line: 1}}}},
		{"negative zero", `{"input_ids":[-0,1]}`,
			[]Example{{InputIDs: []int32{0, 1}, Labels: []int32{0, 1}, Loc: Loc{Line: 1}}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			p := writeFile(t, tc.content)
			ds, err := Load(p, LoadOptions{VocabSize: 32})
			if err != nil {
				t.Fatal(err)
			}
			for i := range tc.want {
				tc.want[i].Loc.File = p
			}
			if !reflect.DeepEqual(ds.Examples, tc.want) {
				t.Errorf("got %+v\nwant %+v", ds.Examples, tc.want)
			}
			if ds.Format != "pretokenized" || ds.Name != p {
				t.Errorf("dataset name/format = %q/%q", ds.Name, ds.Format)
			}
		})
	}
}

func TestLongLine(t *testing.T) {
	// Longer than bufio's default 64 KiB buffer: lines are not limited.
	var sb strings.Builder
	sb.WriteString(`{"input_ids":[`)
	n := 40000
	for i := 0; i < n; i++ {
		if i > 0 {
			sb.WriteString(",")
		}
		sb.WriteString("7")
	}
	sb.WriteString("]}\n")
	p := writeFile(t, sb.String())
	ds, err := Load(p, LoadOptions{VocabSize: 8})
	if err != nil {
		t.Fatal(err)
	}
	if got := len(ds.Examples[0].InputIDs); got != n {
		t.Fatalf("got %d ids, want %d", got, n)
	}
}

// mkDataset builds examples whose ids encode (example, position) so
// batches can be checked by reading the ids back.
func mkDataset(lens ...int) *Dataset {
	ds := &Dataset{Name: "mem"}
	for i, n := range lens {
		e := Example{Loc: Loc{File: "mem", Line: i + 1}}
		for t := 0; t < n; t++ {
			e.InputIDs = append(e.InputIDs, int32(100*i+t))
		}
		e.Labels = e.InputIDs
		ds.Examples = append(ds.Examples, e)
	}
	return ds
}

func TestBatchLayout(t *testing.T) {
	ds := mkDataset(3, 5)
	ds.Examples[1].Labels = []int32{100, -100, 102, 103, 104}
	l, err := NewLoader(ds, LoaderConfig{BatchSize: 2, SeqLen: 4, PadID: 9})
	if err != nil {
		t.Fatal(err)
	}
	b := l.Next()
	if b.B != 2 || b.T != 4 {
		t.Fatalf("B, T = %d, %d, want 2, 4", b.B, b.T)
	}
	wantIn := []int32{0, 1, 2, 9, 100, 101, 102, 103}
	// Row 0: labels 0 1 2 → targets 1 2 -100 (pad) -100.
	// Row 1 truncated to 4: labels 100 -100 102 103 → targets -100 102 103 -100.
	wantTg := []int32{1, 2, -100, -100, -100, 102, 103, -100}
	if !slices.Equal(b.InputIDs, wantIn) || !slices.Equal(b.Targets, wantTg) {
		t.Errorf("inputs %v targets %v\nwant   %v targets %v", b.InputIDs, b.Targets, wantIn, wantTg)
	}
	if b.Counted != 4 {
		t.Errorf("Counted = %d, want 4", b.Counted)
	}
	if s := l.Stats(); s.Truncated != 1 || s.Sequences != 2 || s.TruncationMessage() != "truncated 1 of 2 sequences to seq-len 4" {
		t.Errorf("stats %+v %q", s, s.TruncationMessage())
	}
}

func TestBatchPadding(t *testing.T) {
	tests := []struct {
		name     string
		fixed    bool
		lens     []int
		seqLen   int
		wantT    []int
		wantRows [][]int
	}{
		{"longest in batch", false, []int{2, 3, 2, 2, 6}, 8, []int{3, 2, 6}, [][]int{{0, 1}, {2, 3}, {4}}},
		{"fixed", true, []int{2, 3, 2}, 8, []int{8, 8}, [][]int{{0, 1}, {2}}},
		{"truncated longest", false, []int{9, 3}, 4, []int{4}, [][]int{{0, 1}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			l, err := NewLoader(mkDataset(tc.lens...), LoaderConfig{BatchSize: 2, SeqLen: tc.seqLen, PadToSeqLen: tc.fixed})
			if err != nil {
				t.Fatal(err)
			}
			if l.BatchesPerEpoch() != len(tc.wantT) {
				t.Fatalf("BatchesPerEpoch = %d, want %d", l.BatchesPerEpoch(), len(tc.wantT))
			}
			for i := range tc.wantT {
				b := l.Next()
				if b.T != tc.wantT[i] || !slices.Equal(b.Rows, tc.wantRows[i]) || b.Index != i || b.Epoch != 0 {
					t.Errorf("batch %d: T=%d rows=%v index=%d epoch=%d, want T=%d rows=%v", i, b.T, b.Rows, b.Index, b.Epoch, tc.wantT[i], tc.wantRows[i])
				}
				if len(b.InputIDs) != b.B*b.T || len(b.Targets) != b.B*b.T {
					t.Errorf("batch %d: array sizes %d, %d for %dx%d", i, len(b.InputIDs), len(b.Targets), b.B, b.T)
				}
			}
			if b := l.Next(); b.Epoch != 1 || b.Index != 0 {
				t.Errorf("after an epoch: epoch %d index %d, want 1 0", b.Epoch, b.Index)
			}
		})
	}
}

func TestSkipsExamplesWithoutTargets(t *testing.T) {
	ds := mkDataset(1, 3, 2)
	ds.Examples[2].Labels = []int32{5, -100} // only the first label, which is never a target
	l, err := NewLoader(ds, LoaderConfig{BatchSize: 4, SeqLen: 4})
	if err != nil {
		t.Fatal(err)
	}
	if l.Stats().Skipped != 2 || l.Examples() != 1 {
		t.Fatalf("skipped %d, usable %d; want 2, 1", l.Stats().Skipped, l.Examples())
	}
	if b := l.Next(); !slices.Equal(b.Rows, []int{1}) {
		t.Errorf("rows %v, want [1]", b.Rows)
	}
	_, err = NewLoader(mkDataset(1, 1), LoaderConfig{BatchSize: 4, SeqLen: 4})
	if err == nil || !strings.Contains(err.Error(), "no example has a token to train on") {
		t.Errorf("all-skipped dataset: got %v", err)
	}
}

func TestLoaderConfigErrors(t *testing.T) {
	for _, cfg := range []LoaderConfig{{BatchSize: 0, SeqLen: 4}, {BatchSize: 1, SeqLen: 1}} {
		if _, err := NewLoader(mkDataset(3), cfg); err == nil {
			t.Errorf("%+v: want an error", cfg)
		}
	}
}

func TestShuffle(t *testing.T) {
	const n = 50
	lens := make([]int, n)
	for i := range lens {
		lens[i] = 2
	}
	rowsOfEpoch := func(seed uint64, shuffle bool, epoch int) []int {
		l, err := NewLoader(mkDataset(lens...), LoaderConfig{BatchSize: 8, SeqLen: 4, Shuffle: shuffle, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		var rows []int
		for i := 0; i < l.BatchesPerEpoch(); i++ {
			rows = append(rows, l.Batch(epoch, i).Rows...)
		}
		return rows
	}
	identity := make([]int, n)
	for i := range identity {
		identity[i] = i
	}
	if got := rowsOfEpoch(1, false, 3); !slices.Equal(got, identity) {
		t.Errorf("shuffle=false: %v, want file order", got)
	}
	a0, a0again, a1, b0 := rowsOfEpoch(1, true, 0), rowsOfEpoch(1, true, 0), rowsOfEpoch(1, true, 1), rowsOfEpoch(2, true, 0)
	for name, p := range map[string][]int{"seed 1 epoch 0": a0, "seed 1 epoch 1": a1, "seed 2 epoch 0": b0} {
		s := slices.Clone(p)
		slices.Sort(s)
		if !slices.Equal(s, identity) {
			t.Errorf("%s is not a permutation: %v", name, p)
		}
		if slices.Equal(p, identity) {
			t.Errorf("%s is not shuffled", name)
		}
	}
	if !slices.Equal(a0, a0again) {
		t.Error("same seed and epoch gave different orders")
	}
	if slices.Equal(a0, a1) || slices.Equal(a0, b0) {
		t.Error("different epochs or seeds gave the same order")
	}
}

func TestPermuteUniform(t *testing.T) {
	// Each of the 6 orders of 3 elements should appear about 1/6 of the
	// time; a biased shuffle (e.g. swapping with any index) fails this.
	counts := map[[3]int]int{}
	const trials = 60000
	for s := 0; s < trials; s++ {
		p := []int{0, 1, 2}
		Permute(p, uint64(s), 7)
		counts[[3]int{p[0], p[1], p[2]}]++
	}
	if len(counts) != 6 {
		t.Fatalf("saw %d orders, want 6", len(counts))
	}
	for k, c := range counts {
		if c < trials/6-500 || c > trials/6+500 { // ~5.5 standard deviations
			t.Errorf("order %v seen %d times of %d", k, c, trials)
		}
	}
}

func TestDetectFormat(t *testing.T) {
	formats := []Format{Pretokenized{}}
	tests := []struct {
		content string
		want    string // format name, or a substring of the error
		ok      bool
	}{
		{`{"input_ids":[1,2]}` + "\n" + `garbage`, "pretokenized", true},
		{`{"text":"hello"}`, `cannot tell the data format from the fields "text" (known formats: pretokenized)`, false},
		{"", "no examples", false},
		{`{"input_ids":`, "malformed JSON", false},
	}
	for _, tc := range tests {
		p := writeFile(t, tc.content)
		f, err := DetectFormat(p, formats)
		switch {
		case tc.ok && (err != nil || f.Name() != tc.want):
			t.Errorf("%q: got %v, %v; want %s", tc.content, f, err, tc.want)
		case !tc.ok && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: got %v, want an error containing %q", tc.content, err, tc.want)
		}
	}
}
