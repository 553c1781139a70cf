package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/llama2c"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/tokenizer"
)

// modelPathHelp documents what --model accepts in generate, eval and demo.
const modelPathHelp = "model: a Hugging Face checkpoint `PATH` (folder with config.json and model.safetensors) or a llama2.c legacy .bin checkpoint file"

// loadModel loads --model: a Hugging Face folder, or a llama2.c legacy
// checkpoint file (loaded with interleaved RoPE).
func loadModel(path string, be engine.Backend) (model.Model, error) {
	info, err := os.Stat(path)
	if err != nil {
		return nil, fmt.Errorf("--model: %w", err)
	}
	if info.IsDir() {
		return model.Load(path, be)
	}
	return llama2c.Load(path, be)
}

// loadTokenizer loads --tokenizer, or when it is empty the tokenizer
// next to the model: in a Hugging Face folder (tokenizer.json), or in the
// folder of a llama2.c checkpoint (tokenizer.bin or a single tok*.bin).
func loadTokenizer(flagValue, modelPath string) (tokenizer.Tokenizer, error) {
	if flagValue != "" {
		tok, err := tokenizer.Load(flagValue)
		if err != nil {
			return nil, fmt.Errorf("--tokenizer: %w", err)
		}
		return tok, nil
	}
	dir := modelPath
	if info, err := os.Stat(modelPath); err == nil && !info.IsDir() {
		dir = filepath.Dir(modelPath)
	}
	tok, err := tokenizer.Load(dir)
	if err != nil {
		return nil, fmt.Errorf("no tokenizer found with the model (%v); pass --tokenizer PATH", err)
	}
	return tok, nil
}

// checkVocab rejects a tokenizer whose ids do not fit the model.
func checkVocab(tok tokenizer.Tokenizer, m model.Model) error {
	if tv, mv := tok.VocabSize(), m.Config().VocabSize; tv > mv {
		return fmt.Errorf("the tokenizer has %d tokens but the model's vocabulary has %d: they do not belong together (check --tokenizer)", tv, mv)
	}
	return nil
}

// chooseTemplate returns --template, or the model's default (from its
// tokenizer's chat_template, else plain) with a note saying so.
func chooseTemplate(name string, tok tokenizer.Tokenizer) (chat.Template, string, error) {
	if name == "" || name == "auto" {
		t, note := chat.Default(tok)
		return t, note, nil
	}
	t, err := chat.Lookup(name)
	if err != nil {
		return nil, "", &usageError{msg: "--template: " + err.Error()}
	}
	return t, "chat template " + t.Name() + " (--template)", nil
}
