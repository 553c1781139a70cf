//go:build amd64 && !purego

package cpu

// Assembly routines in kernel_amd64.s.

// cpuid executes CPUID with the given leaf and sub-leaf.
func cpuid(leaf, sub uint32) (eax, ebx, ecx, edx uint32)

// xgetbv0 returns XCR0, the register-state components the OS saves.
func xgetbv0() (eax, edx uint32)

// kernel12x32 is kernel6x16's AVX-512F counterpart for a 12×32 tile: a holds
// kc groups of 12 values, b kc groups of 32.
func kernel12x32(kc int, a, b, c *float32, ldc int)

// kernel6x16 computes C[0:6, 0:16] += A·B for packed panels: a holds kc
// groups of 6 values, b kc groups of 16; C has row stride ldc elements.
// kc must be at least 1. It uses AVX2 and FMA.
func kernel6x16(kc int, a, b, c *float32, ldc int)

// dotAVX2 returns Σ a[i]·b[i] over n elements (AVX2+FMA).
func dotAVX2(a, b *float32, n int) float32

// axpyAVX2 computes y[i] += alpha·x[i] over n elements (AVX2+FMA).
func axpyAVX2(y, x *float32, n int, alpha float32)

// expAVX2 replaces the first n&^7 elements of x by their exponentials
// (AVX2+FMA); see expf for the contract.
func expAVX2(x *float32, n int)

// geluFwdAVX2 computes o[i] = gelu_tanh(x[i]) for the first n&^7 elements.
func geluFwdAVX2(o, x *float32, n int)

// geluBwdAVX2 accumulates dx[i] += grad[i]·gelu_tanh'(x[i]) for the first
// n&^7 elements.
func geluBwdAVX2(dx, grad, x *float32, n int)

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

// hasAVX512F reports whether the CPU supports AVX-512 Foundation and the OS
// saves the opmask and all 512-bit register state on context switches
// (XCR0 bits 5-7, besides the XMM/YMM bits 1-2); without the OS part the
// instructions fault or lose state even on a capable CPU.
func hasAVX512F() bool {
	maxLeaf, _, _, _ := cpuid(0, 0)
	if maxLeaf < 7 {
		return false
	}
	_, _, ecx1, _ := cpuid(1, 0)
	const osxsave = 1 << 27
	if ecx1&osxsave == 0 {
		return false
	}
	const zmmState = 1<<1 | 1<<2 | 1<<5 | 1<<6 | 1<<7
	if xcr0, _ := xgetbv0(); xcr0&zmmState != zmmState {
		return false
	}
	_, ebx7, _, _ := cpuid(7, 0)
	return ebx7&(1<<16) != 0
}

// avx2Kernel wraps kernel6x16 in the microKernel signature.
var avx2Kernel = microKernel{name: "avx2", mr: 6, nr: 16, fn: func(kc int, a, b, c []float32, ldc int) {
	// Bounds the assembly relies on, checked once per tile.
	_ = a[kc*6-1]
	_ = b[kc*16-1]
	_ = c[5*ldc+15]
	kernel6x16(kc, &a[0], &b[0], &c[0], ldc)
}}

// avx512Kernel wraps kernel12x32 in the microKernel signature.
var avx512Kernel = microKernel{name: "avx512", mr: 12, nr: 32, fn: func(kc int, a, b, c []float32, ldc int) {
	_ = a[kc*12-1]
	_ = b[kc*32-1]
	_ = c[11*ldc+31]
	kernel12x32(kc, &a[0], &b[0], &c[0], ldc)
}}

// availableKernels lists the gemm micro-kernels this CPU can run, the
// default first. AVX-512 leads when present: it measured faster than AVX2
// here (docs/BENCHMARKS.md); the portable kernel is always last.
func availableKernels() []microKernel {
	var ks []microKernel
	if hasAVX512F() {
		ks = append(ks, avx512Kernel)
	}
	if hasAVX2FMA() {
		ks = append(ks, avx2Kernel)
	}
	return append(ks, goKernel)
}

// useVectorAsm installs the AVX2 versions of dot, axpy, exp and GELU when
// the CPU has them; the portable versions stay otherwise.
func useVectorAsm() {
	if hasAVX2FMA() {
		dot = func(a, b []float32) float32 {
			if len(a) == 0 {
				return 0
			}
			_ = b[len(a)-1]
			return dotAVX2(&a[0], &b[0], len(a))
		}
		expInPlace = func(x []float32) {
			n := len(x) &^ 7
			if n > 0 {
				expAVX2(&x[0], n)
			}
			for i := n; i < len(x); i++ {
				x[i] = expf(x[i])
			}
		}
		geluForward = func(o, x []float32) {
			n := len(o) &^ 7
			if n > 0 {
				_ = x[n-1]
				geluFwdAVX2(&o[0], &x[0], n)
			}
			geluForwardGo(o[n:], x[n:len(o)])
		}
		geluBackward = func(d, g, x []float32) {
			n := len(d) &^ 7
			if n > 0 {
				_, _ = g[n-1], x[n-1]
				geluBwdAVX2(&d[0], &g[0], &x[0], n)
			}
			geluBackwardGo(d[n:], g[n:len(d)], x[n:len(d)])
		}
		axpy = func(y, x []float32, alpha float32) {
			if len(y) == 0 {
				return
			}
			_ = x[len(y)-1]
			axpyAVX2(&y[0], &x[0], len(y), alpha)
		}
	}
}
