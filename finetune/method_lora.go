package finetune

import (
	"fmt"
	"slices"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/methods/lora"
)

// loraMethod is LoRA (with rsLoRA and DoRA as options).
func loraMethod() *Method {
	return &Method{
		Name:      "lora",
		PeftTypes: []string{lora.PeftType},
		Apply:     applyLoRA,
		Load: func(m model.Model, dir string) error {
			_, err := lora.Load(m, dir, lora.LoadOptions{Frozen: true})
			return err
		},
	}
}

// loraConfig turns the options into a lora.Config for model m.
func loraConfig(m model.Model, o *MethodOptions) (lora.Config, error) {
	l := &o.LoRA
	targets := l.Targets
	if len(targets) == 0 {
		targets = lora.DefaultTargets(m)
	}
	cfg := lora.Config{
		R: l.Rank, Alpha: l.Alpha, Dropout: l.Dropout, Targets: targets,
		RSLoRA: l.RSLoRA, DoRA: l.DoRA, Init: l.Init, Seed: o.Seed, BaseModel: o.BaseModel,
	}
	if err := cfg.Validate(); err != nil {
		return cfg, FieldOptionError(err, loraOption, o.Names)
	}
	return cfg, nil
}

func applyLoRA(m model.Model, o *MethodOptions) (train.Saver, error) {
	cfg, err := loraConfig(m, o)
	if err != nil {
		return nil, err
	}
	if o.InitAdapter == "" {
		a, err := lora.Apply(m, cfg)
		if err != nil {
			return nil, FieldOptionError(err, loraOption, o.Names)
		}
		return a, nil
	}
	// Continue from a PEFT folder: its configuration defines the adapter;
	// options given explicitly must agree with it.
	_, fileCfg, err := lora.ReadConfig(o.InitAdapter)
	if err != nil {
		return nil, o.initAdapterErr(err)
	}
	if err := checkLoRAAgrees(m, o, cfg, fileCfg); err != nil {
		return nil, err
	}
	opt := lora.LoadOptions{Seed: o.Seed, BaseModel: cfg.BaseModel}
	if o.given("LoRA.Dropout") {
		opt.Dropout = &cfg.Dropout
	}
	a, err := lora.Load(m, o.InitAdapter, opt)
	if err != nil {
		return nil, o.initAdapterErr(err)
	}
	return a, nil
}

// checkLoRAAgrees rejects structural options given explicitly that
// contradict the InitAdapter folder's configuration.
func checkLoRAAgrees(m model.Model, o *MethodOptions, given, file lora.Config) error {
	var bad []string
	if o.given("LoRA.Rank") && given.R != file.R {
		bad = append(bad, fmt.Sprintf("%s %d (r is %d)", o.name("LoRA.Rank"), given.R, file.R))
	}
	if o.given("LoRA.Alpha") && given.Alpha != file.Alpha {
		bad = append(bad, fmt.Sprintf("%s %g (lora_alpha is %g)", o.name("LoRA.Alpha"), given.Alpha, file.Alpha))
	}
	if o.given("LoRA.RSLoRA") && given.RSLoRA != file.RSLoRA {
		bad = append(bad, fmt.Sprintf("%s=%v (use_rslora is %v)", o.name("LoRA.RSLoRA"), given.RSLoRA, file.RSLoRA))
	}
	if o.given("LoRA.DoRA") && given.DoRA != file.DoRA {
		bad = append(bad, fmt.Sprintf("%s=%v (use_dora is %v)", o.name("LoRA.DoRA"), given.DoRA, file.DoRA))
	}
	if o.given("LoRA.Targets") {
		want, err := lora.TargetPaths(m, given)
		if err != nil {
			return err
		}
		have, err := lora.TargetPaths(m, file)
		if err != nil {
			return o.initAdapterErr(err)
		}
		if !slices.Equal(want, have) {
			bad = append(bad, fmt.Sprintf("%s %s (selects %d modules, not the %d that target_modules %v selects)", o.name("LoRA.Targets"), strings.Join(o.LoRA.Targets, ","), len(want), len(have), file.Targets))
		}
	}
	if len(bad) > 0 {
		return optionErrorf("InitAdapter", "%s %s: %s contradict %s; leave them out to use the adapter's configuration", o.name("InitAdapter"), o.InitAdapter, strings.Join(bad, ", "), o.InitAdapter+"/adapter_config.json")
	}
	return nil
}

// loraOption maps lora.Config's fields to the options that set them.
var loraOption = optionsOf("LoRA", map[string]string{"R": "LoRA.Rank"})
