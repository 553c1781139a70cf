// Package golden loads the PyTorch golden values under testdata/golden, the
// reference every numerical test of gotune compares against.
//
// Each golden set is a folder written by testdata/golden/gen.py: a Hugging
// Face checkpoint (config.json, model.safetensors), the batch (data.jsonl),
// the reference tensors (golden.safetensors: logits, loss, gradients and the
// trajectories of short training runs) and meta.json, which lists the
// parameters and every run's hyper-parameters so tests read them instead of
// hard-coding them. testdata/golden/README.md describes every tensor.
//
// The fine-tuning methods' sets live in testdata/golden/methods/<run>/
// (LoadMethod, LoadMethods): one run each, starting from a model set, with
// the initial adapter as a PEFT-format folder that gotune loads with
// --init-adapter.
package golden

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"

	"github.com/gotune/gotune/engine/safetensors"
)

// Param describes one tensor of a model or a trainable tensor of a run.
type Param struct {
	// Name is the Hugging Face state-dict name (PEFT's name for adapters).
	Name string `json:"name"`
	// Shape holds the dimensions, outermost first.
	Shape []int `json:"shape"`
	// Decay tells whether AdamW applies weight decay to it.
	Decay bool `json:"decay"`
}

// Run holds the hyper-parameters of one reference training run. Its
// tensors are stored in golden.safetensors under Prefix: Prefix+"losses",
// Prefix+"grad_norms", Prefix+"lrs" (one value per step), and for every
// trainable tensor Prefix+"grad."+name (the gradient of the first step's
// mean loss, before clipping) and Prefix+"after."+name (its value after
// Steps optimizer steps).
type Run struct {
	// Name identifies the run within its set ("full", "accum", "warmup").
	Name string `json:"name"`
	// Prefix is prepended to the names of the run's tensors ("" for "full").
	Prefix string `json:"prefix"`
	// Method is the --method the run corresponds to ("full", "lora", ...).
	Method string `json:"method"`
	// MethodConfig holds the method's hyper-parameters (absent for "full");
	// each method's tests decode it into their own type.
	MethodConfig json.RawMessage `json:"method_config,omitempty"`
	// Adapter, when set, is the folder (relative to the set) holding the
	// method's initial trainable tensors as a user would load them
	// (adapter_config.json, adapter_model.safetensors).
	Adapter string `json:"adapter,omitempty"`
	// BatchSize, GradAccum and SeqLen are --batch-size, --grad-accum, --seq-len.
	BatchSize int `json:"batch_size"`
	GradAccum int `json:"grad_accum"`
	SeqLen    int `json:"seq_len"`
	// Shuffle is --shuffle (always false: batches are consecutive lines).
	Shuffle bool `json:"shuffle"`
	// LR, Betas, Eps and WeightDecay are torch.optim.AdamW's arguments.
	LR          float64    `json:"lr"`
	Betas       [2]float64 `json:"betas"`
	Eps         float64    `json:"eps"`
	WeightDecay float64    `json:"weight_decay"`
	// MaxGradNorm is clip_grad_norm_'s max_norm (0 would mean off).
	MaxGradNorm float64 `json:"max_grad_norm"`
	// Schedule is "constant", "linear" or "cosine" (Hugging Face's
	// get_*_schedule_with_warmup), with WarmupSteps and TotalSteps.
	Schedule    string `json:"schedule"`
	WarmupSteps int    `json:"warmup_steps"`
	TotalSteps  int    `json:"total_steps"`
	// Steps is the number of optimizer steps the run takes.
	Steps int `json:"steps"`
	// Seed is the run's --seed (0 when unset), from which the base
	// model's dropout masks derive (engine.DropoutMaskSeed; step k of the
	// run is TrainingPass{Step: k}).
	Seed uint64 `json:"seed,omitempty"`
	// CountedTokens[k] is the number of targets counted in step k+1's loss.
	CountedTokens []int `json:"counted_tokens"`
	// Trainable lists the tensors the run trains, with their decay flags.
	Trainable []Param `json:"trainable"`
}

