package model

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/quant"
	"github.com/gotune/gotune/engine/safetensors"
)

// Load reads a Hugging Face model folder (config.json plus
// model.safetensors or a sharded model.safetensors.index.json; F32, F16 or
// BF16 tensors, stored in float32; see Options.Storage) onto backend be. Every expected tensor
// must be present with its exact shape and no unexpected tensor may be
// present (rotary inv_freq buffers and GPT-2's attention-mask buffers are
// ignored); errors name the tensor. All parameters start trainable; their
// gradient buffers are allocated on the first backward pass.
func Load(dir string, be engine.Backend) (Model, error) {
	return LoadWithOptions(dir, be, Options{})
}

// LoadWithOptions is Load with build options.
func LoadWithOptions(dir string, be engine.Backend, opt Options) (Model, error) {
	cfg, err := hfconfig.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	set, err := safetensors.OpenDir(dir)
	if err != nil {
		return nil, fmt.Errorf("model: %w", err)
	}
	var w weights = setWeights{set}
	var bnb *bnbWeights
	if cfg.Quantization != nil {
		if opt.Quantize.Format != quant.None {
			set.Close()
			return nil, fmt.Errorf("model: %s: cannot quantize to %s: the checkpoint is already quantized (%s %s)", dir, opt.Quantize.Format, hfconfig.QuantKey, cfg.Quantization)
		}
		if bnb, err = newBnbWeights(set, cfg.Quantization); err != nil {
			set.Close()
			return nil, fmt.Errorf("%w (%s)", err, dir)
		}
		w = bnb
	}
	mod, m, err := buildFrom(cfg, be, opt, w, dir)
	if err != nil {
		set.Close()
		return nil, fmt.Errorf("%w (%s)", err, filepath.Join(dir, hfconfig.FileName))
	}
	err = m.loadQuantizedWeights(w, opt.Quantize, dir)
	var stored map[string]string
	if err == nil {
		stored, err = m.fill(w, dir)
	}
	if err != nil {
		set.Close()
		m.freeAll()
		return nil, err
	}
	m.keepSource(set, dir, stored)
	return mod, nil
}

// HostTensor is a float32 array with its shape, in host memory.
type HostTensor struct {
	// Shape holds the dimensions, outermost first.
	Shape []int
	// Data holds the row-major values.
	Data []float32
}

// FromWeights builds a model from named host tensors with Hugging Face
// names, validated like a checkpoint. The llama2.c loader uses it with
// Options{RopeLayout: engine.RopeInterleaved}, passing the q/k weights in
// their original (interleaved-pair) row order.
func FromWeights(cfg *Config, be engine.Backend, w map[string]HostTensor, opt Options) (Model, error) {
	mod, m, err := buildFrom(cfg, be, opt, mapWeights(w), "weights")
	if err != nil {
		return nil, err
	}
	err = m.loadQuantizedWeights(mapWeights(w), opt.Quantize, "weights")
	if err == nil {
		_, err = m.fill(mapWeights(w), "weights")
	}
	if err != nil {
		m.freeAll()
		return nil, err
	}
	return mod, nil
}

// weights is a collection of named float tensors to build a model from.
type weights interface {
	names() []string
	shape(name string) []int
	float32s(name string) ([]float32, error)
}

type setWeights struct{ s *safetensors.Set }

func (w setWeights) names() []string { return w.s.Names() }
func (w setWeights) shape(name string) []int {
	info, _ := w.s.Info(name)
	return info.Shape
}
func (w setWeights) float32s(name string) ([]float32, error) {
	data, _, err := w.s.Float32(name)
	return data, err
}

type mapWeights map[string]HostTensor

func (w mapWeights) names() []string {
	out := make([]string, 0, len(w))
	for n := range w {
		out = append(out, n)
	}
	return out
}
func (w mapWeights) shape(name string) []int { return w[name].Shape }
func (w mapWeights) float32s(name string) ([]float32, error) {
	t := w[name]
	if len(t.Data) != engine.Numel(t.Shape) {
		return nil, fmt.Errorf("tensor %q: shape %v needs %d values, got %d", name, t.Shape, engine.Numel(t.Shape), len(t.Data))
	}
	return t.Data, nil
}

// ignorable reports tensors checkpoints of the family carry that are not
// parameters (rotary inv_freq buffers, GPT-2's causal-mask buffers).
func (m *Transformer) ignorable(name string) bool {
	for _, suf := range m.d.fam.Ignored {
		if strings.HasSuffix(name, suf) {
			return true
		}
	}
	return false
}

