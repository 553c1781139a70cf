// Package peft reads and writes adapter folders in the layout of Hugging
// Face PEFT, so that adapters trained by gotune load in PEFT and adapters
// made with PEFT load in gotune.
//
// A PEFT adapter folder holds two files:
//
//   - adapter_config.json: the method's configuration dataclass as a JSON
//     object (PEFT writes it with sorted keys and two-space indentation);
//     its "peft_type" ("LORA", "PROMPT_TUNING", ...) says which method
//     reads it.
//   - adapter_model.safetensors: the adapter's tensors. Module tensors are
//     named "base_model.model." followed by the module's path in the base
//     model and the tensor's own name, e.g.
//     "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight".
//
// gotune names a method's parameters (engine.Param.Name) with exactly
// these keys, so saving is a download and loading an upload by name; this
// package does both, checking every name and shape and naming the tensor
// and the file in its errors.
package peft

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/strictjson"
	"io"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/engine/safetensors"
)

const (
	// ConfigFile is the adapter configuration's file name.
	ConfigFile = "adapter_config.json"
	// WeightsFile is the adapter tensors' file name.
	WeightsFile = "adapter_model.safetensors"
	// KeyPrefix starts the name of every module tensor in WeightsFile:
	// PeftModel wraps the tuner model (base_model), which wraps the
	// transformers model (model).
	KeyPrefix = "base_model.model."
	// TaskCausalLM is the task_type of causal language-model adapters.
	TaskCausalLM = "CAUSAL_LM"
)

// Key returns the name PEFT saves tensor leaf (e.g. "lora_A.weight") of the
// module at modulePath (a Hugging Face path such as
// "model.layers.0.self_attn.q_proj") under.
func Key(modulePath, leaf string) string {
	return KeyPrefix + modulePath + "." + leaf
}

// ModulePath is Key's inverse for a known leaf: it returns the module path
// of key and true when key is KeyPrefix + path + "." + leaf.
func ModulePath(key, leaf string) (string, bool) {
	rest, ok := strings.CutPrefix(key, KeyPrefix)
	if !ok {
		return "", false
	}
	path, ok := strings.CutSuffix(rest, "."+leaf)
	if !ok || path == "" {
		return "", false
	}
	return path, true
}

// ---- adapter_config.json ----

// Header holds the keys every PEFT configuration has (PeftConfigMixin and
// PeftConfig), enough to tell which method a folder belongs to.
type Header struct {
	// PeftType names the method: "LORA", "PROMPT_TUNING", "P_TUNING",
	// "PREFIX_TUNING", ... (gotune's own methods use their own names).
	PeftType string `json:"peft_type"`
	// TaskType is "CAUSAL_LM" for the adapters gotune makes.
	TaskType *string `json:"task_type"`
	// BaseModelNameOrPath is the model the adapter was trained on.
	BaseModelNameOrPath *string `json:"base_model_name_or_path"`
	// Revision is the base model's revision, if any.
	Revision *string `json:"revision"`
	// InferenceMode is true in saved configurations.
	InferenceMode bool `json:"inference_mode"`
}

// ReadHeader reads dir/adapter_config.json far enough to return its
// common keys (to dispatch on PeftType).
func ReadHeader(dir string) (*Header, error) {
	var h Header
	if err := ReadConfig(dir, "", &h); err != nil {
		return nil, err
	}
	return &h, nil
}

// ReadConfig decodes dir/adapter_config.json into v (a pointer to the
// method's configuration struct). When wantType is not empty the file's
// peft_type must equal it. Keys v does not know are ignored, as PEFT
// tolerates keys of newer versions; a value of the wrong JSON type is an
// error naming the key.
func ReadConfig(dir, wantType string, v any) error {
	path := filepath.Join(dir, ConfigFile)
	raw, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("%s: not a PEFT adapter folder: %s is missing", dir, ConfigFile)
		}
		return fmt.Errorf("adapter config: %w", err)
	}
	if err := strictjson.CheckKeys(raw); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	var h struct {
		PeftType *string `json:"peft_type"`
	}
	if err := json.Unmarshal(raw, &h); err != nil {
		return fmt.Errorf("%s: %w", path, describeJSONError(raw, err))
	}
	if h.PeftType == nil {
		return fmt.Errorf("%s: no \"peft_type\" key", path)
	}
	if wantType != "" && *h.PeftType != wantType {
		return fmt.Errorf("%s: peft_type is %q, expected %q", path, *h.PeftType, wantType)
	}
	if err := json.Unmarshal(raw, v); err != nil {
		return fmt.Errorf("%s: %w", path, describeJSONError(raw, err))
	}
	return nil
}

