// Command mkcheck writes a model folder that scripts/check-gguf-llamacpp.sh
// exports and runs in llama.cpp (see package ggufcheck): the Qwen2, Phi-3
// or GLM-4 variant of the demo model, or the seeded check model of
// another family.
//
//	go run ./internal/ggufcheck/mkcheck --family qwen2|phi3|glm4|llama|qwen3|olmo2|granite|gemma2|gemma3|gpt2 --out DIR
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
	family := flag.String("family", "", "the model to write (its model_type; gemma3 writes gemma3_text): "+strings.Join(ggufcheck.Families(), ", ")+
		" (qwen2, phi3 and glm4 are variants of the demo model, the others seeded random models) (required)")
	from := flag.String("from", "testdata/demo", "the demo model `DIR` (weights of the variants, tokenizer of all)")
	out := flag.String("out", "", "output `DIR` (required)")
	seed := flag.Uint64("seed", 1, "seed of the random weights (all of a seeded model's, those a variant adds)")
	flag.Parse()
	if *out == "" || *family == "" {
		fmt.Fprintln(os.Stderr, "mkcheck: --family and --out are required")
		os.Exit(2)
	}
	if err := ggufcheck.Write(*family, *from, *out, cpu.New(), *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mkcheck:", err)
		os.Exit(1)
	}
}
