package safetensors

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/rand"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// bytesTensor is a U8 tensor of n bytes, so a tensor's size in bytes is n.
func bytesTensor(name string, n int, fill byte) Tensor {
	raw := bytes.Repeat([]byte{fill}, n)
	return Tensor{Name: name, DType: U8, Shape: []int{n}, Raw: raw}
}

// TestSplitShardsReference checks the shard assignment against the
// expectations of huggingface_hub's own tests (tests/test_serialization.py:
// test_single_shard, test_multiple_shards with sizes 6, 10, 30, 2, 2, and
// test_save_torch_state_dict_sharded with five 8-byte tensors and a
// 30-byte limit).
func TestSplitShardsReference(t *testing.T) {
	tests := []struct {
		name      string
		sizes     []int
		max       int64
		want      [][]int
		wantTotal int64
	}{
		{"single shard", []int{6, 10, 30, 2, 2}, 100, [][]int{{0, 1, 2, 3, 4}}, 50},
		// layer_3 (30 > 10) gets its own shard, appended before layer_2's.
		{"multiple shards", []int{6, 10, 30, 2, 2}, 10, [][]int{{0}, {2}, {1}, {3, 4}}, 50},
		{"torch state dict", []int{8, 8, 8, 8, 8}, 30, [][]int{{0, 1, 2}, {3, 4}}, 40},
		{"exact fit", []int{5, 5, 5}, 10, [][]int{{0, 1}, {2}}, 15},
		{"no tensors", nil, 10, nil, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var ts []Tensor
			for i, n := range tc.sizes {
				ts = append(ts, bytesTensor(string(rune('a'+i)), n, 0))
			}
			got, total := splitShards(ts, tc.max)
			if !reflect.DeepEqual(got, tc.want) || total != tc.wantTotal {
				t.Errorf("shards %v total %d, want %v total %d", got, total, tc.want, tc.wantTotal)
			}
		})
	}
}

// TestEncodeIndexMatchesPython compares the index with the output of
// Python's json.dumps(index, indent=2, sort_keys=True) + "\n" for the same
// dict (obtained with CPython 3 and pasted here), including escapes of a
// quote, a backslash, non-ASCII, a non-BMP character and DEL.
func TestEncodeIndexMatchesPython(t *testing.T) {
	got := encodeIndex(40, map[string]string{
		"b.weight":    "model-00002-of-00002.safetensors",
		"a\"\\é😀\x7f": "model-00001-of-00002.safetensors",
		"a.bias":      "model-00001-of-00002.safetensors",
	})
	want := "{\n  \"metadata\": {\n    \"total_size\": 40\n  },\n  \"weight_map\": {\n" +
		"    \"a\\\"\\\\\\u00e9\\ud83d\\ude00\\u007f\": \"model-00001-of-00002.safetensors\",\n" +
		"    \"a.bias\": \"model-00001-of-00002.safetensors\",\n" +
		"    \"b.weight\": \"model-00002-of-00002.safetensors\"\n  }\n}\n"
	if string(got) != want {
		t.Errorf("index:\n%s\nwant:\n%s", got, want)
	}
	var back struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(got, &back); err != nil || back.WeightMap["a\"\\é😀\x7f"] == "" {
		t.Errorf("index does not parse back: %v %v", err, back.WeightMap)
	}
}

// listDir returns the names in dir, sorted.
func listDir(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, e := range es {
		names = append(names, e.Name())
	}
	return names
}

// checkLoads opens dir with OpenDir and compares every tensor's bytes with
// want's, and that no other tensor is present.
func checkLoads(t *testing.T, dir string, want []Tensor) {
	t.Helper()
	set, err := OpenDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer set.Close()
	var names []string
	for _, w := range want {
		names = append(names, w.Name)
		var enc bytes.Buffer
		if err := Encode(&enc, []Tensor{w}, nil); err != nil {
			t.Fatal(err)
		}
		ref, err := Open(writeBytes(t, enc.Bytes()))
		if err != nil {
			t.Fatal(err)
		}
		wantRaw, _ := ref.Raw(w.Name)
		ref.Close()
		got, err := set.Raw(w.Name)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, wantRaw) {
			t.Errorf("%s: stored bytes differ after reload", w.Name)
		}
	}
	slices.Sort(names)
	if !slices.Equal(set.Names(), names) {
		t.Errorf("names %v, want %v", set.Names(), names)
	}
}