// describeJSONError adds the line of a syntax error and the key of a type
// error.
func describeJSONError(raw []byte, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		line := 1 + bytes.Count(raw[:min(int(se.Offset), len(raw))], []byte{'\n'})
		return fmt.Errorf("line %d: %w", line, err)
	}
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) {
		return fmt.Errorf("key %q: a JSON %s cannot be a %s", te.Field, te.Value, te.Type)
	}
	return err
}

// WriteConfig writes v (a configuration struct with PEFT's json keys) to
// dir/adapter_config.json as PEFT's save_pretrained does: keys sorted,
// two-space indentation, no final newline. The file is written atomically.
func WriteConfig(dir string, v any) error {
	data, err := MarshalConfig(v)
	if err != nil {
		return fmt.Errorf("adapter config: %w", err)
	}
	return fsutil.WriteFileAtomic(filepath.Join(dir, ConfigFile), 0o644, func(w io.Writer) error {
		_, err := w.Write(data)
		return err
	})
}

// MarshalConfig returns the bytes WriteConfig writes for v.
func MarshalConfig(v any) ([]byte, error) {
	flat, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	// Decoding into a map of raw values and encoding again sorts the keys
	// (encoding/json writes map keys in order), as json.dumps(sort_keys=True).
	var m map[string]json.RawMessage
	if err := json.Unmarshal(flat, &m); err != nil {
		return nil, fmt.Errorf("configuration is not a JSON object: %w", err)
	}
	return json.MarshalIndent(m, "", "  ")
}

// Float is a float64 that encodes as Python's json module writes a float:
// always with a decimal point or an exponent ("0.0", "0.05", "1e-05"), so
// a configuration written by gotune reads the same as PEFT's.
type Float float64

// MarshalJSON writes the value like Python's float repr.
func (f Float) MarshalJSON() ([]byte, error) {
	v := float64(f)
	switch {
	case math.IsNaN(v):
		return []byte("NaN"), nil
	case math.IsInf(v, 1):
		return []byte("Infinity"), nil
	case math.IsInf(v, -1):
		return []byte("-Infinity"), nil
	}
	return []byte(pyRepr(v)), nil
}

// pyRepr formats v as Python's repr(float): the shortest round-tripping
// digits, positional notation for exponents in [-4, 16), else scientific
// with a two-digit minimum exponent.
func pyRepr(v float64) string {
	if v == 0 {
		if math.Signbit(v) {
			return "-0.0"
		}
		return "0.0"
	}
	// The decimal exponent of the leading digit, read off the exact
	// shortest scientific form.
	e := strconv.FormatFloat(v, 'e', -1, 64)
	exp, _ := strconv.Atoi(e[strings.LastIndexByte(e, 'e')+1:])
	if exp >= -4 && exp < 16 {
		s := strconv.FormatFloat(v, 'f', -1, 64)
		if !strings.ContainsAny(s, ".") {
			s += ".0"
		}
		return s
	}
	return e // Go writes "1e-05", "1.5e+16": Python's form
}

// ---- adapter_model.safetensors ----

// Tensor is a float32 host array with its shape.
type Tensor struct {
	// Shape holds the dimensions, outermost first.
	Shape []int
	// Data holds the row-major values.
	Data []float32
}

// Weights are the tensors of an adapter file, read into host memory (an
// adapter is small). Methods take their tensors by name with Load or Take;
// Unused then reports what nothing took, which is an error (a tensor for a
// module that was not targeted, a typo, another method's file).
type Weights struct {
	// Path is the file the tensors came from.
	Path    string
	tensors map[string]Tensor
	used    map[string]bool
}

// ReadWeights reads dir/adapter_model.safetensors (F32, F16, BF16 or F64
// tensors, converted to float32).
func ReadWeights(dir string) (*Weights, error) {
	return ReadWeightsFile(filepath.Join(dir, WeightsFile))
}

// ReadWeightsFile reads a safetensors file of adapter tensors.
func ReadWeightsFile(path string) (*Weights, error) {
	f, err := safetensors.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("adapter weights %s are missing", path)
		}
		return nil, fmt.Errorf("adapter weights: %w", err)
	}
	defer f.Close()
	w := &Weights{Path: path, tensors: map[string]Tensor{}, used: map[string]bool{}}
	for _, name := range f.Names() {
		data, shape, err := f.Float32(name)
		if err != nil {
			return nil, fmt.Errorf("adapter weights: %w", err)
		}
		w.tensors[name] = Tensor{Shape: shape, Data: data}
	}
	return w, nil
}

