// Command mkqwen2 writes the Qwen2 variant of a LLaMA model folder (see
// package ggufcheck) for scripts/check-gguf-llamacpp.sh.
//
//	go run ./internal/ggufcheck/mkqwen2 --from testdata/demo --out DIR
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/internal/ggufcheck"
)

func main() {
	from := flag.String("from", "testdata/demo", "LLaMA model `DIR` without biases")
	out := flag.String("out", "", "output `DIR` (required)")
	seed := flag.Uint64("seed", 1, "seed of the random q/k/v biases")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mkqwen2: --out is required")
		os.Exit(2)
	}
	if err := ggufcheck.WriteQwen2(*from, *out, cpu.New(), *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mkqwen2:", err)
		os.Exit(1)
	}
}
