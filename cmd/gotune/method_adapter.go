package main

import (
	"flag"
	"strings"

	"github.com/gotune/gotune/methods/adapter"
)

func (mf *methodFlagSet) defineBottleneckFlags(fs *flag.FlagSet) {
	mf.defineAdapterFlags(fs)
	o := &mf.opts.Bottleneck
	fs.StringVar(&o.Variant, "adapter-variant", o.Variant, "--method adapter: AdapterHub's bottleneck configurations, with x the residual stream, h a sub-layer's output and f the adapter: houlsby (double_seq_bn: after attention and after the MLP, x + h + f(h)), pfeiffer (seq_bn: after the MLP, x + h + f(x + h)), parallel (par_bn: beside the MLP, x + h + f(x)); gotune's own: series (after the MLP, x + h + f(h)), parallel-normed (beside the MLP, x + h + f(norm(x)))")
	fs.IntVar(&o.ReductionFactor, "adapter-reduction-factor", o.ReductionFactor, "--method adapter: bottleneck width = hidden size / this (at least 1); 0: the variant's default (AdapterHub's: 16, parallel 2)")
	fs.StringVar(&o.Activation, "adapter-activation", o.Activation, "--method adapter: the adapters' non-linearity: "+strings.Join(adapter.Activations(), ", ")+" (gelu is the exact erf GELU, swish = silu); empty: the variant's default (AdapterHub's: houlsby swish, otherwise relu)")
	fs.Float64Var(&o.Scaling, "adapter-scaling", o.Scaling, "--method adapter: factor on the adapters' output; 0: the variant's default (AdapterHub's: parallel 4, otherwise 1)")
	fs.StringVar(&o.Init, "adapter-init", o.Init, "--method adapter: initialisation (AdapterHub's init_weights; biases start at zero): bert (both weights N(0, 0.02²)), mam_adapter (down as nn.Linear, up zero: starts as the base model) or houlsby (N(0, 0.01²) cut at ±0.02); empty: the variant's default (parallel, series, parallel-normed mam_adapter, otherwise bert)")
	fs.StringVar(&mf.adapterLayers, "adapter-layers", "", "--method adapter: comma-separated transformer layers that get adapters (0-based); empty: every layer")
}
