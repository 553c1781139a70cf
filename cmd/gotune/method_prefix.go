package main

import (
	"flag"
	"fmt"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/prefix"
)

// prefixFlags are the flags of --method prefix (besides the shared
// --num-virtual-tokens and --encoder-hidden-size).
type prefixFlags struct {
	layers     string
	projection bool
}

var prefixOpts prefixFlags

func init() {
	registerMethod(&trainMethod{Name: "prefix", Flags: definePrefixFlags, Apply: applyPrefix})
	registerAdapterLoader(prefix.PeftType, func(m model.Model, dir string) error {
		_, err := prefix.Load(m, dir, prefix.LoadOptions{Frozen: true})
		return err
	})
}

func definePrefixFlags(fs *flag.FlagSet) {
	defineSharedPromptFlags(fs)
	o := &prefixOpts
	fs.StringVar(&o.layers, "prefix-layers", "", "--method prefix: comma-separated layers (0-based) that get key/value prefixes (the \"local\" form, gotune's extension: PEFT cannot load it); empty: every layer (the \"global\" form, PEFT's)")
	fs.BoolVar(&o.projection, "prefix-projection", false, "--method prefix: compute the prefixes with an embedding, Linear, tanh, Linear encoder (P-Tuning v2 / ChatGLM's prefix_projection); see --encoder-hidden-size")
}

func applyPrefix(m model.Model, seed uint64) (train.Saver, error) {
	layers, err := parseLayerList("prefix-layers", prefixOpts.layers)
	if err != nil {
		return nil, err
	}
	cfg := prefix.Config{
		NumVirtualTokens: promptOpts.virtualTokens, Layers: layers, Projection: prefixOpts.projection,
		EncoderHidden: promptOpts.encoderHidden, Seed: seed, BaseModel: trainModelDir(),
	}
	if err := cfg.Validate(); err != nil {
		return nil, &usageError{msg: "--method prefix: " + err.Error()}
	}
	if initAdapterDir == "" {
		if err := checkLayers("prefix-layers", cfg.Layers, m); err != nil {
			return nil, err
		}
		return prefix.Apply(m, cfg)
	}
	if err := checkPeftType("prefix", prefix.PeftType); err != nil {
		return nil, err
	}
	file, err := prefix.ReadConfig(initAdapterDir, m)
	if err != nil {
		return nil, fmt.Errorf("--init-adapter: %w", err)
	}
	var bad []string
	if flagSet("num-virtual-tokens") && cfg.NumVirtualTokens != file.NumVirtualTokens {
		bad = append(bad, fmt.Sprintf("--num-virtual-tokens %d (num_virtual_tokens is %d)", cfg.NumVirtualTokens, file.NumVirtualTokens))
	}
	if flagSet("prefix-layers") && fmt.Sprint(cfg.Layers) != fmt.Sprint(file.Layers) {
		bad = append(bad, fmt.Sprintf("--prefix-layers %s (prefix_layers is %v)", prefixOpts.layers, file.Layers))
	}
	if flagSet("prefix-projection") && cfg.Projection != file.Projection {
		bad = append(bad, fmt.Sprintf("--prefix-projection=%v (prefix_projection is %v)", cfg.Projection, file.Projection))
	}
	if flagSet("encoder-hidden-size") && file.Projection && cfg.EncoderHidden != file.EncoderHidden {
		bad = append(bad, fmt.Sprintf("--encoder-hidden-size %d (encoder_hidden_size is %d)", cfg.EncoderHidden, file.EncoderHidden))
	}
	if err := flagsContradict(bad); err != nil {
		return nil, err
	}
	a, err := prefix.Load(m, initAdapterDir, prefix.LoadOptions{BaseModel: trainModelDir()})
	if err != nil {
		return nil, fmt.Errorf("--init-adapter: %w", err)
	}
	return a, nil
}