// canonical maps a stored tensor name to this model's naming: some
// checkpoints leave out a prefix (GPT-2 conversions of OpenAI's release
// omit "transformer."; arch.Family.StrippedPrefix).
func (m *Transformer) canonical(name string) string {
	f := m.d.fam
	if pre := f.StrippedPrefix; pre != "" && !strings.HasPrefix(name, pre) && name != f.LMHead+".weight" {
		return pre + name
	}
	return name
}

// validate checks w against the model's parameters (expected shapes, as
// built): no unexpected, missing or differently shaped tensor. where
// names the source in errors.
func (m *Transformer) validate(w weights, where string) error {
	stored := map[string]string{} // canonical -> stored name
	var unexpected []string
	for _, n := range w.names() {
		c := m.canonical(n)
		if _, ok := m.params[c]; ok {
			if prev, dup := stored[c]; dup {
				return fmt.Errorf("model: %s: tensors %q and %q are both %q", where, prev, n, c)
			}
			stored[c] = n
			continue
		}
		// A tied lm_head.weight duplicate is tolerated and ignored.
		if m.ignorable(c) || (c == m.d.fam.LMHead+".weight" && m.d.tied) {
			continue
		}
		unexpected = append(unexpected, n)
	}
	if len(unexpected) > 0 {
		return fmt.Errorf("model: %s: unexpected tensor(s) for %s: %s", where, m.cfg.Arch, listNames(unexpected))
	}
	var missing []string
	for _, p := range m.base {
		if _, ok := stored[p.Name]; !ok {
			missing = append(missing, p.Name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("model: %s: missing tensor(s): %s", where, listNames(missing))
	}
	for _, p := range m.base {
		n := stored[p.Name]
		if got := w.shape(n); !sameDims(got, m.shapes[p.Name]) {
			return fmt.Errorf("model: %s: tensor %q: expected shape %v, found %v", where, n, m.shapes[p.Name], got)
		}
	}
	return nil
}

// fill uploads w, which validate accepted, into the model's parameters
// (in their storage dtype, one tensor at a time), refusing a non-finite
// value: a NaN or Inf in a base weight would be trained on (every loss
// NaN, blamed on the learning rate) or, where the data never reaches it,
// copied into the saved model. It returns each parameter's stored tensor
// name.
func (m *Transformer) fill(w weights, where string) (map[string]string, error) {
	stored := map[string]string{} // canonical -> stored name
	for _, n := range w.names() {
		stored[m.canonical(n)] = n
	}
	for _, p := range m.base {
		if p.W == nil {
			return nil, fmt.Errorf("model: %s: tensor %q: a projection gotune cannot hold quantized", where, stored[p.Name])
		}
		data, err := w.float32s(stored[p.Name])
		if err != nil {
			return nil, fmt.Errorf("model: %s: %w", where, err)
		}
		if i, ok := engine.FirstNonFinite(data); !ok {
			return nil, fmt.Errorf("model: %s: tensor %q: element %d is %v; the weights are damaged (a model with NaN or Inf weights cannot be trained)", where, stored[p.Name], i, data[i])
		}
		m.be.Upload(p.W, data)
	}
	if err := m.be.Synchronize(); err != nil {
		return nil, fmt.Errorf("model: %s: uploading weights: %w", where, err)
	}
	return stored, nil
}

// freeAll releases the weights of a model that failed to build, the
// quantized projections included.
func (m *Transformer) freeAll() {
	for _, p := range m.base {
		if p.W != nil {
			m.be.Free(p.W)
		}
	}
	for _, s := range m.slots {
		if qd, ok := s.get().(*QuantDense); ok { // its weight is no base parameter
			quant.Free(m.be, qd.W)
		}
	}
	for _, r := range []*ropeTables{m.rope, m.ropeLocal} {
		if r != nil {
			r.free()
		}
	}
}

func sameDims(a, b []int) bool {
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

// listNames quotes up to 8 names, then counts the rest.
func listNames(names []string) string {
	set := map[string]bool{}
	for _, n := range names {
		set[n] = true
	}
	sorted := sortedNames(set)
	var b strings.Builder
	for i, n := range sorted {
		if i == 8 {
			fmt.Fprintf(&b, " and %d more", len(sorted)-i)
			break
		}
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "%q", n)
	}
	return b.String()
}
