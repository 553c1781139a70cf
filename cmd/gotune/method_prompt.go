package main

import (
	"flag"
)

// defineSharedPromptFlags defines the flags the prompt-learning methods
// share (once, whichever method's flags run first).
func (mf *methodFlagSet) defineSharedPromptFlags(fs *flag.FlagSet) {
	mf.defineAdapterFlags(fs)
	if fs.Lookup("num-virtual-tokens") != nil {
		return
	}
	o := &mf.opts.Prompt
	fs.IntVar(&o.NumVirtualTokens, "num-virtual-tokens", o.NumVirtualTokens, "--method prompt, ptuning, prefix: number of virtual tokens (prefix length)")
	fs.IntVar(&o.EncoderHidden, "encoder-hidden-size", o.EncoderHidden, "--method ptuning, prefix (with --prefix-projection): hidden size of the prompt encoder; 0: the model's token width (PEFT's default)")
}

func (mf *methodFlagSet) definePromptFlags(fs *flag.FlagSet) {
	mf.defineSharedPromptFlags(fs)
	o := &mf.opts.Prompt
	fs.StringVar(&o.Init, "prompt-init", o.Init, "--method prompt: initialisation of the virtual tokens: random (normal, std 1, as PEFT) or text (the embeddings of --prompt-init-text's tokens, repeated or cut to --num-virtual-tokens)")
	fs.StringVar(&o.InitText, "prompt-init-text", o.InitText, "--method prompt: the text of --prompt-init text, tokenized with the model's tokenizer")
}

func (mf *methodFlagSet) definePTuningFlags(fs *flag.FlagSet) {
	mf.defineSharedPromptFlags(fs)
	o := &mf.opts.Prompt
	fs.StringVar(&o.Encoder, "encoder-reparameterization", o.Encoder, "--method ptuning: the prompt encoder: mlp (3 linear layers) or lstm (bidirectional LSTM and a 2-layer MLP head)")
	fs.IntVar(&o.EncoderLayers, "encoder-num-layers", o.EncoderLayers, "--method ptuning: layers of the LSTM encoder")
}
