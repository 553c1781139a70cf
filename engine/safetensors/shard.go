package safetensors

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"unicode/utf16"

	"github.com/gotune/gotune/engine/fsutil"
)

// DefaultMaxShardBytes is transformers' default max_shard_size for
// save_pretrained, "5GB" (decimal units, as huggingface_hub parses sizes).
const DefaultMaxShardBytes int64 = 5_000_000_000

// shardPattern matches the shard files WriteSharded writes (and
// transformers names): model-00001-of-00003.safetensors.
var shardPattern = regexp.MustCompile(`^model-[0-9]{5}-of-[0-9]{5}\.safetensors$`)

// ShardFileName returns the name of shard i (0-based) of n, as transformers
// names it: model-00001-of-00003.safetensors for i = 0, n = 3.
func ShardFileName(i, n int) string {
	return fmt.Sprintf("model-%05d-of-%05d.safetensors", i+1, n)
}

// WriteSharded writes a checkpoint into the existing directory dir the way
// transformers' save_pretrained does and returns the paths it wrote.
//
// Tensors are assigned to shards in the order given (a model's state-dict
// order) with huggingface_hub's rule: a tensor whose data exceeds
// maxShardBytes gets a shard of its own; otherwise a new shard starts when
// the tensor would push the current one past maxShardBytes. Sizes count
// tensor data only, not headers. When everything fits in one shard the
// result is a single model.safetensors; otherwise the shards are
// model-0000i-of-0000N.safetensors, each holding metadata, plus
// model.safetensors.index.json ({"metadata": {"total_size": bytes},
// "weight_map": {tensor: shard}}, formatted like transformers' json.dumps
// with indent=2 and sorted keys).
//
// Every file is written atomically, and files of an earlier checkpoint in
// dir that are not part of the new one (model.safetensors, its index, other
// model-*-of-*.safetensors shards) are removed, since OpenDir prefers
// model.safetensors over an index and a stale file would shadow or mix with
// the new checkpoint. Order of operations: an old index is removed before
// shards with possibly identical names are overwritten, and the new index
// is written only after all its shards, so an interrupted save leaves a
// directory that either loads a complete checkpoint or fails to load, never
// one mixing two saves. The returned paths are the shards in order followed
// by the index, or the single file.
func WriteSharded(dir string, tensors []Tensor, metadata map[string]string, maxShardBytes int64) ([]string, error) {
	if maxShardBytes <= 0 {
		return nil, fmt.Errorf("%s: maximum shard size must be positive, got %d bytes", dir, maxShardBytes)
	}
	// Validate everything (names, duplicates across shards, data lengths)
	// before touching the directory.
	if _, _, err := prepare(tensors, metadata); err != nil {
		return nil, fmt.Errorf("%s: %w", dir, err)
	}
	shards, total := splitShards(tensors, maxShardBytes)
	if len(shards) <= 1 {
		path := filepath.Join(dir, SingleFile)
		if err := Write(path, tensors, metadata); err != nil {
			return nil, err
		}
		if err := removeStale(dir, map[string]bool{SingleFile: true}); err != nil {
			return nil, err
		}
		return []string{path}, nil
	}

	indexPath := filepath.Join(dir, IndexFile)
	if err := os.Remove(indexPath); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("removing the previous index: %w", err)
	}
	keep := map[string]bool{IndexFile: true}
	weightMap := make(map[string]string, len(tensors))
	paths := make([]string, 0, len(shards)+1)
	for i, shard := range shards {
		name := ShardFileName(i, len(shards))
		part := make([]Tensor, len(shard))
		for j, k := range shard {
			part[j] = tensors[k]
			weightMap[tensors[k].Name] = name
		}
		path := filepath.Join(dir, name)
		if err := Write(path, part, metadata); err != nil {
			return nil, err
		}
		keep[name] = true
		paths = append(paths, path)
	}
	index := encodeIndex(total, weightMap)
	if err := fsutil.WriteFileAtomic(indexPath, 0o644, func(w io.Writer) error {
		_, err := w.Write(index)
		return err
	}); err != nil {
		return nil, err
	}
	if err := removeStale(dir, keep); err != nil {
		return nil, err
	}
	return append(paths, indexPath), nil
}

