// Command mkvariant writes a variant of a LLaMA model folder (see package
// ggufcheck: Qwen2, Gemma 2 or Gemma 3) for
// scripts/check-gguf-llamacpp.sh.
//
//	go run ./internal/ggufcheck/mkvariant --arch qwen2 --from testdata/demo --out DIR
package main

import (
	"flag"
	"fmt"
	"os"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/internal/ggufcheck"
)

func main() {
	arch := flag.String("arch", "qwen2", "the variant: qwen2, gemma2 or gemma3")
	from := flag.String("from", "testdata/demo", "LLaMA model `DIR` without biases")
	out := flag.String("out", "", "output `DIR` (required)")
	seed := flag.Uint64("seed", 1, "seed of the random q/k/v biases (qwen2)")
	flag.Parse()
	be := cpu.New()
	builds := map[string]func(m model.Model) (model.Model, error){
		"qwen2":  func(m model.Model) (model.Model, error) { return ggufcheck.Qwen2FromLlama(m, be, *seed) },
		"gemma2": func(m model.Model) (model.Model, error) { return ggufcheck.GemmaFromLlama(m, be, hfconfig.ArchGemma2) },
		"gemma3": func(m model.Model) (model.Model, error) { return ggufcheck.GemmaFromLlama(m, be, hfconfig.ArchGemma3) },
	}
	build, ok := builds[*arch]
	switch {
	case *out == "":
		fmt.Fprintln(os.Stderr, "mkvariant: --out is required")
		os.Exit(2)
	case !ok:
		fmt.Fprintf(os.Stderr, "mkvariant: --arch %q: want qwen2, gemma2 or gemma3\n", *arch)
		os.Exit(2)
	}
	if err := ggufcheck.WriteVariant(*from, *out, be, build); err != nil {
		fmt.Fprintln(os.Stderr, "mkvariant:", err)
		os.Exit(1)
	}
}
