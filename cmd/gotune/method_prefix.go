package main

import (
	"flag"
)

func (mf *methodFlagSet) definePrefixFlags(fs *flag.FlagSet) {
	mf.defineSharedPromptFlags(fs)
	fs.StringVar(&mf.prefixLayers, "prefix-layers", "", "--method prefix: comma-separated layers (0-based) that get key/value prefixes (the \"local\" form, gotune's extension: PEFT cannot load it); empty: every layer (the \"global\" form, PEFT's)")
	fs.BoolVar(&mf.opts.Prefix.Projection, "prefix-projection", mf.opts.Prefix.Projection, "--method prefix: compute the prefixes with an embedding, Linear, tanh, Linear encoder (P-Tuning v2 / ChatGLM's prefix_projection); see --encoder-hidden-size")
}
