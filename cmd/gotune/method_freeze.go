package main

import (
	"flag"
	"strings"
)

func (mf *methodFlagSet) defineFreezeFlags(fs *flag.FlagSet) {
	mf.defineAdapterFlags(fs)
	o := &mf.opts.Freeze
	fs.IntVar(&o.TrainableLayers, "freeze-trainable-layers", o.TrainableLayers, "--method freeze: train the last N transformer layers; a negative N trains the first |N|")
	fs.StringVar(&mf.freezeModules, "freeze-trainable-modules", strings.Join(o.Modules, ","), "--method freeze: the parts of those layers that train, comma-separated: all, or module names within a layer (mlp, self_attn, input_layernorm, ...; GPT-2: mlp, attn, ln_1, ln_2)")
	fs.StringVar(&mf.freezeExtra, "freeze-extra-modules", "", "--method freeze: modules outside the layers that also train, comma-separated (embed_tokens, norm, lm_head; GPT-2: wte, wpe, ln_f)")
}