func writeBytes(t *testing.T, b []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.safetensors")
	if err := os.WriteFile(p, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestWriteShardedRoundTrip writes mixed-dtype tensors with several limits
// and checks file names, the index, shard sizes, metadata and a bit-exact
// reload through OpenDir.
func TestWriteShardedRoundTrip(t *testing.T) {
	rng := rand.New(rand.NewSource(7))
	tensors := []Tensor{
		randTensor(rng, "model.embed_tokens.weight", BF16, []int{8, 4}), // 64 bytes
		randTensor(rng, "model.layers.0.w", F32, []int{4, 4}),           // 64
		randTensor(rng, "model.layers.0.b", F16, []int{4}),              // 8
		randTensor(rng, "model.layers.1.w", F32, []int{4, 8}),           // 128
		randTensor(rng, "model.norm.weight", F32, []int{4}),             // 16
		randTensor(rng, "steps", I64, []int{2}),                         // 16
	}
	meta := map[string]string{"format": "pt"}
	tests := []struct {
		max        int64
		wantShards int // 0: a single model.safetensors
	}{
		{1 << 20, 0},
		{296, 0}, // exactly the total
		{295, 2},
		{130, 4},  // [64 64] [8] [128] [16 16]
		{64, 4},   // [64] [64] [128] [8 16 16]: the 128 bytes alone, before the open shard
		{1, 6},    // every tensor alone
		{100, 4},  // [64] [128] [64 8 16] [16]
		{144, 3},  // [64 64 8] [128 16] [16]
		{1000, 0}, // all fits
	}
	for _, tc := range tests {
		t.Run(fmt.Sprintf("max %d", tc.max), func(t *testing.T) {
			dir := t.TempDir()
			files, err := WriteSharded(dir, tensors, meta, tc.max)
			if err != nil {
				t.Fatal(err)
			}
			checkLoads(t, dir, tensors)
			if tc.wantShards == 0 {
				if !slices.Equal(listDir(t, dir), []string{SingleFile}) || len(files) != 1 || files[0] != filepath.Join(dir, SingleFile) {
					t.Fatalf("dir %v, files %v: want only %s", listDir(t, dir), files, SingleFile)
				}
				return
			}
			var want []string
			for i := 0; i < tc.wantShards; i++ {
				want = append(want, ShardFileName(i, tc.wantShards))
			}
			gotNames := listDir(t, dir)
			if !slices.Equal(gotNames, append(slices.Clone(want), IndexFile)) {
				t.Fatalf("dir holds %v, want %v and the index", gotNames, want)
			}
			if len(files) != tc.wantShards+1 || files[len(files)-1] != filepath.Join(dir, IndexFile) {
				t.Errorf("returned %v", files)
			}
			raw, err := os.ReadFile(filepath.Join(dir, IndexFile))
			if err != nil {
				t.Fatal(err)
			}
			var idx struct {
				Metadata  map[string]int64  `json:"metadata"`
				WeightMap map[string]string `json:"weight_map"`
			}
			if err := json.Unmarshal(raw, &idx); err != nil {
				t.Fatal(err)
			}
			if idx.Metadata["total_size"] != 296 || len(idx.Metadata) != 1 {
				t.Errorf("index metadata %v, want total_size 296", idx.Metadata)
			}
			perShard := map[string]int64{}
			for _, ts := range tensors {
				shard := idx.WeightMap[ts.Name]
				f, err := Open(filepath.Join(dir, shard))
				if err != nil {
					t.Fatalf("%s -> %q: %v", ts.Name, shard, err)
				}
				info, ok := f.Info(ts.Name)
				if !ok {
					t.Errorf("%s not in its shard %s", ts.Name, shard)
				}
				if !reflect.DeepEqual(f.Metadata(), meta) {
					t.Errorf("%s metadata %v", shard, f.Metadata())
				}
				f.Close()
				perShard[shard] += int64(info.End - info.Begin)
			}
			for shard, n := range perShard {
				if n > tc.max && len(shardTensors(idx.WeightMap, shard)) > 1 {
					t.Errorf("%s holds %d bytes in several tensors, over the %d limit", shard, n, tc.max)
				}
			}
		})
	}
}

func shardTensors(weightMap map[string]string, shard string) []string {
	var out []string
	for n, s := range weightMap {
		if s == shard {
			out = append(out, n)
		}
	}
	return out
}

// TestWriteShardedReplacesEarlierSaves saves different checkpoints into one
// directory in turn (sharded, sharded with another count, single, sharded
// again) and checks that each time OpenDir loads the latest one, stale
// checkpoint files are gone and unrelated files are kept.
func TestWriteShardedReplacesEarlierSaves(t *testing.T) {
	dir := t.TempDir()
	keep := []string{"config.json", "tokenizer.json", "adapter_model.safetensors", "model-extra.safetensors"}
	for _, name := range keep {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mk := func(fill byte) []Tensor {
		return []Tensor{bytesTensor("a", 8, fill), bytesTensor("b", 8, fill+1), bytesTensor("c", 8, fill+2)}
	}
	steps := []struct {
		max   int64
		want  []string
		noIdx bool
	}{
		{8, []string{ShardFileName(0, 3), ShardFileName(1, 3), ShardFileName(2, 3), IndexFile}, false},
		{16, []string{ShardFileName(0, 2), ShardFileName(1, 2), IndexFile}, false},
		{100, []string{SingleFile}, true},
		{8, []string{ShardFileName(0, 3), ShardFileName(1, 3), ShardFileName(2, 3), IndexFile}, false},
		{8, []string{ShardFileName(0, 3), ShardFileName(1, 3), ShardFileName(2, 3), IndexFile}, false}, // same names again
		{24, []string{SingleFile}, true},
	}
	for i, s := range steps {
		ts := mk(byte(10 * (i + 1)))
		if _, err := WriteSharded(dir, ts, nil, s.max); err != nil {
			t.Fatalf("save %d: %v", i, err)
		}
		want := append(slices.Clone(keep), s.want...)
		slices.Sort(want)
		if got := listDir(t, dir); !slices.Equal(got, want) {
			t.Errorf("save %d: dir holds %v, want %v", i, got, want)
		}
		checkLoads(t, dir, ts)
	}
}

// TestWriteShardedRejects checks that bad input is reported before the
// directory is touched.
func TestWriteShardedRejects(t *testing.T) {
	good := []Tensor{bytesTensor("a", 8, 1), bytesTensor("b", 8, 2)}
	tests := []struct {
		name    string
		tensors []Tensor
		max     int64
		want    string
	}{
		{"zero limit", good, 0, "must be positive"},
		{"negative limit", good, -5, "must be positive"},
		{"duplicate across shards", []Tensor{bytesTensor("a", 8, 1), bytesTensor("a", 8, 2)}, 8, `"a" given twice`},
		{"bad data", []Tensor{bytesTensor("a", 8, 1), {Name: "b", DType: F32, Shape: []int{3}, F32: []float32{1}}}, 8, `tensor "b"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := WriteSharded(dir, good, nil, 100); err != nil {
				t.Fatal(err)
			}
			before := listDir(t, dir)
			_, err := WriteSharded(dir, tc.tensors, nil, tc.max)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if got := listDir(t, dir); !slices.Equal(got, before) {
				t.Errorf("directory changed to %v", got)
			}
			checkLoads(t, dir, good)
		})
	}
}
