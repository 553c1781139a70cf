// Command mkvariant writes a variant of a LLaMA model folder in another
// family (Qwen2, Phi-3 or GLM-4; see package ggufcheck) for
// scripts/check-gguf-llamacpp.sh.
//
//	go run ./internal/ggufcheck/mkvariant --arch qwen2 --from testdata/demo --out DIR
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
	arch := flag.String("arch", "qwen2", "the variant's family: "+strings.Join(ggufcheck.Variants(), ", "))
	from := flag.String("from", "testdata/demo", "LLaMA model `DIR` without biases")
	out := flag.String("out", "", "output `DIR` (required)")
	seed := flag.Uint64("seed", 1, "seed of the random weights the variant adds")
	flag.Parse()
	if *out == "" {
		fmt.Fprintln(os.Stderr, "mkvariant: --out is required")
		os.Exit(2)
	}
	if err := ggufcheck.WriteVariant(*arch, *from, *out, cpu.New(), *seed); err != nil {
		fmt.Fprintln(os.Stderr, "mkvariant:", err)
		os.Exit(1)
	}
}
