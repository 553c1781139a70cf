package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/runcard"
	"github.com/gotune/gotune/finetune"
)

func init() {
	register(&command{
		Name:    "merge",
		Summary: "merge a LoRA/DoRA adapter into its base model's weights",
		Run:     runMerge,
	})
}

const mergeDescription = `
Loads a base model and a LoRA or DoRA adapter in PEFT's format
(adapter_config.json, adapter_model.safetensors, e.g. the --out of
"gotune train --method lora"), folds the adapter into the base weights
(W + s·B·A; for DoRA m ⊙ (W + s·B·A) / ‖W + s·B·A‖ per output feature)
and writes the merged model in Hugging Face layout (config.json,
model.safetensors, or shards with model.safetensors.index.json beyond
--max-shard-size) to --out, with the base model's tokenizer files and a
model card (README.md: base model, adapter, its training run, the
command). The
weights are stored in the base model's torch_dtype (e.g. BF16) unless
--save-dtype says otherwise; the merge itself is computed in float32.
The merged model computes what the base model with the adapter computes
(up to that rounding), at the base model's cost, and needs no adapter
support to load.`

func runMerge(ctx context.Context, e *env, args []string) error {
	var modelDir, adapterDir, out, device string
	var save saveFlags
	fs := newFlagSet("merge", "gotune merge --model DIR --adapter DIR --out DIR", mergeDescription)
	fs.StringVar(&modelDir, "model", "", "base model `DIR` in Hugging Face layout (required)")
	fs.StringVar(&adapterDir, "adapter", "", "LoRA adapter `DIR` in PEFT layout (required)")
	fs.StringVar(&out, "out", "", "output `DIR` for the merged model (required; created if needed)")
	fs.StringVar(&device, "device", "cpu", deviceHelp)
	save.define(fs, "merged weights")
	var qf quantizeFlags
	qf.define(fs)
	if err := parseFlags(fs, args, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	switch {
	case modelDir == "":
		return &usageError{msg: "--model is required"}
	case adapterDir == "":
		return &usageError{msg: "--adapter is required"}
	case out == "":
		return &usageError{msg: "--out is required"}
	}
	if !validDevice(device) {
		return &usageError{msg: fmt.Sprintf("unknown --device %q (want auto, cpu, cuda or cuda:N)", device)}
	}
	saveOpts, err := save.options()
	if err != nil {
		return err
	}
	if same, err := finetune.SameDir(modelDir, out); err == nil && same {
		return fmt.Errorf("--out %s is the model directory: merging would overwrite the base model; choose another --out", out)
	}
	be, err := openDevice(device, func(s string) { fmt.Fprintln(e.Stderr, s) })
	if err != nil {
		return err
	}
	defer be.Close()
	mo := finetune.MergeOptions{Model: modelDir, Adapter: adapterDir, Names: mergeNames,
		Prepare: func(m model.Model) error { return qf.forMerge(m, e.Stdout) }}
	m, n, err := finetune.LoadMerged(be, mo)
	if err != nil {
		return err
	}
	if err := saveHF(e, m, modelDir, out, saveOpts, fmt.Sprintf("merged %d LoRA layers of %s into %s; ", n, adapterDir, modelDir)); err != nil {
		return err
	}
	return writeMergeCard(e, out, m, mo, n, saveOpts, "gotune merge "+shellJoin(args))
}

// writeMergeCard writes the merged model's card into out and says so.
func writeMergeCard(e *env, out string, m model.Model, o finetune.MergeOptions, layers int, opts model.SaveOptions, command string) error {
	if err := finetune.WriteMergeCard(out, m, o, layers, opts, command); err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "wrote the model card %s\n", filepath.Join(out, runcard.CardFile))
	return nil
}

// mergeNames names finetune.MergeOptions by the flags of merge and export.
var mergeNames = finetune.Names{"Model": "--model", "Adapter": "--adapter"}

// saveHF writes m to out in Hugging Face layout with the tokenizer files
// found beside modelPath, and prints what it wrote after prefix.
func saveHF(e *env, m model.Model, modelPath, out string, opts model.SaveOptions, prefix string) error {
	if err := m.SaveWithOptions(out, opts); err != nil {
		return err
	}
	from := modelPath
	if info, err := os.Stat(modelPath); err == nil && !info.IsDir() {
		from = filepath.Dir(modelPath)
	}
	copied, err := finetune.CopyTokenizerFiles(from, out)
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Stdout, "%swrote %s (%s)", prefix, out, finetune.DescribeSaved(m, opts, out))
	if copied > 0 {
		fmt.Fprintf(e.Stdout, " (with %d tokenizer files)", copied)
	}
	fmt.Fprintln(e.Stdout)
	return nil
}
