// Command benchcpu is the gotune half of scripts/bench-cpu.sh: a small
// server that times engine/cpu operations on request, so that a driver
// (scripts/bench_cpu_torch.py) can interleave them with PyTorch runs of the
// same work in one session — gotune, torch, gotune, torch, … — and machine
// noise falls on both alike.
//
// It reads one JSON command per line on stdin and answers each with one
// JSON line on stdout (see Request and Response). Times are measured here,
// around the work only, so pipe and process overheads stay out of them.
// Everything goes through engine.Backend, as model code does; the number
// of worker threads is GOMAXPROCS, which the driver sets.
//
// It is a benchmark harness, not a user-facing command: it lives under
// internal/ and is built by the script.
package main

import (
	"bufio"
	"fmt"
	"os"
)

func main() {
	in := bufio.NewReaderSize(os.Stdin, 1<<16)
	out := bufio.NewWriter(os.Stdout)
	if err := newServer().serve(in, out); err != nil {
		fmt.Fprintln(os.Stderr, "benchcpu:", err)
		os.Exit(1)
	}
}