// Key returns the name under which the run stores tensor name.
func (r *Run) Key(name string) string { return r.Prefix + name }

// Meta is the content of a set's meta.json.
type Meta struct {
	// Model is the set's name (its folder name).
	Model string `json:"model"`
	// Architecture is config.json's architectures[0].
	Architecture string `json:"architecture"`
	// Config, Weights, Data and Golden name the set's files.
	Config  string `json:"config"`
	Weights string `json:"weights"`
	Data    string `json:"data"`
	Golden  string `json:"golden"`
	// Params lists every model parameter (what model.safetensors holds).
	Params []Param `json:"params"`
	// Runs lists the reference training runs; Runs[0] is full fine-tuning
	// with prefix "", whose batch also produced "logits" and "loss".
	Runs []Run `json:"runs"`
}

type tensor struct {
	data  []float32
	shape []int
}

// Set is one loaded golden set. All its tensors are held in memory (they
// are small).
type Set struct {
	// Dir is the set's folder, which is also a Hugging Face model folder.
	Dir string
	// Meta is the parsed meta.json.
	Meta    Meta
	tensors map[string]tensor
}

// Load reads dir/meta.json and dir/golden.safetensors and checks that every
// tensor meta.json promises is there with the right shape.
func Load(dir string) (*Set, error) {
	s := &Set{Dir: dir}
	metaPath, err := readMeta(dir, &s.Meta)
	if err != nil {
		return nil, err
	}
	if s.Meta.Golden == "" {
		return nil, fmt.Errorf("golden: %s: no \"golden\" file named", metaPath)
	}
	if s.tensors, err = readTensors(filepath.Join(dir, s.Meta.Golden)); err != nil {
		return nil, err
	}
	if err := s.validate(); err != nil {
		return nil, fmt.Errorf("golden: %s: %w", dir, err)
	}
	return s, nil
}

// validate checks that meta.json and golden.safetensors agree.
func (s *Set) validate() error {
	if len(s.Meta.Runs) == 0 || s.Meta.Runs[0].Prefix != "" {
		return fmt.Errorf("meta.json: the first run must be the unprefixed full fine-tuning run")
	}
	first := s.Meta.Runs[0]
	want := map[string][]int{
		"logits": {first.BatchSize, first.SeqLen, -1},
		"loss":   {1},
	}
	for i := range s.Meta.Runs {
		if err := s.Meta.Runs[i].expect(want); err != nil {
			return err
		}
	}
	return checkTensors(s.Meta.Golden, s.tensors, want)
}

// expect checks the run's step counts and adds the tensors it stores to
// want (name -> shape).
func (r *Run) expect(want map[string][]int) error {
	if r.Steps <= 0 || len(r.CountedTokens) != r.Steps {
		return fmt.Errorf("meta.json: run %q: %d steps but %d counted-token entries", r.Name, r.Steps, len(r.CountedTokens))
	}
	if len(r.Trainable) == 0 {
		return fmt.Errorf("meta.json: run %q lists no trainable tensors", r.Name)
	}
	for _, k := range []string{"losses", "grad_norms", "lrs"} {
		want[r.Key(k)] = []int{r.Steps}
	}
	for _, p := range r.Trainable {
		want[r.Key("grad."+p.Name)] = p.Shape
		want[r.Key("after."+p.Name)] = p.Shape
	}
	return nil
}

// readTensors loads every tensor of a golden.safetensors file as float32.
func readTensors(path string) (map[string]tensor, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		return nil, fmt.Errorf("golden: %w", err)
	}
	defer f.Close()
	out := map[string]tensor{}
	for _, name := range f.Names() {
		data, shape, err := f.Float32(name)
		if err != nil {
			return nil, fmt.Errorf("golden: %w", err)
		}
		out[name] = tensor{data, shape}
	}
	return out, nil
}

