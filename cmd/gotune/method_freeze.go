package main

import (
	"flag"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/freeze"
)

// freezeFlags are the flags of --method freeze.
type freezeFlags struct {
	layers         int
	modules, extra string
}

var freezeOpts freezeFlags

func init() {
	registerMethod(&trainMethod{
		Name:  "freeze",
		Flags: defineFreezeFlags,
		Apply: applyFreeze,
	})
}

func defineFreezeFlags(fs *flag.FlagSet) {
	defineAdapterFlags(fs)
	o := &freezeOpts
	fs.IntVar(&o.layers, "freeze-trainable-layers", 2, "--method freeze: train the last N transformer layers; a negative N trains the first |N|")
	fs.StringVar(&o.modules, "freeze-trainable-modules", freeze.All, "--method freeze: the parts of those layers that train, comma-separated: all, or module names within a layer (mlp, self_attn, input_layernorm, ...; GPT-2: mlp, attn, ln_1, ln_2)")
	fs.StringVar(&o.extra, "freeze-extra-modules", "", "--method freeze: modules outside the layers that also train, comma-separated (embed_tokens, norm, lm_head; GPT-2: wte, wpe, ln_f)")
}

// applyFreeze marks what trains; the result is saved as full weights.
func applyFreeze(m model.Model, _ uint64) (train.Saver, error) {
	if initAdapterDir != "" {
		return nil, &usageError{msg: "--init-adapter applies to adapter methods (lora, ...), not to --method freeze, which trains the base weights"}
	}
	o := &freezeOpts
	_, err := freeze.Apply(m, freeze.Config{
		TrainableLayers: o.layers,
		Modules:         freeze.ParseList(o.modules),
		Extra:           freeze.ParseList(o.extra),
	})
	return nil, err
}
