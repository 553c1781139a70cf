package cuda

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/internal/kernelgen"
)

// TestGeneratedKernelsUpToDate fails when kernels_gen.go (or its test
// support) differs from what kernels.def and launch.cuh generate.
func TestGeneratedKernelsUpToDate(t *testing.T) {
	files, err := kernelgen.GenerateFiles("cuda", "../kernels/kernels.def", "../kernels/launch.cuh")
	require.NoError(t, err)
	for path, want := range map[string][]byte{"kernels_gen.go": files.Code, "kernels_gen_test.go": files.Test} {
		got, err := os.ReadFile(path)
		require.NoError(t, err)
		assert.Equal(t, string(want), string(got), "%s is stale: run `go generate ./cuda`", path)
	}
}

// TestLaunchConstantsMatchC compiles a C++ program that prints every
// launch.cuh macro as the C++ compiler evaluates it, and compares with the
// generated Go constants and functions: the translation is checked by an
// independent evaluator, not by the generator itself.
func TestLaunchConstantsMatchC(t *testing.T) {
	cxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("g++ not found")
	}
	header, err := filepath.Abs("../kernels/launch.cuh")
	require.NoError(t, err)
	var prog strings.Builder
	fmt.Fprintf(&prog, "#include %q\n#include <cstdio>\nint main() {\n", header)
	want := map[string]int{}
	for name, v := range launchConstantsByCName {
		fmt.Fprintf(&prog, "  std::printf(\"%s %%lld\\n\", (long long)(%s));\n", name, name)
		want[name] = v
	}
	for name, f := range launchFuncsByCName {
		for _, dmax := range attnFwdVariants {
			key := fmt.Sprintf("%s(%d)", name, dmax)
			fmt.Fprintf(&prog, "  std::printf(\"%s %%lld\\n\", (long long)(%s));\n", key, key)
			want[key] = f(dmax)
		}
	}
	prog.WriteString("  return 0;\n}\n")
	dir := t.TempDir()
	src, bin := filepath.Join(dir, "launch.cpp"), filepath.Join(dir, "launch")
	require.NoError(t, os.WriteFile(src, []byte(prog.String()), 0o644))
	out, err := exec.Command(cxx, "-std=c++17", "-o", bin, src).CombinedOutput()
	require.NoError(t, err, "g++: %s", out)
	out, err = exec.Command(bin).Output()
	require.NoError(t, err)
	got := map[string]int{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		name, val, ok := strings.Cut(line, " ")
		require.True(t, ok, "line %q", line)
		v, err := strconv.Atoi(val)
		require.NoError(t, err)
		got[name] = v
	}
	require.NotEmpty(t, want)
	names := make([]string, 0, len(want))
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		assert.Equal(t, got[n], want[n], "%s: C++ says %d, Go %d", n, got[n], want[n])
	}
}
