// Command mkcheck writes a model folder that scripts/check-gguf-llamacpp.sh
// exports and runs in llama.cpp (see package ggufcheck): the Qwen2
// variant of the demo model, or the seeded check model of another family.
//
//	go run ./internal/ggufcheck/mkcheck --family qwen2|llama|qwen3|olmo2|granite|gemma2|gemma3|gpt2 --out DIR
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/internal/ggufcheck"
)

func main() {
	family := flag.String("family", "", "model_type of the model to write: qwen2 (the demo with q/k/v biases) or "+strings.Join(ggufcheck.Families(), ", ")+" (required)")
	from := flag.String("from", "testdata/demo", "the demo model `DIR` (weights of the Qwen2 variant, tokenizer of all)")
	out := flag.String("out", "", "output `DIR` (required)")
	seed := flag.Uint64("seed", 1, "seed of the random weights (the Qwen2 variant's q/k/v biases)")
	flag.Parse()
	if *out == "" || *family == "" {
		fmt.Fprintln(os.Stderr, "mkcheck: --family and --out are required")
		os.Exit(2)
	}
	var err error
	if *family == "qwen2" {
		err = ggufcheck.WriteQwen2(*from, *out, cpu.New(), *seed)
	} else {
		err = ggufcheck.WriteCheckModel(*family, *from, *out, cpu.New(), *seed)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkcheck:", err)
		os.Exit(1)
	}
}
