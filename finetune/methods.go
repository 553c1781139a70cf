package finetune

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/adapter"
	"github.com/gotune/gotune/methods/freeze"
	"github.com/gotune/gotune/methods/lora"
	"github.com/gotune/gotune/methods/peft"
	"github.com/gotune/gotune/methods/prompt"
)

// Method is a fine-tuning method: what trains, and what saves the result.
type Method struct {
	// Name is the method's name ("full", "lora", ...).
	Name string
	// PeftTypes are the adapter_config.json peft_type values of the
	// adapter folders the method writes (none: it trains the model's own
	// weights); LoadAdapter dispatches on them.
	PeftTypes []string
	// Apply prepares a freshly loaded model: it marks what trains (adding
	// modules if the method has any) and returns what saves the result;
	// nil means the whole model (full weights).
	Apply func(m model.Model, o *MethodOptions) (train.Saver, error)
	// Load installs an adapter folder of the method on m for inference
	// (its tensors frozen); nil for methods without adapters.
	Load func(m model.Model, dir string) error
	// VirtualTokens marks methods that put trained tokens in front of
	// every sequence (prompt tuning, P-Tuning). Packed examples would
	// share one set of them (and only the first would sit right after
	// them), so JobOptions.Packing is refused with such a method.
	VirtualTokens bool
}

// TrainsAdapter reports whether the method trains an adapter (saved as a
// PEFT folder) rather than the model's own weights.
func (m *Method) TrainsAdapter() bool { return len(m.PeftTypes) > 0 }

// MethodOptions are the settings of the methods (each reads its own
// field) and what they share. DefaultMethodOptions gives the defaults.
type MethodOptions struct {
	// Seed seeds the methods' initialisation.
	Seed uint64
	// BaseModel is the base model's folder: recorded in adapter folders
	// (base_model_name_or_path), and where prompt tuning's InitText is
	// tokenized. Run sets it to JobOptions.Model.
	BaseModel string
	// InitAdapter, if set, is a PEFT adapter folder the method starts
	// from instead of a fresh initialisation; its configuration defines
	// the adapter, and options in Explicit must agree with it.
	InitAdapter string

	LoRA       LoRAOptions
	Freeze     FreezeOptions
	Bottleneck BottleneckOptions
	Prompt     PromptOptions
	Prefix     PrefixOptions

	// Explicit lists the options given on purpose (see Explicit).
	Explicit Explicit
	// Names names options in errors and messages (see Names).
	Names Names
}

// LoRAOptions configure method lora (LoRA, rsLoRA, DoRA).
type LoRAOptions struct {
	Rank           int
	Alpha, Dropout float64
	// Targets are module names (or lora.AllLinear); empty: PEFT's
	// default for the architecture.
	Targets      []string
	RSLoRA, DoRA bool
	Init         lora.Init
}

// FreezeOptions configure method freeze (see freeze.Config).
type FreezeOptions struct {
	TrainableLayers int
	Modules, Extra  []string
}

// BottleneckOptions configure method adapter (bottleneck adapters; see
// adapter.Config: zero values take the variant's defaults).
type BottleneckOptions struct {
	Variant         string
	ReductionFactor int
	Activation      string
	Scaling         float64
	Init            string
	// Layers get adapters (0-based); nil: every layer.
	Layers []int
}

// PromptOptions configure methods prompt and ptuning, and the virtual
// tokens and encoder width method prefix shares with them.
type PromptOptions struct {
	NumVirtualTokens int
	// EncoderHidden is the prompt encoder's hidden size (0: the model's).
	EncoderHidden int
	// Init and InitText: prompt tuning's initialisation.
	Init     string
	InitText string
	// Encoder (mlp or lstm) and EncoderLayers: P-Tuning's encoder.
	Encoder       string
	EncoderLayers int
}

// PrefixOptions configure method prefix.
type PrefixOptions struct {
	// Layers get prefixes (0-based); nil: every layer.
	Layers     []int
	Projection bool
}

// DefaultMethodOptions returns the methods' defaults (PEFT's where PEFT
// has the method).
func DefaultMethodOptions() MethodOptions {
	return MethodOptions{
		LoRA:       LoRAOptions{Rank: 8, Alpha: 16, Init: lora.InitKaiming},
		Freeze:     FreezeOptions{TrainableLayers: 2, Modules: []string{freeze.All}},
		Bottleneck: BottleneckOptions{Variant: string(adapter.Houlsby)},
		Prompt:     PromptOptions{NumVirtualTokens: 20, Init: string(prompt.InitRandom), Encoder: "mlp", EncoderLayers: 2},
	}
}

