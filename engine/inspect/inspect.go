// Package inspect describes a model file or folder without loading its
// weights: what kind it is (Hugging Face model, PEFT adapter, training
// checkpoint, GGUF file, llama2.c checkpoint), the architecture, parameter
// counts (and an adapter's trainable share), storage dtypes, size on disk,
// the configuration that matters, and the tensor table. The kind is
// detected from the content, not the name.
package inspect

import (
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
)

// Kinds of inspected paths.
const (
	KindModel      = "model"      // Hugging Face folder: config.json + safetensors
	KindAdapter    = "adapter"    // PEFT folder: adapter_config.json + adapter_model.safetensors
	KindCheckpoint = "checkpoint" // gotune checkpoint-<step>/: a model or adapter + trainer state
	KindGGUF       = "gguf"       // llama.cpp GGUF file
	KindLlama2C    = "llama2c"    // llama2.c legacy checkpoint
)

// Tensor is one row of the tensor table.
type Tensor struct {
	Name  string  `json:"name"`
	Shape []int64 `json:"shape"`
	DType string  `json:"dtype"`
}

// Setting is one configuration entry, value formatted as JSON.
type Setting struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

// Report is what Inspect found.
type Report struct {
	// Path is the inspected path.
	Path string `json:"path"`
	// Kind is one of the Kind* constants.
	Kind string `json:"kind"`
	// Architecture is the model class (config.json's architectures,
	// GGUF's general.architecture, "LlamaForCausalLM (llama2.c)"); for an
	// adapter, its method (peft_type).
	Architecture string `json:"architecture"`
	// Parameters counts the stored parameters (tied weights once; for a
	// checkpoint, its model or adapter; not optimizer state or RoPE
	// tables).
	Parameters int64 `json:"parameters"`
	// BaseParameters is, for an adapter, the base model's count when
	// base_model_name_or_path is a local folder (0 otherwise).
	BaseParameters int64 `json:"base_parameters,omitempty"`
	// TrainableShare is, for an adapter with a known base, Parameters /
	// (BaseParameters + Parameters), as PEFT's print_trainable_parameters.
	TrainableShare float64 `json:"trainable_share,omitempty"`
	// DTypes counts the parameters stored in each dtype.
	DTypes map[string]int64 `json:"dtypes"`
	// SizeBytes is the size on disk (every file under a folder).
	SizeBytes int64 `json:"size_bytes"`
	// Files is how many files SizeBytes covers.
	Files int `json:"files"`
	// Config lists the settings that matter, in a fixed order.
	Config []Setting `json:"config"`
	// Tensors is the tensor table, in file order (sorted by name for
	// safetensors, whose headers are unordered).
	Tensors []Tensor `json:"tensors,omitempty"`
	// Inner is, for a checkpoint, the report of the model or adapter it
	// holds.
	Inner *Report `json:"inner,omitempty"`
}

// Inspect describes the model, adapter, checkpoint, GGUF or llama2.c file
// at path.
func Inspect(path string) (*Report, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	var r *Report
	if info.IsDir() {
		r, err = inspectDir(path)
	} else {
		r, err = inspectFile(path)
	}
	if err != nil {
		return nil, err
	}
	r.Path = path
	if r.SizeBytes, r.Files, err = diskSize(path); err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	return r, nil
}

// exists reports whether dir/name is a file.
func exists(dir, name string) bool {
	info, err := os.Stat(filepath.Join(dir, name))
	return err == nil && !info.IsDir()
}

// inspectDir dispatches on the files a folder holds.
func inspectDir(dir string) (*Report, error) {
	switch {
	case exists(dir, "trainer_state.json"):
		return inspectCheckpoint(dir)
	case exists(dir, "adapter_config.json"):
		return inspectAdapter(dir)
	case exists(dir, "config.json"):
		return inspectModel(dir)
	}
	return nil, fmt.Errorf("inspect: %s holds no config.json, adapter_config.json or trainer_state.json: not a model, adapter or checkpoint folder", dir)
}

// inspectFile dispatches on a file's first bytes.
func inspectFile(path string) (*Report, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	head := make([]byte, 28)
	n, _ := f.Read(head)
	f.Close()
	if n >= 4 && string(head[:4]) == "GGUF" {
		return inspectGGUF(path)
	}
	return inspectLlama2C(path, head[:n])
}

// diskSize sums the sizes of path's files.
func diskSize(path string) (int64, int, error) {
	var total int64
	files := 0
	err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			info, err := d.Info()
			if err != nil {
				return err
			}
			total += info.Size()
			files++
		}
		return nil
	})
	return total, files, err
}

// settingsFromJSON lists a JSON object's keys (sorted) with their values,
// leaving out nulls, empty objects and lists, and the keys in skip.
func settingsFromJSON(data []byte, skip ...string) ([]Setting, error) {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(data, &m); err != nil {
		return nil, err
	}
	for _, k := range skip {
		delete(m, k)
	}
	keys := make([]string, 0, len(m))
	for k, v := range m {
		if c := compactJSON(v); c != "null" && c != "{}" && c != "[]" {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	out := make([]Setting, len(keys))
	for i, k := range keys {
		out[i] = Setting{Key: k, Value: compactJSON(m[k])}
	}
	return out, nil
}

func compactJSON(raw json.RawMessage) string {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return string(raw)
	}
	b, _ := json.Marshal(v)
	return string(b)
}

// readJSONFile reads a file, naming it in errors.
func readJSONFile(path string) ([]byte, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("inspect: %w", err)
	}
	if !json.Valid(data) {
		return nil, fmt.Errorf("inspect: %s is not valid JSON", path)
	}
	return data, nil
}
