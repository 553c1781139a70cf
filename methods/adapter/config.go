package adapter

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/methods/peft"
)

// PeftType is adapter_config.json's peft_type for bottleneck adapters.
// PEFT has no such method: the type and the file are gotune's own.
const PeftType = "BOTTLENECK"

// Variant says where a model's bottleneck adapters sit.
type Variant string

const (
	// Houlsby puts an adapter on the attention sub-layer's output and one
	// on the MLP's, each before its residual add: y = h + f(h).
	Houlsby Variant = "houlsby"
	// Pfeiffer puts one adapter on the MLP output only: y = h + f(h).
	Pfeiffer Variant = "pfeiffer"
	// Parallel runs one adapter beside the MLP, on the MLP's normalised
	// input xn: y = mlp(xn) + f(xn).
	Parallel Variant = "parallel"
)

// Variants lists the known variants.
var Variants = []Variant{Houlsby, Pfeiffer, Parallel}

// activations maps the names of --adapter-activation (Hugging Face's
// ACT2FN names) to backend activations.
var activations = map[string]engine.Act{
	"relu": engine.ActReLU,
	"gelu": engine.ActGELU, // exact (erf) GELU, as torch's F.gelu
	"silu": engine.ActSiLU,
	"tanh": engine.ActTanh,
}

// Activations returns the accepted activation names, sorted.
func Activations() []string {
	out := make([]string, 0, len(activations))
	for k := range activations {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Config holds a bottleneck adapter's hyper-parameters.
type Config struct {
	// Variant is Houlsby, Pfeiffer or Parallel.
	Variant Variant
	// ReductionFactor sets the bottleneck to hidden/ReductionFactor
	// (rounded down, at least 1) when BottleneckSize is 0.
	ReductionFactor int
	// BottleneckSize, when positive, is the bottleneck width itself.
	BottleneckSize int
	// Activation is the non-linearity between the projections: relu,
	// gelu (exact), silu or tanh.
	Activation string
	// Scaling multiplies the adapter's output (up-projection and its
	// bias).
	Scaling float64
	// Layers are the transformer layers that get adapters; nil means
	// every layer.
	Layers []int
	// Seed seeds the initialisation of the down-projections.
	Seed uint64
	// BaseModel is recorded as base_model_name_or_path.
	BaseModel string
}

// Validate reports the first invalid field.
func (c *Config) Validate() error {
	switch c.Variant {
	case Houlsby, Pfeiffer, Parallel:
	default:
		return fmt.Errorf("unknown adapter variant %q (want houlsby, pfeiffer or parallel)", c.Variant)
	}
	if c.BottleneckSize < 0 {
		return fmt.Errorf("bottleneck size must be positive, got %d", c.BottleneckSize)
	}
	if c.BottleneckSize == 0 && c.ReductionFactor < 1 {
		return fmt.Errorf("the reduction factor must be at least 1, got %d", c.ReductionFactor)
	}
	if _, ok := activations[c.Activation]; !ok {
		return fmt.Errorf("unknown adapter activation %q (want %s)", c.Activation, strings.Join(Activations(), ", "))
	}
	if c.Scaling != c.Scaling || c.Scaling == 0 {
		return fmt.Errorf("the adapter scaling must be a non-zero number, got %v", c.Scaling)
	}
	seen := map[int]bool{}
	for _, l := range c.Layers {
		if seen[l] {
			return fmt.Errorf("layer %d is listed twice in the adapter layers", l)
		}
		seen[l] = true
	}
	return nil
}

// Bottleneck returns the bottleneck width for a model of the given hidden
// size.
func (c *Config) Bottleneck(hidden int) int {
	if c.BottleneckSize > 0 {
		return c.BottleneckSize
	}
	return max(hidden/c.ReductionFactor, 1)
}

// sites returns the sub-layers a variant hooks, in forward order.
func (c *Config) sites() []site {
	if c.Variant == Houlsby {
		return []site{siteAttn, siteMLP}
	}
	return []site{siteMLP}
}

// PeftConfig is adapter_config.json for peft_type BOTTLENECK, the
// format's definition: the keys PEFT's configurations share
// (base_model_name_or_path, inference_mode, peft_type, task_type) and the
// adapter's own.
type PeftConfig struct {
	// AdapterVariant is "houlsby", "pfeiffer" or "parallel".
	AdapterVariant string `json:"adapter_variant"`
	// BaseModelNameOrPath is the model the adapter was trained on.
	BaseModelNameOrPath *string `json:"base_model_name_or_path"`
	// BottleneckSize is the width of the down-projection's output.
	BottleneckSize int `json:"bottleneck_size"`
	// InferenceMode is true in saved files (as PEFT writes it).
	InferenceMode bool `json:"inference_mode"`
	// NonLinearity is the activation: relu, gelu (exact), silu or tanh.
	NonLinearity string `json:"non_linearity"`
	// PeftType is "BOTTLENECK".
	PeftType string `json:"peft_type"`
	// ReductionFactor is hidden/bottleneck as configured.
	ReductionFactor int `json:"reduction_factor"`
	// Scaling multiplies the adapter's output.
	Scaling peft.Float `json:"scaling"`
	// TargetLayers lists the layers with adapters; null means all.
	TargetLayers []int `json:"target_layers"`
	// TaskType is "CAUSAL_LM".
	TaskType string `json:"task_type"`
}

// peftConfig returns the file content for c on a model of hidden size D.
func (c *Config) peftConfig(hidden int) *PeftConfig {
	var base *string
	if c.BaseModel != "" {
		b := c.BaseModel
		base = &b
	}
	return &PeftConfig{
		AdapterVariant: string(c.Variant), BaseModelNameOrPath: base,
		BottleneckSize: c.Bottleneck(hidden), InferenceMode: true,
		NonLinearity: c.Activation, PeftType: PeftType, ReductionFactor: c.ReductionFactor,
		Scaling: peft.Float(c.Scaling), TargetLayers: c.Layers, TaskType: peft.TaskCausalLM,
	}
}

// ReadConfig reads the bottleneck adapter configuration of an adapter
// folder.
func ReadConfig(dir string) (Config, error) {
	var pc PeftConfig
	if err := peft.ReadConfig(dir, PeftType, &pc); err != nil {
		return Config{}, fmt.Errorf("adapter: %w", err)
	}
	path := filepath.Join(dir, peft.ConfigFile)
	if pc.BottleneckSize <= 0 {
		return Config{}, fmt.Errorf("adapter: %s: bottleneck_size must be positive, got %d", path, pc.BottleneckSize)
	}
	c := Config{
		Variant: Variant(pc.AdapterVariant), ReductionFactor: pc.ReductionFactor,
		BottleneckSize: pc.BottleneckSize, Activation: pc.NonLinearity,
		Scaling: float64(pc.Scaling), Layers: pc.TargetLayers,
	}
	if pc.BaseModelNameOrPath != nil {
		c.BaseModel = *pc.BaseModelNameOrPath
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("adapter: %s: %w", path, err)
	}
	return c, nil
}
