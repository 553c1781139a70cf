package main

import (
	"flag"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/methods/peft"
)

// Adapter folders: the generic --init-adapter flag of "gotune train", and
// the loaders "gotune generate --adapter", "gotune eval --adapter" and
// "gotune merge" use, keyed by adapter_config.json's peft_type.

// initAdapterDir is --init-adapter: a PEFT adapter folder to start
// training from. Adapter methods read it in their Apply.
var initAdapterDir string

// trainFS is the flag set of the "gotune train" invocation being set up,
// remembered by defineAdapterFlags so that a method's Apply can ask which
// flags were given explicitly and what --model is.
var trainFS *flag.FlagSet

// defineAdapterFlags defines --init-adapter on the train flag set (once,
// whichever method's Flags calls it first). Every adapter method's Flags
// calls it.
func defineAdapterFlags(fs *flag.FlagSet) {
	trainFS = fs
	if fs.Lookup("init-adapter") != nil {
		return
	}
	fs.StringVar(&initAdapterDir, "init-adapter", "",
		"start from the adapter in this PEFT adapter `DIR` (adapter_config.json, adapter_model.safetensors) instead of a fresh initialisation: continue training, or train weights made elsewhere; its configuration replaces the method's structural flags")
}

// flagSet reports whether flag name was given on the train command line.
func flagSet(name string) bool {
	if trainFS == nil {
		return false
	}
	set := false
	trainFS.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}

// trainModelDir returns --model of the train invocation being set up.
func trainModelDir() string {
	if trainFS == nil {
		return ""
	}
	if f := trainFS.Lookup("model"); f != nil {
		return f.Value.String()
	}
	return ""
}

// adapterLoader installs the adapter in dir on m for inference (its
// tensors frozen).
type adapterLoader func(m model.Model, dir string) error

// adapterLoaders maps a peft_type to its loader.
var adapterLoaders = map[string]adapterLoader{}

// registerAdapterLoader adds the loader of a peft_type; each adapter
// method's file calls it from init.
func registerAdapterLoader(peftType string, load adapterLoader) {
	if _, dup := adapterLoaders[peftType]; dup {
		panic("gotune: adapter loader " + peftType + " registered twice")
	}
	adapterLoaders[peftType] = load
}

// loadAdapter installs the adapter folder dir (any method gotune knows,
// dispatched on adapter_config.json's peft_type) on m for inference. This
// is what "gotune generate --adapter DIR" and "gotune eval --adapter DIR"
// call after loading the base model.
func loadAdapter(m model.Model, dir string) error {
	h, err := peft.ReadHeader(dir)
	if err != nil {
		return fmt.Errorf("--adapter: %w", err)
	}
	load, ok := adapterLoaders[h.PeftType]
	if !ok {
		return fmt.Errorf("--adapter %s: peft_type %q is not supported (gotune loads: %s)", dir, h.PeftType,
			strings.Join(slices.Sorted(maps.Keys(adapterLoaders)), ", "))
	}
	if err := load(m, dir); err != nil {
		return fmt.Errorf("--adapter: %w", err)
	}
	return nil
}
