package finetune

import (
	"fmt"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/adapter"
)

// bottleneckMethod is bottleneck adapters (method adapter).
func bottleneckMethod() *Method {
	return &Method{
		Name:      "adapter",
		PeftTypes: []string{adapter.PeftType},
		Apply:     applyBottleneck,
		Load: func(m model.Model, dir string) error {
			_, err := adapter.Load(m, dir, adapter.LoadOptions{Frozen: true})
			return err
		},
	}
}

// bottleneckOption maps adapter.Config's fields to the options that set
// them.
var bottleneckOption = optionsOf("Bottleneck", nil)

// bottleneckConfig turns the options into an adapter.Config.
func bottleneckConfig(o *MethodOptions) (adapter.Config, error) {
	b := &o.Bottleneck
	cfg := adapter.Config{
		Variant: adapter.Variant(strings.ToLower(b.Variant)), ReductionFactor: b.ReductionFactor,
		Activation: strings.ToLower(b.Activation), Scaling: b.Scaling, Init: adapter.Init(strings.ToLower(b.Init)),
		Layers: b.Layers, Seed: o.Seed, BaseModel: o.BaseModel,
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, FieldOptionError(err, bottleneckOption, o.Names)
	}
	return cfg, nil
}

func applyBottleneck(m model.Model, o *MethodOptions) (train.Saver, error) {
	cfg, err := bottleneckConfig(o)
	if err != nil {
		return nil, err
	}
	if o.InitAdapter == "" {
		if err := checkLayers(o, "Bottleneck.Layers", cfg.Layers, m); err != nil {
			return nil, err
		}
		a, err := adapter.Apply(m, cfg)
		if err != nil {
			return nil, FieldOptionError(err, bottleneckOption, o.Names)
		}
		return a, nil
	}
	file, err := adapter.ReadConfig(o.InitAdapter)
	if err != nil {
		return nil, o.initAdapterErr(err)
	}
	hidden := m.Config().Hidden
	var bad []string
	if o.given("Bottleneck.Variant") && cfg.Variant != file.Variant {
		bad = append(bad, fmt.Sprintf("%s %s (adapter_variant is %s)", o.name("Bottleneck.Variant"), cfg.Variant, file.Variant))
	}
	if o.given("Bottleneck.ReductionFactor") && cfg.Bottleneck(hidden) != file.Bottleneck(hidden) {
		bad = append(bad, fmt.Sprintf("%s %d (bottleneck_size is %d)", o.name("Bottleneck.ReductionFactor"), cfg.ReductionFactor, file.Bottleneck(hidden)))
	}
	if o.given("Bottleneck.Activation") && cfg.Activation != file.Activation {
		bad = append(bad, fmt.Sprintf("%s %s (non_linearity is %s)", o.name("Bottleneck.Activation"), cfg.Activation, file.Activation))
	}
	if o.given("Bottleneck.Scaling") && cfg.Scaling != file.Scaling {
		bad = append(bad, fmt.Sprintf("%s %g (scaling is %g)", o.name("Bottleneck.Scaling"), cfg.Scaling, file.Scaling))
	}
	if o.given("Bottleneck.Layers") && fmt.Sprint(cfg.Layers) != fmt.Sprint(file.Layers) {
		bad = append(bad, fmt.Sprintf("%s %s (target_layers is %v)", o.name("Bottleneck.Layers"), joinInts(o.Bottleneck.Layers), file.Layers))
	}
	if err := o.contradict(bad); err != nil {
		return nil, err
	}
	a, err := adapter.Load(m, o.InitAdapter, adapter.LoadOptions{BaseModel: o.BaseModel})
	if err != nil {
		return nil, o.initAdapterErr(err)
	}
	return a, nil
}

// joinInts writes layers as a comma-separated list.
func joinInts(layers []int) string {
	s := make([]string, len(layers))
	for i, l := range layers {
		s[i] = fmt.Sprint(l)
	}
	return strings.Join(s, ",")
}
