// Package lora implements LoRA (Hu et al., 2021) and its variants rsLoRA
// (scaling alpha/sqrt(r)) and DoRA (a learned magnitude per output
// feature), with Hugging Face PEFT's semantics and file format.
//
// Apply wraps the targeted projections of a model (see model.Linear) in a
// Linear that adds the low-rank update, freezes every base weight and
// initialises the factors as PEFT does; Load does the same from a PEFT
// adapter folder. The returned Adapter saves a PEFT folder
// (adapter_config.json, adapter_model.safetensors) that PEFT loads, and
// merges the update into the base weights for export.
//
// All arithmetic goes through the model's engine.Backend; a backend with
// fused LoRA kernels (the CUDA backend) computes plain LoRA layers with
// them.
package lora

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"regexp"
	"slices"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/methods/internal/params"
	"github.com/gotune/gotune/methods/peft"
)

// Adapter is a set of LoRA layers installed in a model.
type Adapter struct {
	cfg         Config
	sc          *scratch // temporaries shared by the layers
	m           model.Model
	layers      []*Linear
	targets     []string // target_modules as saved
	fanInFanOut bool
	removed     bool
}

// Apply installs freshly initialised LoRA layers on the modules cfg
// targets and freezes every other parameter of m (releasing their
// gradient buffers). A is drawn per cfg.Init from a stream seeded with
// cfg.Seed (modules in forward order), B is zero, and DoRA's magnitude is
// ‖W₀‖ per output feature, so the model computes what it computed before.
func Apply(m model.Model, cfg Config) (*Adapter, error) {
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	if cfg.Init == "" {
		cfg.Init = InitKaiming
	}
	a, err := install(m, cfg)
	if err != nil {
		return nil, err
	}
	rng := rand.New(rand.NewPCG(cfg.Seed, 0x6c6f7261)) // "lora"
	for _, l := range a.layers {
		var host []float32
		switch cfg.Init {
		case InitGaussian:
			host = params.Normal(rng, l.A.W.Len(), 1/float64(l.r))
		default:
			// kaiming_uniform_(a=sqrt(5)) on [r, in]: gain sqrt(2/(1+5)),
			// bound gain·sqrt(3/fan_in) = 1/sqrt(in).
			host = params.Uniform(rng, l.A.W.Len(), 1/math.Sqrt(float64(l.in)))
		}
		l.be.Upload(l.A.W, host)
		if l.M != nil {
			l.initMagnitude()
		}
	}
	return a, nil
}

// LoadOptions adjust how Load installs an adapter.
type LoadOptions struct {
	// Dropout, if not nil, replaces the file's lora_dropout (a training
	// hyper-parameter that does not change the adapter's function).
	Dropout *float64
	// Seed seeds the dropout masks.
	Seed uint64
	// Frozen loads the adapter for inference: its tensors do not train.
	Frozen bool
	// BaseModel, if set, replaces the file's base_model_name_or_path (the
	// model the adapter is now trained on).
	BaseModel string
}

// Load installs the LoRA adapter of a PEFT folder: it reads
// adapter_config.json (peft_type LORA), wraps the modules its
// target_modules name, freezes the base and uploads the factors (and
// DoRA magnitudes) from adapter_model.safetensors. Every targeted module
// must have its tensors with the right shapes and the file may hold
// nothing else; errors name the tensor. On error the model is left as it
// was.
func Load(m model.Model, dir string, opt LoadOptions) (*Adapter, error) {
	var pc PeftConfig
	if err := peft.ReadConfig(dir, PeftType, &pc); err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	cfg, err := configFromPeft(&pc, dir+"/"+peft.ConfigFile)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	if opt.Dropout != nil {
		cfg.Dropout = *opt.Dropout
	}
	cfg.Seed = opt.Seed
	if opt.BaseModel != "" {
		cfg.BaseModel = opt.BaseModel
	}
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	w, err := peft.ReadWeights(dir)
	if err != nil {
		return nil, fmt.Errorf("lora: %w", err)
	}
	before := params.Snapshot(m)
	a, err := install(m, cfg)
	if err != nil {
		return nil, err
	}
	if pc.TargetModules.List != nil {
		a.targets = append([]string(nil), pc.TargetModules.List...)
	}
	fail := func(err error) (*Adapter, error) {
		a.Remove()
		before.Restore()
		return nil, fmt.Errorf("lora: %w", err)
	}
	for _, l := range a.layers {
		if err := w.Load(l.A); err != nil {
			return fail(err)
		}
		if err := w.Load(l.B); err != nil {
			return fail(err)
		}
		if l.M != nil {
			name := l.M.Name
			if !w.Has(name) && w.Has(key(l.Path, leafMAlt)) {
				name = key(l.Path, leafMAlt)
			}
			data, err := w.Take(name, l.out)
			if err != nil {
				return fail(err)
			}
			l.be.Upload(l.M.W, data)
		}
	}
	what := fmt.Sprintf("the LoRA tensors of the %d modules target_modules %s selects", len(a.layers), describeTargets(cfg))
	if err := w.CheckAllUsed(what); err != nil {
		return fail(err)
	}
	if opt.Frozen {
		a.SetTrainable(false)
	}
	return a, nil
}

