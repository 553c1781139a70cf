package main

import (
	"fmt"
	"github.com/gotune/gotune/finetune"
	"io"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/tokenizer"
)

// modelPathHelp documents what --model accepts in generate, eval and demo.
const modelPathHelp = "model: a Hugging Face checkpoint `PATH` (folder with config.json and model.safetensors) or a llama2.c legacy .bin checkpoint file"

// loadModel loads --model for inference under policy p: a Hugging Face
// folder (stored in p's frozen-weight dtype as it is read), or a llama2.c
// legacy checkpoint file (loaded with interleaved RoPE, in float32; a
// small model that inferencePrecision converts).
func loadModel(path string, be engine.Backend, p engine.Precision) (model.Model, error) {
	return finetune.LoadModel(path, be, p, optionFlags)
}

// inferencePrecision applies policy p to a model loaded for inference
// (after its adapter): the base weights are frozen (bfloat16 only under
// bf16), and an adapter's tensors get the layout a bf16 training run
// gives trainable ones (float32 values, bfloat16 compute copies for
// matrix products), so generation and evaluation compute what that run's
// forward pass computes. The adapter's tensors stay frozen.
func inferencePrecision(m model.Model, p engine.Precision) error {
	pm, ok := m.(engine.PrecisionModel)
	if !ok {
		return nil
	}
	base := map[*engine.Param]bool{}
	for _, q := range m.BaseParams() {
		base[q] = true
	}
	var adapter []*engine.Param
	for _, q := range m.Params() {
		if base[q] {
			model.SetTrainable(q, false)
		} else if !q.Trainable {
			adapter = append(adapter, q)
			q.Trainable = true // no gradient buffer: only SetPrecision reads it
		}
	}
	err := pm.SetPrecision(p)
	for _, q := range adapter {
		q.Trainable = false
	}
	return err
}

// loadTokenizer loads --tokenizer, or when it is empty the tokenizer
// next to the model (finetune.LoadTokenizer).
func loadTokenizer(flagValue, modelPath string) (tokenizer.Tokenizer, error) {
	return finetune.LoadTokenizer(flagValue, modelPath, optionFlags)
}

// checkVocab rejects a tokenizer whose ids do not fit the model.
func checkVocab(tok tokenizer.Tokenizer, m model.Model) error {
	if tv, mv := tok.VocabSize(), m.Config().VocabSize; tv > mv {
		return fmt.Errorf("the tokenizer has %d tokens but the model's vocabulary has %d: they do not belong together (check --tokenizer)", tv, mv)
	}
	return nil
}

// chooseTemplate returns --template (auto, a built-in name or a .jinja
// file; auto is the model's own chat template, else plain) with a note
// saying which it is.
func chooseTemplate(name string, tok tokenizer.Tokenizer) (chat.Template, string, error) {
	return finetune.ChooseTemplate(name, tok, optionFlags)
}

// warnConfig prints what parsing config.json found worth a warning
// (unknown keys, base-model dropout gotune does not apply), one line each.
func warnConfig(w io.Writer, c *hfconfig.Config) {
	for _, line := range c.Warnings() {
		fmt.Fprintln(w, "warning: "+line)
	}
}
