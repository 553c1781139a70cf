package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/methods/peft"
)

// FuzzAdapterFolder feeds an arbitrary adapter_config.json and
// adapter_model.safetensors to the adapter loader of every method
// (dispatched on peft_type, as gotune generate --adapter does) on the
// golden LLaMA: an error or an installed adapter, never a panic. Seeds:
// every golden LLaMA adapter folder, and each with its config truncated,
// a duplicate key, or its weights cut short.
func FuzzAdapterFolder(f *testing.F) {
	for _, name := range []string{"lora", "dora", "rslora", "lora-all-linear", "adapter-houlsby", "adapter-parallel",
		"adapter-pfeiffer", "prefix", "prefix-local", "prefix-projection", "prompt", "ptuning-lstm", "ptuning-mlp"} {
		dir := filepath.Join(goldenDir, "methods", name)
		cfg, err1 := os.ReadFile(filepath.Join(dir, peft.ConfigFile))
		w, err2 := os.ReadFile(filepath.Join(dir, peft.WeightsFile))
		if err1 != nil || err2 != nil {
			f.Fatal(err1, err2)
		}
		f.Add(cfg, w)
		f.Add(cfg[:len(cfg)/2], w)
		f.Add(append([]byte(`{"r": 100000000, `), cfg[1:]...), w)
		f.Add(cfg, w[:len(w)*2/3])
	}
	base := filepath.Join(goldenDir, "llama-gqa")
	f.Fuzz(func(t *testing.T, cfg, weights []byte) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, peft.ConfigFile), cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, peft.WeightsFile), weights, 0o644); err != nil {
			t.Fatal(err)
		}
		m, err := model.Load(base, cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		loadAdapter(m, dir)
	})
}