// ReadConfig reads the LoRA configuration of a PEFT adapter folder.
func ReadConfig(dir string) (*PeftConfig, Config, error) {
	var pc PeftConfig
	if err := peft.ReadConfig(dir, PeftType, &pc); err != nil {
		return nil, Config{}, fmt.Errorf("lora: %w", err)
	}
	cfg, err := configFromPeft(&pc, dir+"/"+peft.ConfigFile)
	if err != nil {
		return nil, Config{}, fmt.Errorf("lora: %w", err)
	}
	return &pc, cfg, nil
}

// install resolves the targets, freezes the model and wraps every target
// in a zero-initialised Linear.
func install(m model.Model, cfg Config) (*Adapter, error) {
	paths, names, err := resolve(m, cfg)
	if err != nil {
		return nil, err
	}
	// The rank comes from an option or a file: check it against the
	// modules before allocating r·(in+out) values per module.
	for _, path := range paths {
		base, _ := m.Linear(path)
		if most := min(base.In(), base.Out()); cfg.R > most {
			return nil, fielderr.Errorf("R", "%d exceeds the rank of %s's %d×%d weight: use at most %d", cfg.R, path, base.Out(), base.In(), most)
		}
	}
	a := &Adapter{cfg: cfg, m: m, targets: names}
	before := params.Snapshot(m)
	params.SetTrainable(m.Params(), false)
	fail := func(err error) (*Adapter, error) {
		a.Remove()
		before.Restore()
		return nil, err
	}
	scale := float32(cfg.Scaling())
	for i, path := range paths {
		base, _ := m.Linear(path)
		l, err := newLinear(path, base, cfg.R, scale, float32(cfg.Dropout), cfg.DoRA, cfg.Seed+uint64(i)*0x9e3779b97f4a7c15)
		if err != nil {
			return fail(err)
		}
		if a.sc == nil {
			a.sc = l.sc
		}
		l.sc = a.sc
		if l.dense != nil && l.dense.Conv1D {
			a.fanInFanOut = true
		}
		if err := m.ReplaceLinear(path, l); err != nil {
			return fail(fmt.Errorf("lora: %w", err))
		}
		a.layers = append(a.layers, l)
	}
	return a, nil
}

// resolve returns the paths of the Linear modules cfg targets (in forward
// order) and the target_modules list to save: the given names, or the
// resolved module names for all-linear (as PEFT saves them).
func resolve(m model.Model, cfg Config) (paths, names []string, err error) {
	allLinear := len(cfg.Targets) == 1 && cfg.Targets[0] == AllLinear
	var re *regexp.Regexp
	if cfg.TargetRegex != "" {
		if re, err = regexp.Compile("^(?:" + cfg.TargetRegex + ")$"); err != nil {
			return nil, nil, fmt.Errorf("lora: target_modules %q is not a regular expression gotune understands: %w", cfg.TargetRegex, err)
		}
	}
	matched := map[string]bool{}
	leaves := map[string]bool{}
	known := map[string]bool{}
	for _, nm := range m.Modules() {
		leaf := nm.Name[strings.LastIndexByte(nm.Name, '.')+1:]
		lin, isLinear := m.Linear(nm.Name)
		if isLinear && nm.Name != "lm_head" {
			known[leaf] = true
		}
		var hit []string
		switch {
		case re != nil:
			if re.MatchString(nm.Name) {
				hit = []string{cfg.TargetRegex}
			}
		case allLinear:
			if isLinear && nm.Name != "lm_head" {
				hit = []string{AllLinear}
			}
		default:
			for _, t := range cfg.Targets {
				if nm.Name == t || strings.HasSuffix(nm.Name, "."+t) {
					hit = append(hit, t)
				}
			}
		}
		if len(hit) == 0 {
			continue
		}
		if !isLinear {
			return nil, nil, fmt.Errorf("lora: target %q selects %s, a %T: LoRA wraps linear layers only", hit[0], nm.Name, nm.Module)
		}
		if _, wrapped := lin.(*Linear); wrapped {
			return nil, nil, fmt.Errorf("lora: %s already has a LoRA adapter", nm.Name)
		}
		for _, t := range hit {
			matched[t] = true
		}
		leaves[leaf] = true
		paths = append(paths, nm.Name)
	}
	if len(paths) == 0 || (re == nil && !allLinear && len(matched) < len(cfg.Targets)) {
		var missing []string
		for _, t := range cfg.Targets {
			if !matched[t] {
				missing = append(missing, t)
			}
		}
		if re != nil {
			missing = []string{cfg.TargetRegex}
		}
		return nil, nil, fmt.Errorf("lora: target module(s) %s match no module of this %s model (its linear layers: %s)",
			strings.Join(quote(missing), ", "), m.Config().Arch, strings.Join(sortedKeys(known), ", "))
	}
	switch {
	case re != nil:
		names = nil
	case allLinear:
		names = sortedKeys(leaves)
	default:
		names = sortedKeys(toSet(cfg.Targets))
	}
	return paths, names, nil
}

