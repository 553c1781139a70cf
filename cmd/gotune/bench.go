package main

import (
	"context"
	"fmt"
	"io"

	"github.com/gotune/gotune/internal/benchkernels"
	"github.com/gotune/gotune/internal/benchtrain"
)

func init() {
	register(&command{
		Name:    "bench",
		Summary: "benchmarks: `gotune bench kernels` times our kernels (GPU) or the CPU backend; `gotune bench train` times training steps",
		Run:     runBench,
	})
}

// runBench dispatches "gotune bench <suite>" to the suite's library.
func runBench(ctx context.Context, e *env, args []string) error {
	suites := map[string]func(context.Context, []string, io.Writer, io.Writer) error{
		"kernels": benchkernels.Run,
		"train":   benchtrain.RunCLI,
	}
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(e.Stdout, "usage: gotune bench kernels|train [flags]   (gotune bench SUITE --help lists the flags)")
		if len(args) == 0 {
			return &usageError{msg: "bench: name a suite (kernels or train)"}
		}
		return nil
	}
	run, ok := suites[args[0]]
	if !ok {
		return &usageError{msg: fmt.Sprintf("bench: unknown suite %q (want kernels or train)", args[0])}
	}
	return run(ctx, args[1:], e.Stdout, e.Stderr)
}
