package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/adapter"
)

// bottleneckFlags are the flags of --method adapter.
type bottleneckFlags struct {
	variant, activation, layers, init string
	reduction                         int
	scaling                           float64
}

var bottleneckOpts bottleneckFlags

func init() {
	registerMethod(&trainMethod{
		Name:  "adapter",
		Flags: defineBottleneckFlags,
		Apply: applyBottleneck,
	})
	registerAdapterLoader(adapter.PeftType, func(m model.Model, dir string) error {
		_, err := adapter.Load(m, dir, adapter.LoadOptions{Frozen: true})
		return err
	})
}

func defineBottleneckFlags(fs *flag.FlagSet) {
	defineAdapterFlags(fs)
	o := &bottleneckOpts
	fs.StringVar(&o.variant, "adapter-variant", string(adapter.Houlsby), "--method adapter: AdapterHub's bottleneck configurations, with x the residual stream, h a sub-layer's output and f the adapter: houlsby (double_seq_bn: after attention and after the MLP, x + h + f(h)), pfeiffer (seq_bn: after the MLP, x + h + f(x + h)), parallel (par_bn: beside the MLP, x + h + f(x)); gotune's own: series (after the MLP, x + h + f(h)), parallel-normed (beside the MLP, x + h + f(norm(x)))")
	fs.IntVar(&o.reduction, "adapter-reduction-factor", 0, "--method adapter: bottleneck width = hidden size / this (at least 1); 0: the variant's default (AdapterHub's: 16, parallel 2)")
	fs.StringVar(&o.activation, "adapter-activation", "", "--method adapter: the adapters' non-linearity: "+strings.Join(adapter.Activations(), ", ")+" (gelu is the exact erf GELU, swish = silu); empty: the variant's default (AdapterHub's: houlsby swish, otherwise relu)")
	fs.Float64Var(&o.scaling, "adapter-scaling", 0, "--method adapter: factor on the adapters' output; 0: the variant's default (AdapterHub's: parallel 4, otherwise 1)")
	fs.StringVar(&o.init, "adapter-init", "", "--method adapter: initialisation (AdapterHub's init_weights; biases start at zero): bert (both weights N(0, 0.02²)), mam_adapter (down as nn.Linear, up zero: starts as the base model) or houlsby (N(0, 0.01²) cut at ±0.02); empty: the variant's default (parallel, series, parallel-normed mam_adapter, otherwise bert)")
	fs.StringVar(&o.layers, "adapter-layers", "", "--method adapter: comma-separated transformer layers that get adapters (0-based); empty: every layer")
}

// parseLayerList parses a comma-separated list of layer indices for flag
// name; "" gives nil (every layer).
func parseLayerList(name, s string) ([]int, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, f := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil {
			return nil, &usageError{msg: fmt.Sprintf("--%s: %q is not a layer index (want a comma-separated list such as 0,3)", name, f)}
		}
		out = append(out, n)
	}
	return out, nil
}

// checkLayers rejects layer indices model m does not have, naming flag.
func checkLayers(flagName string, layers []int, m model.Model) error {
	for _, l := range layers {
		if l < 0 || l >= m.NumLayers() {
			return &usageError{msg: fmt.Sprintf("--%s: layer %d does not exist: the model has %d layers (0..%d)", flagName, l, m.NumLayers(), m.NumLayers()-1)}
		}
	}
	return nil
}

// bottleneckConfig turns the flags into an adapter.Config.
func bottleneckConfig(seed uint64) (adapter.Config, error) {
	o := &bottleneckOpts
	layers, err := parseLayerList("adapter-layers", o.layers)
	if err != nil {
		return adapter.Config{}, err
	}
	cfg := adapter.Config{
		Variant: adapter.Variant(strings.ToLower(o.variant)), ReductionFactor: o.reduction,
		Activation: strings.ToLower(o.activation), Scaling: o.scaling, Init: adapter.Init(strings.ToLower(o.init)),
		Layers: layers, Seed: seed, BaseModel: trainModelDir(),
	}.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return cfg, &usageError{msg: "--method adapter: " + err.Error()}
	}
	return cfg, nil
}

func applyBottleneck(m model.Model, seed uint64) (train.Saver, error) {
	cfg, err := bottleneckConfig(seed)
	if err != nil {
		return nil, err
	}
	if initAdapterDir == "" {
		if err := checkLayers("adapter-layers", cfg.Layers, m); err != nil {
			return nil, err
		}
		return adapter.Apply(m, cfg)
	}
	file, err := adapter.ReadConfig(initAdapterDir)
	if err != nil {
		return nil, fmt.Errorf("--init-adapter: %w", err)
	}
	hidden := m.Config().Hidden
	var bad []string
	if flagSet("adapter-variant") && cfg.Variant != file.Variant {
		bad = append(bad, fmt.Sprintf("--adapter-variant %s (adapter_variant is %s)", cfg.Variant, file.Variant))
	}
	if flagSet("adapter-reduction-factor") && cfg.Bottleneck(hidden) != file.Bottleneck(hidden) {
		bad = append(bad, fmt.Sprintf("--adapter-reduction-factor %d (bottleneck_size is %d)", cfg.ReductionFactor, file.Bottleneck(hidden)))
	}
	if flagSet("adapter-activation") && cfg.Activation != file.Activation {
		bad = append(bad, fmt.Sprintf("--adapter-activation %s (non_linearity is %s)", cfg.Activation, file.Activation))
	}
	if flagSet("adapter-scaling") && cfg.Scaling != file.Scaling {
		bad = append(bad, fmt.Sprintf("--adapter-scaling %g (scaling is %g)", cfg.Scaling, file.Scaling))
	}
	if flagSet("adapter-layers") && fmt.Sprint(cfg.Layers) != fmt.Sprint(file.Layers) {
		bad = append(bad, fmt.Sprintf("--adapter-layers %s (target_layers is %v)", bottleneckOpts.layers, file.Layers))
	}
	if err := flagsContradict(bad); err != nil {
		return nil, err
	}
	a, err := adapter.Load(m, initAdapterDir, adapter.LoadOptions{BaseModel: trainModelDir()})
	if err != nil {
		return nil, fmt.Errorf("--init-adapter: %w", err)
	}
	return a, nil
}

// flagsContradict returns the usage error for method flags given
// explicitly that contradict the --init-adapter folder's configuration
// (nil when bad is empty).
func flagsContradict(bad []string) error {
	if len(bad) == 0 {
		return nil
	}
	return &usageError{msg: fmt.Sprintf("--init-adapter %s: %s contradict %s/adapter_config.json; leave them out to use the adapter's configuration",
		initAdapterDir, strings.Join(bad, ", "), initAdapterDir)}
}
