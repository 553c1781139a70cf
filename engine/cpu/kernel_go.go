package cpu

import (
	"fmt"
	"os"
	"strings"
)

// microKernel computes C[0:mr, 0:nr] += Apanel·Bpanel, where a holds kc
// groups of mr values (a column of op(A) each), b holds kc groups of nr
// values (a row of op(B) each), and C has row stride ldc.
type microKernel struct {
	name   string
	mr, nr int
	fn     func(kc int, a, b, c []float32, ldc int)
}

// maxTile bounds mr·nr over all kernels (edge-tile scratch size): the
// AVX-512 kernel's 12×32 tile is the largest.
const maxTile = 12 * 32

// goKernel is the portable 4×4 kernel: sixteen scalar accumulators that
// the Go compiler keeps (mostly) in registers.
var goKernel = microKernel{name: "go", mr: 4, nr: 4, fn: kernel4x4}

// activeKernel is the kernel gemm uses, chosen at init (see KernelEnv).
var activeKernel = goKernel

// KernelEnv names the environment variable that forces the Gemm
// micro-kernel: "avx512", "avx2" or "go" ("go" also selects the portable
// dot, axpy, exp and GELU loops, as the purego build tag does). Unset or
// empty picks the fastest kernel the CPU and OS support. A kernel this
// machine cannot run is refused with a message on standard error and the
// default is used, so a stale setting never crashes a program.
const KernelEnv = "GOTUNE_CPU_KERNEL"

// GemmKernel returns the name of the micro-kernel Gemm uses in this
// process ("avx512", "avx2" or "go"), for benchmark and log output.
func GemmKernel() string { return activeKernel.name }

func init() {
	k, err := chooseKernel(availableKernels(), os.Getenv(KernelEnv))
	if err != nil {
		fmt.Fprintf(os.Stderr, "gotune/engine/cpu: %v\n", err)
	}
	activeKernel = k
	if k.name != goKernel.name {
		useVectorAsm()
	}
}

// chooseKernel returns the kernel named by want among avail (listed
// default first), or the default with an error saying why want was not
// honoured.
func chooseKernel(avail []microKernel, want string) (microKernel, error) {
	want = strings.ToLower(strings.TrimSpace(want))
	if want == "" {
		return avail[0], nil
	}
	names := make([]string, len(avail))
	for i, k := range avail {
		if k.name == want {
			return k, nil
		}
		names[i] = k.name
	}
	return avail[0], fmt.Errorf("%s=%q is not a kernel this machine can run (available: %s); using %q",
		KernelEnv, want, strings.Join(names, ", "), avail[0].name)
}

func kernel4x4(kc int, a, b, c []float32, ldc int) {
	var c00, c01, c02, c03 float32
	var c10, c11, c12, c13 float32
	var c20, c21, c22, c23 float32
	var c30, c31, c32, c33 float32
	a = a[:kc*4]
	b = b[:kc*4]
	for p := 0; p < kc*4; p += 4 {
		aa := a[p : p+4 : p+4]
		bb := b[p : p+4 : p+4]
		b0, b1, b2, b3 := bb[0], bb[1], bb[2], bb[3]
		a0 := aa[0]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		a1 := aa[1]
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		a2 := aa[2]
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		a3 := aa[3]
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	r := c[0:4:4]
	r[0] += c00
	r[1] += c01
	r[2] += c02
	r[3] += c03
	r = c[ldc : ldc+4 : ldc+4]
	r[0] += c10
	r[1] += c11
	r[2] += c12
	r[3] += c13
	r = c[2*ldc : 2*ldc+4 : 2*ldc+4]
	r[0] += c20
	r[1] += c21
	r[2] += c22
	r[3] += c23
	r = c[3*ldc : 3*ldc+4 : 3*ldc+4]
	r[0] += c30
	r[1] += c31
	r[2] += c32
	r[3] += c33
}