// checkTensors reports the first (in name order) tensor of want that file
// lacks or holds with another shape.
func checkTensors(file string, have map[string]tensor, want map[string][]int) error {
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		t, ok := have[n]
		if !ok {
			return fmt.Errorf("%s: tensor %q missing", file, n)
		}
		if !shapeMatches(t.shape, want[n]) {
			return fmt.Errorf("%s: tensor %q has shape %v, meta.json implies %v", file, n, t.shape, want[n])
		}
	}
	return nil
}

// shapeMatches compares shapes; -1 in want matches any size.
func shapeMatches(got, want []int) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if want[i] >= 0 && got[i] != want[i] {
			return false
		}
	}
	return true
}

// LoadAll loads every golden set in root: each subfolder holding a
// meta.json, in name order.
func LoadAll(root string) ([]*Set, error) { return loadDirs(root, "golden set", Load) }

// loadDirs loads, with load, every subfolder of root that holds a
// meta.json, in name order; what names the kind of set for the error when
// there is none.
func loadDirs[S any](root, what string, load func(dir string) (S, error)) ([]S, error) {
	entries, err := os.ReadDir(root)
	if err != nil {
		return nil, fmt.Errorf("golden: %w", err)
	}
	var sets []S
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		dir := filepath.Join(root, e.Name())
		if _, err := os.Stat(filepath.Join(dir, "meta.json")); err != nil {
			continue
		}
		s, err := load(dir)
		if err != nil {
			return nil, err
		}
		sets = append(sets, s)
	}
	if len(sets) == 0 {
		return nil, fmt.Errorf("golden: no %s (a folder with meta.json) in %s", what, root)
	}
	return sets, nil
}

// readMeta decodes dir/meta.json into meta and returns the file's path.
func readMeta(dir string, meta any) (string, error) {
	metaPath := filepath.Join(dir, "meta.json")
	raw, err := os.ReadFile(metaPath)
	if err != nil {
		return "", fmt.Errorf("golden: %w", err)
	}
	if err := json.Unmarshal(raw, meta); err != nil {
		return "", fmt.Errorf("golden: %s: %w", metaPath, err)
	}
	return metaPath, nil
}

// Tensor returns a stored tensor's values and shape, or nil, nil if the set
// has no tensor of that name. The slices are shared: do not modify them.
func (s *Set) Tensor(name string) ([]float32, []int) { return lookup(s.tensors, name) }

// Has reports whether the set stores a tensor of that name.
func (s *Set) Has(name string) bool {
	_, ok := s.tensors[name]
	return ok
}

// Names returns the names of all stored tensors, sorted.
func (s *Set) Names() []string { return sortedNames(s.tensors) }

func lookup(m map[string]tensor, name string) ([]float32, []int) {
	t, ok := m[name]
	if !ok {
		return nil, nil
	}
	return t.data, t.shape
}

func sortedNames(m map[string]tensor) []string {
	names := make([]string, 0, len(m))
	for n := range m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Run returns the run of that name, or nil.
func (s *Set) Run(name string) *Run {
	for i := range s.Meta.Runs {
		if s.Meta.Runs[i].Name == name {
			return &s.Meta.Runs[i]
		}
	}
	return nil
}

// Path returns the path of a file of the set (e.g. s.Path(s.Meta.Data)).
func (s *Set) Path(file string) string { return filepath.Join(s.Dir, file) }

// RelErr returns ||got - want||₂ / ||want||₂, accumulated in float64: the
// relative error the golden tests bound. When want is all zeros it returns
// the absolute ||got||₂ (so zero against zero is 0). It returns +Inf when
// the lengths differ or any value is NaN or infinite, so that a test
// written as `if RelErr(g, w) > tol` cannot pass on garbage.
func RelErr(got, want []float32) float64 {
	if len(got) != len(want) {
		return math.Inf(1)
	}
	var diff, ref float64
	for i := range want {
		d := float64(got[i]) - float64(want[i])
		diff += d * d
		ref += float64(want[i]) * float64(want[i])
	}
	e := math.Sqrt(diff)
	if ref != 0 {
		e = math.Sqrt(diff / ref)
	}
	if math.IsNaN(e) || math.IsInf(ref, 0) {
		return math.Inf(1)
	}
	return e
}
