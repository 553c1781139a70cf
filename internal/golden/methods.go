package golden

import (
	"fmt"
	"os"
	"path/filepath"
)

// MethodsDir is the folder, relative to the golden root, that holds one
// subfolder per fine-tuning method run.
const MethodsDir = "methods"

// MethodMeta is the content of a fine-tuning method set's meta.json
// (testdata/golden/methods/<name>/meta.json). Paths are relative to the
// set's folder.
type MethodMeta struct {
	// Name is the run's name, also its folder name ("lora", "prefix-local").
	Name string `json:"name"`
	// Model names the golden model set the run starts from ("llama-gqa").
	Model string `json:"model"`
	// Architecture is the base model's config.json architectures[0].
	Architecture string `json:"architecture"`
	// Base is the base model's folder (a Hugging Face model folder and a
	// golden Set), e.g. "../../llama-gqa".
	Base string `json:"base"`
	// Data is the pre-tokenized training file (the base set's data.jsonl).
	Data string `json:"data"`
	// Golden names the reference tensors' file.
	Golden string `json:"golden"`
	// Encoder, when set, names the file holding the initial prompt-encoder
	// weights (P-Tuning, prefix tuning with projection): the trainable
	// tensors PEFT's adapter_model.safetensors does not hold.
	Encoder string `json:"encoder,omitempty"`
	// PrependedTokens is the number of virtual tokens prepended to every
	// sequence (prompt tuning, P-Tuning): logits have SeqLen+PrependedTokens
	// positions and the labels are padded in front with as many -100.
	PrependedTokens int `json:"prepended_tokens"`
	// Saved lists the tensors adapter_model.safetensors holds when they are
	// not the trainable tensors (P-Tuning, prefix projection: the encoder's
	// output "prompt_embeddings"); their values after the run are stored as
	// "saved."+name.
	Saved []Param `json:"saved,omitempty"`
	// Run holds the hyper-parameters, the method's options (MethodConfig),
	// the trainable tensors and, in Adapter, the folder holding the
	// initial adapter ("." : the set's own folder, which is then a PEFT
	// adapter folder for --init-adapter; "" for methods without one, such
	// as freeze, whose trainable tensors start at the base weights).
	Run Run `json:"run"`
}

// MethodSet is one loaded fine-tuning method set. Its golden.safetensors
// holds "logits" [B, SeqLen+PrependedTokens, V] and "loss" [1] at the
// initial adapter, and the run's tensors (unprefixed: Run.Prefix is "")
// as described on Run, plus "saved."+name for every entry of Meta.Saved.
type MethodSet struct {
	// Dir is the set's folder.
	Dir string
	// Meta is the parsed meta.json.
	Meta    MethodMeta
	tensors map[string]tensor
}

// LoadMethod reads dir/meta.json and the golden file it names, and checks
// that every tensor meta.json promises is there with the right shape and
// that the files it names exist.
func LoadMethod(dir string) (*MethodSet, error) {
	s := &MethodSet{Dir: dir}
	metaPath, err := readMeta(dir, &s.Meta)
	if err != nil {
		return nil, err
	}
	if s.Meta.Golden == "" || s.Meta.Base == "" || s.Meta.Data == "" {
		return nil, fmt.Errorf("golden: %s: \"golden\", \"base\" and \"data\" must all be named", metaPath)
	}
	if s.Meta.Run.Prefix != "" {
		return nil, fmt.Errorf("golden: %s: a method run stores its tensors unprefixed, not under %q", metaPath, s.Meta.Run.Prefix)
	}
	if s.tensors, err = readTensors(filepath.Join(dir, s.Meta.Golden)); err != nil {
		return nil, err
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("golden: %s: %w", dir, err)
	}
	return s, nil
}

// validate checks that meta.json, the golden file and the named files agree.
func (s *MethodSet) validate() error {
	r := &s.Meta.Run
	want := map[string][]int{
		"logits": {r.BatchSize, r.SeqLen + s.Meta.PrependedTokens, -1},
		"loss":   {1},
	}
	if err := r.expect(want); err != nil {
		return err
	}
	for _, p := range s.Meta.Saved {
		want["saved."+p.Name] = p.Shape
	}
	if err := checkTensors(s.Meta.Golden, s.tensors, want); err != nil {
		return err
	}
	files := []string{s.Meta.Data}
	if r.Adapter != "" {
		files = append(files, filepath.Join(r.Adapter, "adapter_config.json"),
			filepath.Join(r.Adapter, "adapter_model.safetensors"))
	}
	if s.Meta.Encoder != "" {
		files = append(files, s.Meta.Encoder)
	}
	for _, f := range files {
		if _, err := os.Stat(s.Path(f)); err != nil {
			return fmt.Errorf("meta.json names %s: %w", f, err)
		}
	}
	return nil
}

// LoadMethods loads every method set under root (the golden root's
// MethodsDir folder): each subfolder holding a meta.json, in name order.
func LoadMethods(root string) ([]*MethodSet, error) {
	return loadDirs(root, "method set", LoadMethod)
}

// Tensor returns a stored tensor's values and shape, or nil, nil if the set
// has no tensor of that name. The slices are shared: do not modify them.
func (s *MethodSet) Tensor(name string) ([]float32, []int) { return lookup(s.tensors, name) }

// Has reports whether the set stores a tensor of that name.
func (s *MethodSet) Has(name string) bool {
	_, ok := s.tensors[name]
	return ok
}

// Names returns the names of all stored tensors, sorted.
func (s *MethodSet) Names() []string { return sortedNames(s.tensors) }

// Path returns the path of a file named relative to the set's folder.
func (s *MethodSet) Path(file string) string { return filepath.Join(s.Dir, file) }

// BaseDir returns the base model's folder (pass it to Load or --model).
func (s *MethodSet) BaseDir() string { return s.Path(s.Meta.Base) }

// AdapterDir returns the folder holding the initial PEFT-format adapter
// (adapter_config.json, adapter_model.safetensors; pass it to
// --init-adapter), or "" when the method has none.
func (s *MethodSet) AdapterDir() string {
	if s.Meta.Run.Adapter == "" {
		return ""
	}
	return s.Path(s.Meta.Run.Adapter)
}