// Config returns the adapter's hyper-parameters.
func (a *Adapter) Config() Config { return a.cfg }

// Layers returns the installed LoRA layers in forward order.
func (a *Adapter) Layers() []*Linear { return append([]*Linear(nil), a.layers...) }

// Params returns the adapter's own tensors (A, B and DoRA magnitudes of
// every layer), in forward order: what adapter_model.safetensors holds.
func (a *Adapter) Params() []*engine.Param {
	var out []*engine.Param
	for _, l := range a.layers {
		out = append(out, l.AdapterParams()...)
	}
	return out
}

// DownProjections returns every layer's A factor ([r, in], lora_A), in
// forward order: the subspace O-LoRA keeps later tasks orthogonal to.
func (a *Adapter) DownProjections() []*engine.Param {
	out := make([]*engine.Param, len(a.layers))
	for i, l := range a.layers {
		out[i] = l.A
	}
	return out
}

// SetTrainable marks the adapter's tensors trainable or frozen.
func (a *Adapter) SetTrainable(on bool) { params.SetTrainable(a.Params(), on) }

// PeftConfig returns the adapter_config.json content Save writes.
func (a *Adapter) PeftConfig() *PeftConfig {
	return a.cfg.peftConfig(a.targets, a.fanInFanOut)
}

// Save writes the adapter as a PEFT folder: adapter_config.json and
// adapter_model.safetensors (float32, PEFT's tensor names).
func (a *Adapter) Save(dir string) error {
	if a.Merged() {
		return fmt.Errorf("lora: cannot save an adapter while it is merged into the base weights")
	}
	if err := peft.Save(dir, a.PeftConfig(), a.Params()); err != nil {
		return fmt.Errorf("lora: %w", err)
	}
	return nil
}

// Merged reports whether the layers are merged into the base weights.
func (a *Adapter) Merged() bool {
	return len(a.layers) > 0 && a.layers[0].merged
}

// Merge folds every layer's update into its base weight (see
// Linear.Merge); the model then computes the same function with the
// cost of the base model.
func (a *Adapter) Merge() error {
	for i, l := range a.layers {
		if err := l.Merge(); err != nil {
			for _, done := range a.layers[:i] {
				done.Unmerge()
			}
			return err
		}
	}
	return nil
}

// Unmerge undoes Merge.
func (a *Adapter) Unmerge() error {
	for _, l := range a.layers {
		if err := l.Unmerge(); err != nil {
			return err
		}
	}
	return nil
}

// Remove puts the base modules back in the model (keeping whatever the
// base weights hold, merged or not) and frees the layers' buffers. The
// adapter is unusable afterwards. The base weights stay frozen.
func (a *Adapter) Remove() {
	if a.removed {
		return
	}
	a.removed = true
	for _, l := range a.layers {
		if cur, ok := a.m.Linear(l.Path); ok && cur == model.Linear(l) {
			// Cannot fail: the base maps the same features.
			_ = a.m.ReplaceLinear(l.Path, l.Base)
		}
		l.Release()
	}
	if a.sc != nil {
		a.sc.release()
	}
}

// MergeAndRemove merges the adapter into the base weights and unwraps
// it, leaving a plain model (whose Save writes the merged checkpoint).
func (a *Adapter) MergeAndRemove() error {
	if err := a.Merge(); err != nil {
		return err
	}
	for _, l := range a.layers {
		if l.saved != nil {
			l.be.Free(l.saved)
			l.saved = nil
		}
	}
	a.Remove()
	return nil
}

func describeTargets(c Config) string {
	if c.TargetRegex != "" {
		return fmt.Sprintf("%q", c.TargetRegex)
	}
	return "[" + strings.Join(quote(c.Targets), ", ") + "]"
}

func quote(s []string) []string {
	out := make([]string, len(s))
	for i, v := range s {
		out[i] = fmt.Sprintf("%q", v)
	}
	return out
}

func toSet(s []string) map[string]bool {
	out := map[string]bool{}
	for _, v := range s {
		out[v] = true
	}
	return out
}

// sortedKeys returns a set's members in order, for stable names in
// files and errors.
func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }

// TargetPaths returns the paths of the modules cfg targets in m, in
// forward order, without changing m.
func TargetPaths(m model.Model, cfg Config) ([]string, error) {
	paths, _, err := resolve(m, cfg)
	return paths, err
}

// DefaultTargets returns PEFT's default target modules for m's
// architecture (its descriptor's LoRATargets): the query and value
// projections, or the fused projection that holds them.
func DefaultTargets(m model.Model) []string {
	return append([]string(nil), m.Family().LoRATargets...)
}