// Names returns every tensor name, sorted.
func (w *Weights) Names() []string {
	out := make([]string, 0, len(w.tensors))
	for n := range w.tensors {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Has reports whether the file holds a tensor of that name.
func (w *Weights) Has(name string) bool {
	_, ok := w.tensors[name]
	return ok
}

// Take returns tensor name, which must have exactly the given shape, and
// marks it used.
func (w *Weights) Take(name string, shape ...int) ([]float32, error) {
	t, ok := w.tensors[name]
	if !ok {
		return nil, fmt.Errorf("%s: tensor %q is missing", w.Path, name)
	}
	if !sameShape(t.Shape, shape) {
		return nil, fmt.Errorf("%s: tensor %q has shape %v, expected %v", w.Path, name, t.Shape, shape)
	}
	w.used[name] = true
	return t.Data, nil
}

// Load uploads the tensor named p.Name into p.W, checking its shape.
func (w *Weights) Load(p *engine.Param) error {
	data, err := w.Take(p.Name, p.W.Shape()...)
	if err != nil {
		return err
	}
	p.W.Backend().Upload(p.W, data)
	return nil
}

// Unused returns the names of the tensors nothing has taken, sorted.
func (w *Weights) Unused() []string {
	var out []string
	for _, n := range w.Names() {
		if !w.used[n] {
			out = append(out, n)
		}
	}
	return out
}

// CheckAllUsed returns an error naming the tensors nothing has taken;
// what says what the method expected (e.g. "LoRA tensors of the modules
// q_proj, v_proj").
func (w *Weights) CheckAllUsed(what string) error {
	un := w.Unused()
	if len(un) == 0 {
		return nil
	}
	shown := un
	more := ""
	if len(shown) > 5 {
		shown, more = shown[:5], fmt.Sprintf(" and %d more", len(un)-5)
	}
	return fmt.Errorf("%s: unexpected tensor(s) %s%s (expected only %s)", w.Path, quoteAll(shown), more, what)
}

// LoadAll loads every tensor of params (see Load) and then checks that
// the file holds nothing else (see CheckAllUsed, which what is passed
// to): the whole of loading a method whose file is exactly its
// parameters.
func (w *Weights) LoadAll(params []*engine.Param, what string) error {
	for _, p := range params {
		if err := w.Load(p); err != nil {
			return err
		}
	}
	return w.CheckAllUsed(what)
}

// WriteWeights writes params to dir/adapter_model.safetensors under their
// names (PEFT keys), as float32, atomically, with PEFT's metadata
// {"format": "pt"}.
func WriteWeights(dir string, params []*engine.Param) error {
	if err := WriteWeightsFile(filepath.Join(dir, WeightsFile), params); err != nil {
		return fmt.Errorf("adapter weights: %w", err)
	}
	return nil
}

// WriteWeightsFile writes params to the safetensors file path as
// WriteWeights does; methods also use it for tensors PEFT's files lack
// (a prompt encoder, written beside them), which ReadWeightsFile reads
// back.
func WriteWeightsFile(path string, params []*engine.Param) error {
	tensors := make([]safetensors.Tensor, 0, len(params))
	for _, p := range params {
		tensors = append(tensors, safetensors.Tensor{
			Name: p.Name, DType: safetensors.F32,
			Shape: append([]int(nil), p.W.Shape()...), F32: p.W.Backend().Download(p.W),
		})
	}
	return safetensors.Write(path, tensors, map[string]string{"format": "pt"})
}

// Save writes a complete adapter folder: dir (created if needed),
// adapter_config.json from config and adapter_model.safetensors from
// params.
func Save(dir string, config any, params []*engine.Param) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("adapter: %w", err)
	}
	if err := WriteWeights(dir, params); err != nil {
		return err
	}
	return WriteConfig(dir, config)
}

func sameShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func quoteAll(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = strconv.Quote(n)
	}
	return strings.Join(q, ", ")
}

// CheckVirtualTokens refuses a number of virtual tokens (an option or a
// file's num_virtual_tokens) longer than the model's context of maxPos
// positions, before anything of that size is allocated: a prompt or
// prefix the model could not have attended to in pre-training is a
// mistake, and a huge one would exhaust memory. The error is a
// *fielderr.Error about NumVirtualTokens, the field of every config of
// virtual tokens.
func CheckVirtualTokens(n, maxPos int) error {
	if n > maxPos {
		return fielderr.Errorf("NumVirtualTokens", "%d is more than the model's %d positions (max_position_embeddings)", n, maxPos)
	}
	return nil
}
