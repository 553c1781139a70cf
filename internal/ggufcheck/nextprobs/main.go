// Command nextprobs prints gotune's next-token distributions over the
// sequence that "gotune generate --print-ids" printed (its prompt_ids
// followed by its ids) as one JSON array of rows, row i the distribution
// after the first i+1 tokens; scripts/gguf-greedy.mjs compares
// llama.cpp's with them.
//
//	go run ./internal/ggufcheck/nextprobs --model PATH [--adapter DIR] --generated JSON
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/finetune"
	"github.com/gotune/gotune/internal/ggufcheck"
)

func main() {
	modelPath := flag.String("model", "", "model `PATH`: a Hugging Face folder or a llama2.c file (required)")
	adapter := flag.String("adapter", "", "LoRA adapter `DIR` merged into the model")
	generated := flag.String("generated", "", "the `JSON` line of gotune generate --print-ids (required)")
	flag.Parse()
	if err := run(*modelPath, *adapter, *generated); err != nil {
		fmt.Fprintln(os.Stderr, "nextprobs:", err)
		os.Exit(1)
	}
}

func run(modelPath, adapter, generated string) error {
	if modelPath == "" || generated == "" {
		return fmt.Errorf("--model and --generated are required")
	}
	var g struct {
		PromptIDs []int32 `json:"prompt_ids"`
		IDs       []int32 `json:"ids"`
	}
	if err := json.Unmarshal([]byte(generated), &g); err != nil {
		return fmt.Errorf("--generated: %w", err)
	}
	m, _, err := finetune.LoadMerged(cpu.New(), finetune.MergeOptions{Model: modelPath, Adapter: adapter})
	if err != nil {
		return err
	}
	probs, err := ggufcheck.NextProbs(m, append(g.PromptIDs, g.IDs...))
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(probs)
}
