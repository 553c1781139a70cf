package adapter

import (
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/methods/peft"
)

// PeftType is adapter_config.json's peft_type for bottleneck adapters.
// PEFT has no such method: the type and the file are gotune's own.
const PeftType = "BOTTLENECK"

// Variant names a placement of a model's bottleneck adapters. The first
// three are AdapterHub's configurations (the adapters library,
// configuration/adapter_config.py), on every model family; the last two are
// gotune's earlier forms, kept under their own names.
type Variant string

const (
	// Houlsby is AdapterHub's double_seq_bn (Houlsby et al., 2019): an
	// adapter on the attention output and one on the MLP output, each
	// reading the sub-layer output h: x + h + f(h).
	Houlsby Variant = "houlsby"
	// Pfeiffer is AdapterHub's seq_bn (Pfeiffer et al., 2020;
	// original_ln_before=True): one adapter after the MLP reading the
	// residual stream after the add: x + h + f(x + h).
	Pfeiffer Variant = "pfeiffer"
	// Parallel is AdapterHub's par_bn (He et al., 2021): one adapter
	// beside the MLP reading the MLP block's un-normalised input x:
	// x + h + f(x).
	Parallel Variant = "parallel"
	// Series is one adapter after the MLP reading its output: x + h + f(h)
	// (Houlsby without the attention adapter; LLM-Adapters' series
	// adapter). It was gotune's "pfeiffer" before that name followed
	// AdapterHub.
	Series Variant = "series"
	// ParallelNormed is one adapter beside the MLP reading the MLP's
	// normalised input xn: x + h + f(xn) (LLM-Adapters' parallel adapter).
	// It was gotune's "parallel" before that name followed AdapterHub;
	// AdapterHub has no equivalent.
	ParallelNormed Variant = "parallel-normed"
)

// Variants lists the known variants.
var Variants = []Variant{Houlsby, Pfeiffer, Parallel, Series, ParallelNormed}

// Input is what an adapter reads, recorded as adapter_input.
type Input string

const (
	// InputOutput is the sub-layer's output h.
	InputOutput Input = "output"
	// InputOutputResidual is the residual stream after the add, x + h.
	InputOutputResidual Input = "output+residual"
	// InputResidual is the sub-layer block's un-normalised input x (the
	// residual stream before the add).
	InputResidual Input = "residual"
	// InputNormed is the sub-layer's normalised input xn.
	InputNormed Input = "normed"
)

// Init names an initialisation of the adapter's projections, as
// AdapterHub's init_weights (biases always start at zero).
type Init string

const (
	// InitBert draws both projections' weights from N(0, 0.02²)
	// (AdapterHub's "bert", its default).
	InitBert Init = "bert"
	// InitMAM draws the down-projection as nn.Linear does
	// (kaiming-uniform, U(±1/sqrt(hidden))) and zeroes the up-projection,
	// so the adapted model starts as the base model (AdapterHub's
	// "mam_adapter").
	InitMAM Init = "mam_adapter"
	// InitHoulsby draws both weights from N(0, 0.01²) truncated to
	// ±0.02 (AdapterHub's "houlsby").
	InitHoulsby Init = "houlsby"
)

// Inits lists the known initialisations.
var Inits = []Init{InitBert, InitMAM, InitHoulsby}

// spec is what a variant fixes: where its adapters sit, what they read,
// its AdapterHub counterpart and its default hyper-parameters.
type spec struct {
	attn, mlp bool   // mh_adapter, output_adapter
	input     Input  // what every adapter of the variant reads
	hub       string // AdapterHub's configuration name; "" for none
	// AdapterHub's structural switches (nil for a variant it cannot
	// express).
	lnBefore, lnAfter, residualBeforeLN, isParallel *bool
	// Defaults.
	reduction  int
	activation string
	scaling    float64
	init       Init
}

func boolPtr(b bool) *bool { return &b }