// name returns how messages name option.
func (o *MethodOptions) name(option string) string { return o.Names.Of(option) }

// given reports whether option was given explicitly.
func (o *MethodOptions) given(option string) bool { return o.Explicit[option] }

// Registry is a set of methods by name.
type Registry map[string]*Method

// Methods returns a new registry of gotune's built-in methods: full,
// freeze, lora, adapter, prompt, ptuning, prefix. Add to it or remove
// from it freely: it is the caller's.
func Methods() Registry {
	r := Registry{}
	for _, m := range []*Method{fullMethod(), freezeMethod(), loraMethod(), bottleneckMethod(), promptTuningMethod(), pTuningMethod(), prefixMethod()} {
		r[m.Name] = m
	}
	return r
}

// Names returns the methods' names, sorted.
func (r Registry) Names() []string { return slices.Sorted(maps.Keys(r)) }

// Lookup returns the method called name; an unknown name is an
// *OptionError about option "Method", named through names.
func (r Registry) Lookup(name string, names Names) (*Method, error) {
	if m, ok := r[name]; ok {
		return m, nil
	}
	return nil, optionErrorf("Method", "unknown %s %q (available: %s)", names.Of("Method"), name, strings.Join(r.Names(), ", "))
}

// LoadAdapter installs the adapter folder dir on m for inference (its
// tensors frozen), with the method whose peft_type adapter_config.json
// names.
func (r Registry) LoadAdapter(dir string, m model.Model) error {
	h, err := peft.ReadHeader(dir)
	if err != nil {
		return err
	}
	var known []string
	for _, name := range r.Names() {
		meth := r[name]
		for _, t := range meth.PeftTypes {
			if t == h.PeftType && meth.Load != nil {
				return meth.Load(m, dir)
			}
			known = append(known, t)
		}
	}
	slices.Sort(known)
	return fmt.Errorf("%s: peft_type %q is not supported (gotune loads: %s)", dir, h.PeftType, strings.Join(slices.Compact(known), ", "))
}

// LoadAdapter installs the adapter folder dir (any built-in method's,
// chosen by adapter_config.json's peft_type) on m for inference.
func LoadAdapter(dir string, m model.Model) error { return Methods().LoadAdapter(dir, m) }

// fullMethod trains every weight.
func fullMethod() *Method {
	return &Method{Name: "full", Apply: func(m model.Model, o *MethodOptions) (train.Saver, error) {
		if o.InitAdapter != "" {
			return nil, optionErrorf("InitAdapter", "%s: %s full trains the base weights and takes no adapter; merge it first (gotune merge) or train with the adapter's method", o.name("InitAdapter"), o.name("Method"))
		}
		for _, p := range m.Params() {
			model.SetTrainable(p, true)
		}
		return nil, nil
	}}
}

// checkLayers rejects layer indices model m does not have.
func checkLayers(o *MethodOptions, option string, layers []int, m model.Model) error {
	for _, l := range layers {
		if l < 0 || l >= m.NumLayers() {
			return optionErrorf(option, "%s: layer %d does not exist: the model has %d layers (0..%d)", o.name(option), l, m.NumLayers(), m.NumLayers()-1)
		}
	}
	return nil
}

// contradict returns the error for options given explicitly that
// contradict the InitAdapter folder's configuration (nil when bad is
// empty).
func (o *MethodOptions) contradict(bad []string) error {
	if len(bad) == 0 {
		return nil
	}
	return optionErrorf("InitAdapter", "%s %s: %s contradict %s/adapter_config.json; leave them out to use the adapter's configuration",
		o.name("InitAdapter"), o.InitAdapter, strings.Join(bad, ", "), o.InitAdapter)
}

// initAdapterErr wraps an error reading the InitAdapter folder.
func (o *MethodOptions) initAdapterErr(err error) error {
	return fmt.Errorf("%s: %w", o.name("InitAdapter"), err)
}

// checkPeftType rejects an InitAdapter folder of another method.
func (o *MethodOptions) checkPeftType(method string, want ...string) error {
	h, err := peft.ReadHeader(o.InitAdapter)
	if err != nil {
		return o.initAdapterErr(err)
	}
	if slices.Contains(want, h.PeftType) {
		return nil
	}
	return optionErrorf("InitAdapter", "%s %s holds a %s adapter, not one %s %s trains", o.name("InitAdapter"), o.InitAdapter, h.PeftType, o.name("Method"), method)
}
