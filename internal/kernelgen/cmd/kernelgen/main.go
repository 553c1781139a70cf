// Command kernelgen writes the CUDA backend's generated kernel code
// (cuda/kernels_gen.go) from kernels/kernels.def and kernels/launch.cuh.
// `go generate ./cuda` runs it:
//
//	go run ../internal/kernelgen/cmd/kernelgen -def ../kernels/kernels.def -launch ../kernels/launch.cuh -out kernels_gen.go
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/gotune/gotune/engine/fsutil"
	"github.com/gotune/gotune/internal/kernelgen"
)

func main() {
	def := flag.String("def", "../kernels/kernels.def", "the kernel list")
	launch := flag.String("launch", "../kernels/launch.cuh", "the launch-constant header")
	out := flag.String("out", "kernels_gen.go", "the Go file to write (its test support goes beside it, as NAME_test.go)")
	pkg := flag.String("pkg", "cuda", "the Go package of the output")
	flag.Parse()
	if err := run(*def, *launch, *out, *pkg); err != nil {
		fmt.Fprintln(os.Stderr, "kernelgen:", err)
		os.Exit(1)
	}
}

func run(defPath, launchPath, outPath, pkg string) error {
	files, err := kernelgen.GenerateFiles(pkg, defPath, launchPath)
	if err != nil {
		return err
	}
	if err := write(outPath, files.Code); err != nil {
		return err
	}
	return write(kernelgen.TestPath(outPath), files.Test)
}

func write(path string, src []byte) error {
	return fsutil.WriteFileAtomic(path, 0o644, func(w io.Writer) error {
		_, err := w.Write(src)
		return err
	})
}
