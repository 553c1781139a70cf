package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
	"github.com/gotune/gotune/methods/freeze"
	"github.com/gotune/gotune/methods/lora"
)

// The methods' flags: every --method's own flags (--lora-r, ...) and the
// generic --init-adapter, bound to one methodFlagSet value that becomes the
// finetune.MethodOptions of a run. The methods themselves (and loading an
// adapter folder by its peft_type) are the library's (package finetune).

// methodFlagSet holds the values of every method's flags on one flag set.
type methodFlagSet struct {
	fs   *flag.FlagSet
	opts finetune.MethodOptions // the flags whose values need no parsing
	// List-valued flags, parsed by options.
	loraTargets, loraInit, freezeModules, freezeExtra string
	adapterLayers, prefixLayers                       string
}

// methodFlagDefs defines each --method's own flags, by method.
var methodFlagDefs = map[string]func(mf *methodFlagSet, fs *flag.FlagSet){
	"full":    (*methodFlagSet).defineAdapterFlags,
	"freeze":  (*methodFlagSet).defineFreezeFlags,
	"lora":    (*methodFlagSet).defineLoRAFlags,
	"adapter": (*methodFlagSet).defineBottleneckFlags,
	"prompt":  (*methodFlagSet).definePromptFlags,
	"ptuning": (*methodFlagSet).definePTuningFlags,
	"prefix":  (*methodFlagSet).definePrefixFlags,
}

// methodRegistry is the --method values: the library's built-in methods.
var methodRegistry = finetune.Methods()

// defineMethodFlags defines every method's own flags on fs and returns
// their values.
func defineMethodFlags(fs *flag.FlagSet) *methodFlagSet {
	mf := &methodFlagSet{fs: fs, opts: finetune.DefaultMethodOptions()}
	for _, name := range methodRegistry.Names() {
		if def := methodFlagDefs[name]; def != nil {
			def(mf, fs)
		}
	}
	return mf
}

// defineAdapterFlags defines --init-adapter on the flag set (once,
// whichever method's flags define it first). Every adapter method's
// flags include it.
func (mf *methodFlagSet) defineAdapterFlags(fs *flag.FlagSet) {
	if fs.Lookup("init-adapter") != nil {
		return
	}
	fs.StringVar(&mf.opts.InitAdapter, "init-adapter", "",
		"start from the adapter in this PEFT adapter `DIR` (adapter_config.json, adapter_model.safetensors) instead of a fresh initialisation: continue training, or train weights made elsewhere; its configuration replaces the method's structural flags")
}

// options returns the method options the flags give, for model modelDir
// and seed: list flags parsed, the flags set on the command line (or by
// --config) as Explicit, option names mapped to flags.
func (mf *methodFlagSet) options(modelDir string, seed uint64) (finetune.MethodOptions, error) {
	o := mf.opts
	o.Seed, o.BaseModel, o.Names = seed, modelDir, optionFlags
	o.LoRA.Targets, o.LoRA.Init = lora.ParseTargets(mf.loraTargets), lora.Init(mf.loraInit)
	o.Freeze.Modules, o.Freeze.Extra = freeze.ParseList(mf.freezeModules), freeze.ParseList(mf.freezeExtra)
	var err error
	if o.Bottleneck.Layers, err = parseLayerList("adapter-layers", mf.adapterLayers); err != nil {
		return o, err
	}
	if o.Prefix.Layers, err = parseLayerList("prefix-layers", mf.prefixLayers); err != nil {
		return o, err
	}
	o.Explicit = explicitOptions(mf.fs)
	return o, nil
}

// apply installs method name on m with the flags' options, changed
// first by each of change.
func (mf *methodFlagSet) apply(name string, m model.Model, modelDir string, seed uint64, change ...func(*finetune.MethodOptions)) (train.Saver, error) {
	meth, err := methodRegistry.Lookup(name, optionFlags)
	if err != nil {
		return nil, err
	}
	o, err := mf.options(modelDir, seed)
	if err != nil {
		return nil, err
	}
	for _, c := range change {
		c(&o)
	}
	return meth.Apply(m, &o)
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

// loadAdapter installs the adapter folder dir (any method gotune knows,
// dispatched on adapter_config.json's peft_type) on m for inference. This
// is what "gotune generate --adapter DIR" and "gotune eval --adapter DIR"
// call after loading the base model.
func loadAdapter(m model.Model, dir string) error {
	if err := methodRegistry.LoadAdapter(dir, m); err != nil {
		return fmt.Errorf("--adapter: %w", err)
	}
	return nil
}
