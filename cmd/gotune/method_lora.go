package main

import (
	"flag"
	"fmt"
	"slices"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/lora"
)

// loraFlags are the flags of --method lora.
type loraFlags struct {
	r              int
	alpha, dropout float64
	targets, init  string
	rslora, dora   bool
}

var loraOpts loraFlags

func init() {
	registerMethod(&trainMethod{
		Name:  "lora",
		Flags: defineLoRAFlags,
		Apply: applyLoRA,
	})
	registerAdapterLoader(lora.PeftType, func(m model.Model, dir string) error {
		_, err := lora.Load(m, dir, lora.LoadOptions{Frozen: true})
		return err
	})
}

func defineLoRAFlags(fs *flag.FlagSet) {
	defineAdapterFlags(fs)
	o := &loraOpts
	fs.IntVar(&o.r, "lora-r", 8, "LoRA rank r (--method lora)")
	fs.Float64Var(&o.alpha, "lora-alpha", 16, "LoRA alpha: the update is scaled by alpha/r (alpha/sqrt(r) with --use-rslora)")
	fs.Float64Var(&o.dropout, "lora-dropout", 0, "dropout probability on the LoRA branch's input")
	fs.StringVar(&o.targets, "lora-targets", "", "comma-separated module names LoRA wraps (a module matches when its path equals a name or ends with .name: q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj; GPT-2: c_attn, c_proj, c_fc), or all-linear: every linear layer except lm_head; empty: PEFT's default for the architecture (q_proj,v_proj; GPT-2: c_attn)")
	fs.BoolVar(&o.rslora, "use-rslora", false, "rank-stabilised LoRA: scale by alpha/sqrt(r)")
	fs.BoolVar(&o.dora, "use-dora", false, "DoRA: learn a magnitude per output feature (PEFT's use_dora)")
	fs.StringVar(&o.init, "lora-init", "kaiming", "initialisation of lora_A (lora_B starts at zero): kaiming (PEFT's default, uniform ±1/sqrt(in)) or gaussian (normal, std 1/r)")
}

// loraConfig turns the flags into a lora.Config for model m.
func loraConfig(m model.Model, seed uint64) (lora.Config, error) {
	o := &loraOpts
	targets := lora.ParseTargets(o.targets)
	if len(targets) == 0 {
		targets = lora.DefaultTargets(m)
	}
	cfg := lora.Config{
		R: o.r, Alpha: o.alpha, Dropout: o.dropout, Targets: targets,
		RSLoRA: o.rslora, DoRA: o.dora, Init: lora.Init(o.init), Seed: seed, BaseModel: trainModelDir(),
	}
	if err := cfg.Validate(); err != nil {
		return cfg, &usageError{msg: err.Error()}
	}
	return cfg, nil
}

func applyLoRA(m model.Model, seed uint64) (train.Saver, error) {
	cfg, err := loraConfig(m, seed)
	if err != nil {
		return nil, err
	}
	if initAdapterDir == "" {
		return lora.Apply(m, cfg)
	}
	// Continue from a PEFT folder: its configuration defines the adapter;
	// flags given explicitly must agree with it.
	_, fileCfg, err := lora.ReadConfig(initAdapterDir)
	if err != nil {
		return nil, fmt.Errorf("--init-adapter: %w", err)
	}
	if err := checkLoRAFlagsAgree(m, cfg, fileCfg); err != nil {
		return nil, err
	}
	opt := lora.LoadOptions{Seed: seed, BaseModel: cfg.BaseModel}
	if flagSet("lora-dropout") {
		opt.Dropout = &cfg.Dropout
	}
	a, err := lora.Load(m, initAdapterDir, opt)
	if err != nil {
		return nil, fmt.Errorf("--init-adapter: %w", err)
	}
	return a, nil
}

// checkLoRAFlagsAgree rejects structural flags given explicitly that
// contradict the --init-adapter folder's configuration.
func checkLoRAFlagsAgree(m model.Model, flags, file lora.Config) error {
	var bad []string
	where := initAdapterDir + "/adapter_config.json"
	if flagSet("lora-r") && flags.R != file.R {
		bad = append(bad, fmt.Sprintf("--lora-r %d (r is %d)", flags.R, file.R))
	}
	if flagSet("lora-alpha") && flags.Alpha != file.Alpha {
		bad = append(bad, fmt.Sprintf("--lora-alpha %g (lora_alpha is %g)", flags.Alpha, file.Alpha))
	}
	if flagSet("use-rslora") && flags.RSLoRA != file.RSLoRA {
		bad = append(bad, fmt.Sprintf("--use-rslora=%v (use_rslora is %v)", flags.RSLoRA, file.RSLoRA))
	}
	if flagSet("use-dora") && flags.DoRA != file.DoRA {
		bad = append(bad, fmt.Sprintf("--use-dora=%v (use_dora is %v)", flags.DoRA, file.DoRA))
	}
	if flagSet("lora-targets") {
		want, err := lora.TargetPaths(m, flags)
		if err != nil {
			return err
		}
		have, err := lora.TargetPaths(m, file)
		if err != nil {
			return fmt.Errorf("--init-adapter: %w", err)
		}
		if !slices.Equal(want, have) {
			bad = append(bad, fmt.Sprintf("--lora-targets %s (selects %d modules, not the %d that target_modules %v selects)", loraOpts.targets, len(want), len(have), file.Targets))
		}
	}
	if len(bad) > 0 {
		return &usageError{msg: fmt.Sprintf("--init-adapter %s: %s contradict %s; leave them out to use the adapter's configuration", initAdapterDir, strings.Join(bad, ", "), where)}
	}
	return nil
}
