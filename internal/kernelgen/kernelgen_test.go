package kernelgen

import (
	"go/parser"
	"go/token"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGoName(t *testing.T) {
	for c, want := range map[string]string{
		"GT_GEMM_BF16_SMEM": "gemmBf16Smem",
		"GT_EW_THREADS":     "ewThreads",
		"gt_attn_bwd_dq_32": "attnBwdDq32",
		"gt_fill":           "fill",
	} {
		assert.Equal(t, want, GoName(c), c)
	}
	assert.Equal(t, "xDt", paramName("x_dt"))
	assert.Equal(t, "Hq", paramName("Hq"))
	assert.Equal(t, "type_", paramName("type"))
}

func TestParseDefErrors(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"bad line":       {"GT_KERNEL(gt_x, EW)\n", "kernels.def:1: not a GT_KERNEL"},
		"bad type":       {"GT_KERNEL(gt_x, EW, (double v))\n", "want a pointer, int, float or unsigned long long"},
		"duplicate":      {"GT_KERNEL(gt_x, EW, (int n))\nGT_KERNEL(gt_x, EW, (int n))\n", "kernels.def:2: kernel gt_x listed twice"},
		"duplicate name": {"GT_KERNEL(gt_x, EW, (int n, float n))\n", "named twice"},
		"empty":          {"// nothing\n", "no kernels"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseDef([]byte(tc.src))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

func TestParseLaunchErrors(t *testing.T) {
	for name, tc := range map[string]struct{ src, want string }{
		"ternary":       {"#define GT_A (1 ? 2 : 3)\n", "unsupported syntax"},
		"unknown name":  {"#define GT_A (GT_B + 1)\n", "GT_B is not a parameter or an earlier GT_ define"},
		"later name":    {"#define GT_A GT_B\n#define GT_B 1\n", "GT_B is not"},
		"const calls f": {"#define GT_F(X) (X * 2)\n#define GT_A GT_F(3)\n", "a constant cannot use the function-like GT_F"},
		"redefined":     {"#define GT_A 1\n#define GT_A 2\n", "GT_A defined twice"},
		"shift":         {"#define GT_A (1 << 3)\n", "unsupported syntax"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := ParseLaunch([]byte(tc.src))
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}

// TestGenerate checks the shape of the output on a small contract: typed
// launchers, one per family of variants, and constants that parse as Go.
func TestGenerate(t *testing.T) {
	def := `// ---- section ----
// x[i] = v
GT_KERNEL(gt_fill, EW, (void* x, int x_dt, int n, float v))
GT_KERNEL(gt_attn_fwd_32, ATTN, (const float* q, int D, unsigned long long seed))
GT_KERNEL(gt_attn_fwd_64, ATTN, (const float* q, int D, unsigned  long long seed))
`
	launch := `#ifndef G
#define GOTUNE_G
// GT_THREADS is the block size.
#define GT_THREADS 256
#define GT_SMEM(DMAX) (4 * (DMAX) + GT_THREADS)
#endif
`
	kernels, err := ParseDef([]byte(def))
	require.NoError(t, err)
	require.Len(t, kernels, 3)
	assert.Equal(t, []string{"x[i] = v"}, kernels[0].Doc, "section headings are not docs")
	defines, err := ParseLaunch([]byte(launch))
	require.NoError(t, err)
	src, err := Generate("cuda", kernels, defines)
	require.NoError(t, err)
	_, err = parser.ParseFile(token.NewFileSet(), "gen.go", src, 0)
	require.NoError(t, err)
	code := string(src)
	for _, want := range []string{
		"func (be *Backend) launchFill(op string, geom geomEw, x DevicePtr, xDt int, n int, v float32)",
		"func (be *Backend) launchAttnFwd(op string, geom geomAttn, variant int, q DevicePtr, D int, seed uint64)",
		`params: "piu"`,
		"var attnFwdVariants = [...]int{32, 64}",
		"threads = 256",
		"func smem(DMAX int) int { return (4*(DMAX) + threads) }",
		"// threads is the block size.",
	} {
		assert.Contains(t, code, want)
	}
	assert.Equal(t, 1, strings.Count(code, "launchAttnFwd("), "one launcher per family")
}

func TestGenerateRejectsMismatchedVariants(t *testing.T) {
	kernels, err := ParseDef([]byte("GT_KERNEL(gt_a_32, EW, (int n))\nGT_KERNEL(gt_a_64, EW, (float n))\n"))
	require.NoError(t, err)
	_, err = Generate("cuda", kernels, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "variants must share both")
}
