//go:build amd64 && !purego

package cpu

// Assembly routines in kernel_amd64.s.

// cpuid executes CPUID with the given leaf and sub-leaf.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// xgetbv0 returns XCR0, the register-state components the OS saves.
func xgetbv0() (eax, edx uint32)

// kernel6x16 computes C[0:6, 0:16] += A·B for packed panels: a holds kc
// groups of 6 values, b kc groups of 16; C has row stride ldc elements.
// kc must be at least 1. It uses AVX2 and FMA.
func kernel6x16(kc int, a, b, c *float32, ldc int)

// hasAVX2FMA reports whether the CPU and OS support AVX2 and FMA3.
func hasAVX2FMA() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const fma, osxsave, avx = 1 << 12, 1 << 27, 1 << 28
	if ecx1&fma == 0 || ecx1&osxsave == 0 || ecx1&avx == 0 {
		return false
	}
	if xcr0, _ := xgetbv0(); xcr0&6 != 6 { // XMM and YMM state enabled
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ebx7&(1<<5) != 0
}

// avx2Kernel wraps kernel6x16 in the microKernel signature.
var avx2Kernel = microKernel{mr: 6, nr: 16, fn: func(kc int, a, b, c []float32, ldc int) {
	// Bounds the assembly relies on, checked once per tile.
	_ = a[kc*6-1]
	_ = b[kc*16-1]
	_ = c[5*ldc+15]
	kernel6x16(kc, &a[0], &b[0], &c[0], ldc)
}}

func init() {
	if hasAVX2FMA() {
		activeKernel = avx2Kernel
	}
}