// specs holds every variant's spec. AdapterHub's defaults:
// DoubleSeqBnConfig (swish, 16), SeqBnConfig (relu, 16), ParBnConfig
// (relu, 2, scaling 4, mam_adapter), init_weights "bert" otherwise. The
// former forms keep gotune's former defaults (relu, 16, identity init).
var specs = map[Variant]spec{
	Houlsby: {attn: true, mlp: true, input: InputOutput, hub: "double_seq_bn",
		lnBefore: boolPtr(false), lnAfter: boolPtr(true), residualBeforeLN: boolPtr(true), isParallel: boolPtr(false),
		reduction: 16, activation: "swish", scaling: 1, init: InitBert},
	Pfeiffer: {mlp: true, input: InputOutputResidual, hub: "seq_bn",
		lnBefore: boolPtr(true), lnAfter: boolPtr(true), residualBeforeLN: boolPtr(true), isParallel: boolPtr(false),
		reduction: 16, activation: "relu", scaling: 1, init: InitBert},
	Parallel: {mlp: true, input: InputResidual, hub: "par_bn",
		lnBefore: boolPtr(false), lnAfter: boolPtr(true), residualBeforeLN: boolPtr(true), isParallel: boolPtr(true),
		reduction: 2, activation: "relu", scaling: 4, init: InitMAM},
	Series: {mlp: true, input: InputOutput,
		lnBefore: boolPtr(false), lnAfter: boolPtr(true), residualBeforeLN: boolPtr(true), isParallel: boolPtr(false),
		reduction: 16, activation: "relu", scaling: 1, init: InitMAM},
	ParallelNormed: {mlp: true, input: InputNormed,
		reduction: 16, activation: "relu", scaling: 1, init: InitMAM},
}