// splitShards groups tensor indices into shards with huggingface_hub's
// split_state_dict_into_shards_factory rule (see WriteSharded) and returns
// them with the total data size. The tensors are already validated.
func splitShards(tensors []Tensor, maxBytes int64) (shards [][]int, total int64) {
	var cur []int
	var curBytes int64
	for i := range tensors {
		t := &tensors[i]
		_, n, _ := numelBytes(t.Shape, dtypes[t.DType].size)
		total += n
		if n > maxBytes {
			// Appended before the shard being filled, as the reference does.
			shards = append(shards, []int{i})
			continue
		}
		if curBytes+n > maxBytes {
			shards = append(shards, cur)
			cur, curBytes = nil, 0
		}
		cur = append(cur, i)
		curBytes += n
	}
	if len(cur) > 0 {
		shards = append(shards, cur)
	}
	return shards, total
}

// removeStale removes the checkpoint files of ours in dir (model.safetensors,
// its index, model-*-of-*.safetensors shards) whose names are not in keep.
func removeStale(dir string, keep map[string]bool) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		name := e.Name()
		if keep[name] || !e.Type().IsRegular() {
			continue
		}
		if name != SingleFile && name != IndexFile && !shardPattern.MatchString(name) {
			continue
		}
		if err := os.Remove(filepath.Join(dir, name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("removing %s left from an earlier save: %w", filepath.Join(dir, name), err)
		}
	}
	return nil
}

// encodeIndex renders the index file exactly as Python's
// json.dumps(index, indent=2, sort_keys=True) + "\n" does (what
// transformers writes): ASCII-only output, non-ASCII escaped as \uXXXX.
func encodeIndex(total int64, weightMap map[string]string) []byte {
	names := make([]string, 0, len(weightMap))
	for n := range weightMap {
		names = append(names, n)
	}
	// Byte order of UTF-8 equals Python's code-point order of str.
	sort.Strings(names)
	b := []byte("{\n  \"metadata\": {\n    \"total_size\": ")
	b = strconv.AppendInt(b, total, 10)
	b = append(b, "\n  },\n  \"weight_map\": {"...)
	for i, n := range names {
		if i > 0 {
			b = append(b, ',')
		}
		b = append(b, "\n    "...)
		b = appendPyJSONString(b, n)
		b = append(b, ": "...)
		b = appendPyJSONString(b, weightMap[n])
	}
	if len(names) > 0 {
		b = append(b, "\n  "...)
	}
	return append(b, "}\n}\n"...)
}

// appendPyJSONString appends s quoted like Python's json with
// ensure_ascii=True: \" \\ \b \f \n \r \t, other characters outside
// printable ASCII as \u00xx, and characters above U+FFFF as a surrogate
// pair.
func appendPyJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	u := func(b []byte, r rune) []byte {
		return append(b, '\\', 'u', hex[r>>12&0xf], hex[r>>8&0xf], hex[r>>4&0xf], hex[r&0xf])
	}
	b = append(b, '"')
	for _, r := range s {
		switch {
		case r == '"':
			b = append(b, '\\', '"')
		case r == '\\':
			b = append(b, '\\', '\\')
		case r == '\b':
			b = append(b, '\\', 'b')
		case r == '\f':
			b = append(b, '\\', 'f')
		case r == '\n':
			b = append(b, '\\', 'n')
		case r == '\r':
			b = append(b, '\\', 'r')
		case r == '\t':
			b = append(b, '\\', 't')
		case r >= ' ' && r <= '~':
			b = append(b, byte(r))
		case r > 0xffff:
			r1, r2 := utf16.EncodeRune(r)
			b = u(u(b, r1), r2)
		default:
			b = u(b, r)
		}
	}
	return append(b, '"')
}
