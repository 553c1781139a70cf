package safetensors

import (
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gotune/gotune/engine/strictjson"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Standard Hugging Face checkpoint file names.
const (
	// SingleFile is the name of an unsharded checkpoint.
	SingleFile = "model.safetensors"
	// IndexFile is the name of the index of a sharded checkpoint.
	IndexFile = "model.safetensors.index.json"
)

// Set is a checkpoint made of one or more safetensors files, seen as one
// collection of uniquely named tensors.
type Set struct {
	files  []*File
	byName map[string]*File
	names  []string
}

// OpenDir opens the checkpoint in a Hugging Face model directory:
// model.safetensors if present (transformers' preference), else the shards
// listed in model.safetensors.index.json. For a sharded checkpoint every
// weight_map entry must name a shard file inside dir that exists and holds
// that tensor, and no tensor may appear in two shards.
func OpenDir(dir string) (*Set, error) {
	single := filepath.Join(dir, SingleFile)
	if _, err := os.Stat(single); err == nil {
		return OpenFiles(single)
	}
	index := filepath.Join(dir, IndexFile)
	data, err := os.ReadFile(index)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("%s: no %s or %s found", dir, SingleFile, IndexFile)
	}
	if err != nil {
		return nil, err
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := strictjson.CheckKeys(data); err != nil {
		return nil, fmt.Errorf("%s: %w", index, err)
	}
	if err := json.Unmarshal(data, &idx); err != nil {
		return nil, fmt.Errorf("%s: %v", index, err)
	}
	if len(idx.WeightMap) == 0 {
		return nil, fmt.Errorf("%s: missing or empty \"weight_map\"", index)
	}
	// Open each shard once, in sorted order for deterministic errors.
	shardOf := make(map[string][]string) // shard file -> weights
	for w, shard := range idx.WeightMap {
		shardOf[shard] = append(shardOf[shard], w)
	}
	shards := make([]string, 0, len(shardOf))
	for s := range shardOf {
		shards = append(shards, s)
	}
	sort.Strings(shards)
	paths := make([]string, len(shards))
	for i, shard := range shards {
		weights := shardOf[shard]
		sort.Strings(weights)
		if !filepath.IsLocal(shard) || filepath.Base(shard) != shard {
			return nil, fmt.Errorf("%s: weight %q maps to %q, which is not a file name inside the model directory", index, weights[0], shard)
		}
		paths[i] = filepath.Join(dir, shard)
		if _, err := os.Stat(paths[i]); err != nil {
			return nil, fmt.Errorf("%s: weight %q maps to shard %q, which is missing: %w", index, weights[0], shard, err)
		}
	}
	set, err := OpenFiles(paths...)
	if err != nil {
		return nil, err
	}
	for i, shard := range shards {
		for _, w := range shardOf[shard] {
			if set.byName[w] == nil {
				set.Close()
				return nil, fmt.Errorf("%s: weight %q maps to shard %q, which has no such tensor", index, w, shard)
			}
			if got := set.byName[w].Path(); got != paths[i] {
				set.Close()
				return nil, fmt.Errorf("%s: weight %q maps to shard %q but is stored in %s", index, w, shard, got)
			}
		}
	}
	return set, nil
}

// OpenFiles opens safetensors files as one set. A tensor name present in two
// files is an error.
func OpenFiles(paths ...string) (*Set, error) {
	s := &Set{byName: make(map[string]*File)}
	for _, p := range paths {
		f, err := Open(p)
		if err != nil {
			s.Close()
			return nil, err
		}
		s.files = append(s.files, f)
		for _, name := range f.names {
			if prev := s.byName[name]; prev != nil {
				s.Close()
				return nil, fmt.Errorf("tensor %q is in both %s and %s", name, prev.path, f.path)
			}
			s.byName[name] = f
			s.names = append(s.names, name)
		}
	}
	sort.Strings(s.names)
	return s, nil
}

// Files returns the open files of the set, in opening order.
func (s *Set) Files() []*File { return append([]*File(nil), s.files...) }

// Names returns every tensor name, sorted (a fresh slice).
func (s *Set) Names() []string { return append([]string(nil), s.names...) }

// FileOf returns the file holding a tensor, or nil.
func (s *Set) FileOf(name string) *File { return s.byName[name] }

// Info returns the header entry of a tensor and whether it exists.
func (s *Set) Info(name string) (TensorInfo, bool) {
	if f := s.byName[name]; f != nil {
		return f.Info(name)
	}
	return TensorInfo{}, false
}

func (s *Set) file(name string) (*File, error) {
	if f := s.byName[name]; f != nil {
		return f, nil
	}
	if len(s.files) == 1 {
		return nil, fmt.Errorf("%s: no tensor %q", s.files[0].path, name)
	}
	return nil, fmt.Errorf("no tensor %q in the %d checkpoint shards", name, len(s.files))
}

// Float32 reads a float tensor as float32 with its shape (see File.Float32).
func (s *Set) Float32(name string) ([]float32, []int, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, nil, err
	}
	return f.Float32(name)
}

// Int64s reads an integer or BOOL tensor as int64 with its shape.
func (s *Set) Int64s(name string) ([]int64, []int, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, nil, err
	}
	return f.Int64s(name)
}

// Raw returns a copy of a tensor's stored bytes.
func (s *Set) Raw(name string) ([]byte, error) {
	f, err := s.file(name)
	if err != nil {
		return nil, err
	}
	return f.Raw(name)
}

// Close closes every file of the set and returns the first error.
func (s *Set) Close() error {
	var first error
	for _, f := range s.files {
		if err := f.Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