// activations maps the names of --adapter-activation (Hugging Face's
// ACT2FN names) to backend activations.
var activations = map[string]engine.Act{
	"relu":  engine.ActReLU,
	"gelu":  engine.ActGELU, // exact (erf) GELU, as torch's F.gelu
	"silu":  engine.ActSiLU,
	"swish": engine.ActSiLU, // ACT2FN's name for SiLU, AdapterHub's Houlsby default
	"tanh":  engine.ActTanh,
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

// variantNames returns the variants as "a, b or c".
func variantNames() string {
	names := make([]string, len(Variants))
	for i, v := range Variants {
		names[i] = string(v)
	}
	return strings.Join(names[:len(names)-1], ", ") + " or " + names[len(names)-1]
}

// Config holds a bottleneck adapter's hyper-parameters. Zero values of
// ReductionFactor (with BottleneckSize 0), Activation, Scaling and Init
// mean the variant's default (see Defaults).
type Config struct {
	// Variant is one of Variants.
	Variant Variant
	// ReductionFactor sets the bottleneck to hidden/ReductionFactor
	// (rounded down, at least 1) when BottleneckSize is 0.
	ReductionFactor int
	// BottleneckSize, when positive, is the bottleneck width itself.
	BottleneckSize int
	// Activation is the non-linearity between the projections: relu,
	// gelu (exact), silu (= swish) or tanh.
	Activation string
	// Scaling multiplies the adapter's output (up-projection and its
	// bias).
	Scaling float64
	// Init is the initialisation Apply uses.
	Init Init
	// Layers are the transformer layers that get adapters; nil means
	// every layer.
	Layers []int
	// Seed seeds the initialisation.
	Seed uint64
	// BaseModel is recorded as base_model_name_or_path.
	BaseModel string
}

// Defaults returns variant v's configuration with AdapterHub's defaults
// (gotune's former ones for Series and ParallelNormed); the zero Config
// for an unknown variant.
func Defaults(v Variant) Config {
	s, ok := specs[v]
	if !ok {
		return Config{Variant: v}
	}
	return Config{Variant: v, ReductionFactor: s.reduction, Activation: s.activation, Scaling: s.scaling, Init: s.init}
}

// WithDefaults returns c with its zero hyper-parameters replaced by the
// variant's defaults.
func (c Config) WithDefaults() Config {
	d := Defaults(c.Variant)
	if c.ReductionFactor == 0 && c.BottleneckSize == 0 {
		c.ReductionFactor = d.ReductionFactor
	}
	if c.Activation == "" {
		c.Activation = d.Activation
	}
	if c.Scaling == 0 {
		c.Scaling = d.Scaling
	}
	if c.Init == "" {
		c.Init = d.Init
	}
	return c
}

// Validate reports the first invalid field as a *fielderr.Error.
func (c *Config) Validate() error {
	if _, ok := specs[c.Variant]; !ok {
		return fielderr.Errorf("Variant", "%q: unknown adapter variant (want %s)", c.Variant, variantNames())
	}
	if c.BottleneckSize < 0 {
		return fielderr.Errorf("BottleneckSize", "must not be negative, got %d", c.BottleneckSize)
	}
	if c.BottleneckSize == 0 && c.ReductionFactor < 1 {
		return fielderr.Errorf("ReductionFactor", "must be at least 1, got %d", c.ReductionFactor)
	}
	if _, ok := activations[c.Activation]; !ok {
		return fielderr.Errorf("Activation", "%q: unknown adapter activation (want %s)", c.Activation, strings.Join(Activations(), ", "))
	}
	if c.Scaling != c.Scaling || c.Scaling == 0 {
		return fielderr.Errorf("Scaling", "must be a non-zero number, got %v", c.Scaling)
	}
	switch c.Init {
	case InitBert, InitMAM, InitHoulsby:
	default:
		return fielderr.Errorf("Init", "%q: unknown adapter initialisation (want bert, mam_adapter or houlsby)", c.Init)
	}
	seen := map[int]bool{}
	for _, l := range c.Layers {
		if seen[l] {
			return fielderr.Errorf("Layers", "lists layer %d twice", l)
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
	s := specs[c.Variant]
	var out []site
	if s.attn {
		out = append(out, siteAttn)
	}
	if s.mlp {
		out = append(out, siteMLP)
	}
	return out
}

// input returns what the variant's adapters read.
func (c *Config) input() Input { return specs[c.Variant].input }

// PeftConfig is adapter_config.json for peft_type BOTTLENECK, the
// format's definition: the keys PEFT's configurations share
// (base_model_name_or_path, inference_mode, peft_type, task_type), the
// adapter's hyper-parameters and the variant's full structure, with
// AdapterHub's key names where it has them.
type PeftConfig struct {
	// AdapterInput is what the adapters read: "output" (h),
	// "output+residual" (x + h), "residual" (x) or "normed" (xn).
	AdapterInput string `json:"adapter_input,omitempty"`
	// AdapterVariant is one of Variants.
	AdapterVariant string `json:"adapter_variant"`
	// AdapterhubConfig is AdapterHub's name of the variant
	// ("double_seq_bn", "seq_bn", "par_bn"), null when it has none.
	AdapterhubConfig *string `json:"adapterhub_config,omitempty"`
	// BaseModelNameOrPath is the model the adapter was trained on.
	BaseModelNameOrPath *string `json:"base_model_name_or_path"`
	// BottleneckSize is the width of the down-projection's output.
	BottleneckSize int `json:"bottleneck_size"`
	// InferenceMode is true in saved files (as PEFT writes it).
	InferenceMode bool `json:"inference_mode"`
	// InitWeights is the initialisation the adapter was created with.
	InitWeights string `json:"init_weights,omitempty"`
	// IsParallel is AdapterHub's is_parallel.
	IsParallel *bool `json:"is_parallel,omitempty"`
	// MhAdapter is true when an adapter follows each attention sub-layer.
	MhAdapter *bool `json:"mh_adapter,omitempty"`
	// NonLinearity is the activation: relu, gelu (exact), silu, swish or
	// tanh.
	NonLinearity string `json:"non_linearity"`
	// OriginalLnAfter is AdapterHub's original_ln_after.
	OriginalLnAfter *bool `json:"original_ln_after,omitempty"`
	// OriginalLnBefore is AdapterHub's original_ln_before.
	OriginalLnBefore *bool `json:"original_ln_before,omitempty"`
	// OutputAdapter is true when an adapter follows (or, parallel, runs
	// beside) each MLP sub-layer.
	OutputAdapter *bool `json:"output_adapter,omitempty"`
	// PeftType is "BOTTLENECK".
	PeftType string `json:"peft_type"`
	// ReductionFactor is hidden/bottleneck as configured.
	ReductionFactor int `json:"reduction_factor"`
	// ResidualBeforeLN is AdapterHub's residual_before_ln.
	ResidualBeforeLN *bool `json:"residual_before_ln,omitempty"`
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
	s := specs[c.Variant]
	var hub *string
	if s.hub != "" {
		hub = &s.hub
	}
	return &PeftConfig{
		AdapterInput: string(s.input), AdapterVariant: string(c.Variant), AdapterhubConfig: hub,
		BaseModelNameOrPath: base, BottleneckSize: c.Bottleneck(hidden), InferenceMode: true,
		InitWeights: string(c.Init), IsParallel: s.isParallel, MhAdapter: boolPtr(s.attn),
		NonLinearity: c.Activation, OriginalLnAfter: s.lnAfter, OriginalLnBefore: s.lnBefore,
		OutputAdapter: boolPtr(s.mlp), PeftType: PeftType, ReductionFactor: c.ReductionFactor,
		ResidualBeforeLN: s.residualBeforeLN, Scaling: peft.Float(c.Scaling), TargetLayers: c.Layers,
		TaskType: peft.TaskCausalLM,
	}
}

// formerVariants maps the variant names of folders written before
// adapter_input was recorded to what those folders compute.
var formerVariants = map[Variant]Variant{Pfeiffer: Series, Parallel: ParallelNormed, Houlsby: Houlsby}

// ReadConfig reads the bottleneck adapter configuration of an adapter
// folder. A folder without adapter_input was written before "pfeiffer"
// and "parallel" followed AdapterHub; its variant is read as what it
// computes (Series, ParallelNormed). The recorded structure must be the
// variant's.
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
		Scaling: float64(pc.Scaling), Init: Init(pc.InitWeights), Layers: pc.TargetLayers,
	}
	if pc.AdapterInput == "" {
		if v, ok := formerVariants[c.Variant]; ok {
			c.Variant = v
		}
	}
	if c.Init == "" {
		c.Init = Defaults(c.Variant).Init // not used by Load; keeps Validate meaningful
	}
	if pc.BaseModelNameOrPath != nil {
		c.BaseModel = *pc.BaseModelNameOrPath
	}
	if err := c.Validate(); err != nil {
		return Config{}, fmt.Errorf("adapter: %s: %w", path, err)
	}
	if pc.AdapterInput != "" {
		if err := checkStructure(&pc, c.peftConfig(0)); err != nil {
			return Config{}, fmt.Errorf("adapter: %s: %w", path, err)
		}
	}
	return c, nil
}

// checkStructure reports the first structural key of got that differs
// from the variant's (want).
func checkStructure(got, want *PeftConfig) error {
	str := func(p *string) string {
		if p == nil {
			return "null"
		}
		return fmt.Sprintf("%q", *p)
	}
	bl := func(p *bool) string {
		if p == nil {
			return "null"
		}
		return fmt.Sprint(*p)
	}
	checks := []struct{ key, got, want string }{
		{"adapter_input", fmt.Sprintf("%q", got.AdapterInput), fmt.Sprintf("%q", want.AdapterInput)},
		{"adapterhub_config", str(got.AdapterhubConfig), str(want.AdapterhubConfig)},
		{"mh_adapter", bl(got.MhAdapter), bl(want.MhAdapter)},
		{"output_adapter", bl(got.OutputAdapter), bl(want.OutputAdapter)},
		{"original_ln_before", bl(got.OriginalLnBefore), bl(want.OriginalLnBefore)},
		{"original_ln_after", bl(got.OriginalLnAfter), bl(want.OriginalLnAfter)},
		{"residual_before_ln", bl(got.ResidualBeforeLN), bl(want.ResidualBeforeLN)},
		{"is_parallel", bl(got.IsParallel), bl(want.IsParallel)},
	}
	for _, k := range checks {
		if k.got != k.want {
			return fmt.Errorf("%s is %s, but adapter_variant %q means %s", k.key, k.got, got.AdapterVariant, k.want)
		}
	}
	return nil
}
