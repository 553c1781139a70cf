package main

import (
	"context"
	"fmt"

	"github.com/gotune/gotune/internal/benchkernels"
)

func init() {
	register(&command{
		Name:    "bench",
		Summary: "microbenchmarks: `gotune bench kernels` times our kernels (GPU) or the CPU backend",
		Run:     runBench,
	})
}

// runBench dispatches "gotune bench <what>"; kernels is the only suite.
func runBench(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprintln(e.Stdout, "usage: gotune bench kernels [flags]   (gotune bench kernels --help lists the flags)")
		if len(args) == 0 {
			return &usageError{msg: "bench: name a suite (kernels)"}
		}
		return nil
	}
	if args[0] != "kernels" {
		return &usageError{msg: fmt.Sprintf("bench: unknown suite %q (want kernels)", args[0])}
	}
	return benchkernels.Run(ctx, args[1:], e.Stdout, e.Stderr)
}
