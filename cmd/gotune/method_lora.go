package main

import (
	"flag"
)

func (mf *methodFlagSet) defineLoRAFlags(fs *flag.FlagSet) {
	mf.defineAdapterFlags(fs)
	o := &mf.opts.LoRA
	fs.IntVar(&o.Rank, "lora-r", o.Rank, "LoRA rank r (--method lora)")
	fs.Float64Var(&o.Alpha, "lora-alpha", o.Alpha, "LoRA alpha: the update is scaled by alpha/r (alpha/sqrt(r) with --use-rslora)")
	fs.Float64Var(&o.Dropout, "lora-dropout", o.Dropout, "dropout probability on the LoRA branch's input")
	fs.StringVar(&mf.loraTargets, "lora-targets", "", "comma-separated module names LoRA wraps (a module matches when its path equals a name or ends with .name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; GPT-2: c_attn, c_proj, c_fc), or all-linear: every linear layer except lm_head; empty: PEFT's default for the architecture (q_proj,v_proj; GPT-2: c_attn)")
	fs.BoolVar(&o.RSLoRA, "use-rslora", o.RSLoRA, "rank-stabilised LoRA: scale by alpha/sqrt(r)")
	fs.BoolVar(&o.DoRA, "use-dora", o.DoRA, "DoRA: learn a magnitude per output feature (PEFT's use_dora)")
	fs.StringVar(&mf.loraInit, "lora-init", string(o.Init), "initialisation of lora_A (lora_B starts at zero): kaiming (PEFT's default, uniform ±1/sqrt(in)) or gaussian (normal, std 1/r)")
}
