// Package benchutil holds what the `gotune bench` suites share: their
// flag handling (one-line errors, --help on stdout), the median of
// timings, and the test setup that points the CUDA driver at the emulator.
package benchutil

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"

	"github.com/gotune/gotune/cuda"
)

// NewFlagSet returns a flag set for `gotune bench <suite>` whose usage
// text is the summary followed by the flag list. The flag package's own
// output is silenced, so a bad flag becomes one line of error (Parse).
func NewFlagSet(suite, summary string) *flag.FlagSet {
	fs := flag.NewFlagSet("gotune bench "+suite, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: gotune bench %s [flags]\n\n%s\n\nflags:\n", suite, summary)
		fs.PrintDefaults()
	}
	return fs
}

// Parse parses args. It returns help true (and prints the usage to
// stdout) for --help, and a one-line error naming the suite for a bad
// flag or a stray argument.
func Parse(fs *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	suite := fs.Name()
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stdout)
			fs.Usage()
			return true, nil
		}
		return false, fmt.Errorf("%s: %w (%s --help lists the flags)", suite[len("gotune "):], err, suite)
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("%s: unexpected arguments %q", suite[len("gotune "):], fs.Args())
	}
	return false, nil
}

// Median returns the middle of xs (the mean of the two middles when
// even), and 0 for none.
func Median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	n := len(s)
	if n == 0 {
		return 0
	}
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// UseEmulator points the CUDA driver at the emulator at repoRoot's
// kernels/emu/build/libcuda.so when it is built and no driver was chosen
// (cuda.EnvLibrary unset), so tests run the GPU code paths on a CPU.
func UseEmulator(repoRoot string) {
	if os.Getenv(cuda.EnvLibrary) != "" {
		return
	}
	p, err := filepath.Abs(filepath.Join(repoRoot, "kernels", "emu", "build", "libcuda.so"))
	if err != nil {
		return
	}
	if _, err := os.Stat(p); err == nil {
		os.Setenv(cuda.EnvLibrary, p)
	}
}
