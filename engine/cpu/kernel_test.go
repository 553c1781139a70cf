package cpu

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/backendtest"
)

// useKernel makes k the gemm micro-kernel until the test ends; the
// portable kernel also brings the portable dot, axpy, exp and GELU, as
// KernelEnv=go does.
func useKernel(t *testing.T, k microKernel) {
	savedK, savedDot, savedAxpy, savedExp := activeKernel, dot, axpy, expInPlace
	savedGF, savedGB := geluForward, geluBackward
	activeKernel = k
	if k.name == goKernel.name {
		dot, axpy, expInPlace = dotGo, axpyGo, expInPlaceGo
		geluForward, geluBackward = geluForwardGo, geluBackwardGo
	}
	t.Cleanup(func() {
		activeKernel, dot, axpy, expInPlace = savedK, savedDot, savedAxpy, savedExp
		geluForward, geluBackward = savedGF, savedGB
	})
}

// TestEachKernel runs the conformance suite once per micro-kernel this
// machine can run (AVX-512, AVX2 and the portable one on a current x86),
// not just the one selected at init, so every fallback stays correct.
func TestEachKernel(t *testing.T) {
	for _, k := range availableKernels() {
		t.Run(k.name, func(t *testing.T) {
			useKernel(t, k)
			backendtest.Run(t, New(), backendtest.Options{Short: true})
		})
	}
}

// TestKernelBlocking checks the invariants gemm's blocking assumes of
// every kernel: whole tiles per mcBlock rows and nSub columns, and edge
// tiles that fit the scratch buffer.
func TestKernelBlocking(t *testing.T) {
	for _, k := range availableKernels() {
		if mcBlock%k.mr != 0 || nSub%k.nr != 0 || k.mr*k.nr > maxTile {
			t.Errorf("kernel %s (%d×%d): needs mcBlock %d and nSub %d multiples of its tile and mr·nr <= maxTile %d",
				k.name, k.mr, k.nr, mcBlock, nSub, maxTile)
		}
	}
}

// TestKernelTile calls each micro-kernel directly on one tile with a row
// stride wider than the tile, checking C += A·B against a float64 sum and
// that no element outside the tile is touched.
func TestKernelTile(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	for _, k := range availableKernels() {
		for _, kc := range []int{1, 2, 5, 64, 257} {
			a, b := randSlice(rng, kc*k.mr), randSlice(rng, kc*k.nr)
			ldc := k.nr + 3
			c := randSlice(rng, k.mr*ldc)
			c0 := append([]float32(nil), c...)
			k.fn(kc, a, b, c, ldc)
			for i := range k.mr {
				for j := range ldc {
					got := c[i*ldc+j]
					if j >= k.nr {
						if got != c0[i*ldc+j] {
							t.Fatalf("%s kc=%d: wrote C[%d][%d] outside the %d×%d tile", k.name, kc, i, j, k.mr, k.nr)
						}
						continue
					}
					want := float64(c0[i*ldc+j])
					for p := range kc {
						want += float64(a[p*k.mr+i]) * float64(b[p*k.nr+j])
					}
					if d := math.Abs(float64(got) - want); d > 1e-5*float64(kc+1)*(1+math.Abs(want)) {
						t.Fatalf("%s kc=%d: C[%d][%d] = %v, want %v", k.name, kc, i, j, got, want)
					}
				}
			}
		}
	}
}

// TestGemmRaggedEachKernel runs packed-path products whose sizes are not
// multiples of any tile (edge tiles in both directions, a k that crosses a
// kcBlock boundary, m past one mcBlock, n past one nSub) through every
// kernel, against a float64 reference. The assembly kernels must also agree
// bit for bit with each other: both accumulate each element with one FMA
// per k in the same order and add to C once per kcBlock, so switching
// between them must not change a training run.
func TestGemmRaggedEachKernel(t *testing.T) {
	defer func(k microKernel) { activeKernel = k }(activeKernel)
	rng := rand.New(rand.NewPCG(9, 10))
	shapes := [][3]int{{97, 33, 300}, {108, 63, 129}, {121, 290, 70}, {16, 16, 433}, {50, 47, 48}}
	for _, s := range shapes {
		m, n, k := s[0], s[1], s[2]
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			a, b := randSlice(rng, m*k), randSlice(rng, k*n)
			lda, ldb := k, n
			if tr[0] {
				lda = m
			}
			if tr[1] {
				ldb = k
			}
			want := make([]float64, m*n)
			for i := range m {
				for j := range n {
					for p := range k {
						ai, bi := i*lda+p, p*ldb+j
						if tr[0] {
							ai = p*lda + i
						}
						if tr[1] {
							bi = j*ldb + p
						}
						av, bv := a[ai], b[bi]
						want[i*n+j] += 0.5 * float64(av) * float64(bv)
					}
				}
			}
			outs := map[string][]float32{}
			for _, kern := range availableKernels() {
				activeKernel = kern
				c := make([]float32, m*n)
				gemm(true, m, n, k, 0.5, fmat(a, lda, tr[0]), fmat(b, ldb, tr[1]), 0, c, n)
				outs[kern.name] = c
				var num, den float64
				for i, w := range want {
					d := float64(c[i]) - w
					num += d * d
					den += w * w
				}
				if rel := math.Sqrt(num / den); !(rel <= 1e-5) {
					t.Errorf("%s m=%d n=%d k=%d trans=%v: relative error %.3g", kern.name, m, n, k, tr, rel)
				}
			}
			if x, y := outs["avx512"], outs["avx2"]; x != nil && y != nil {
				for i := range x {
					if math.Float32bits(x[i]) != math.Float32bits(y[i]) {
						t.Errorf("m=%d n=%d k=%d trans=%v: element %d avx512 %v, avx2 %v (not bit-identical)", m, n, k, tr, i, x[i], y[i])
						break
					}
				}
			}
		}
	}
}

// TestChooseKernel covers KernelEnv parsing: default, a named kernel,
// case and spaces, and a kernel the machine lacks.
func TestChooseKernel(t *testing.T) {
	avail := []microKernel{{name: "avx512"}, {name: "avx2"}, {name: "go"}}
	for _, tc := range []struct {
		env, want string
		err       bool
	}{
		{"", "avx512", false},
		{"avx2", "avx2", false},
		{" GO ", "go", false},
		{"neon", "avx512", true},
	} {
		k, err := chooseKernel(avail, tc.env)
		if k.name != tc.want || (err != nil) != tc.err {
			t.Errorf("chooseKernel(%q) = %q, %v; want %q, error %v", tc.env, k.name, err, tc.want, tc.err)
		}
	}
	if _, err := chooseKernel(avail[2:], "avx512"); err == nil || !strings.Contains(err.Error(), KernelEnv) {
		t.Errorf("unavailable kernel: error %v should name %s", err, KernelEnv)
	}
}

func randSlice(rng *rand.Rand, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
	return v
}

// TestVectorKernels compares the active dot/axpy (assembly where
// available) with the portable versions at every tail length.
func TestVectorKernels(t *testing.T) {
	for n := 0; n <= 70; n++ {
		a, b := make([]float32, n), make([]float32, n)
		for i := range a {
			a[i] = float32(i%7) - 2.5
			b[i] = float32(i%5)*0.25 + 1
		}
		if got, want := dot(a, b), dotGo(a, b); math.Abs(float64(got-want)) > 1e-4*(1+math.Abs(float64(want))) {
			t.Errorf("dot n=%d: %v, portable %v", n, got, want)
		}
		y1, y2 := append([]float32(nil), b...), append([]float32(nil), b...)
		axpy(y1, a, -1.5)
		axpyGo(y2, a, -1.5)
		for i := range y1 {
			if y1[i] != y2[i] {
				t.Errorf("axpy n=%d element %d: %v, portable %v", n, i, y1[i], y2[i])
				break
			}
		}
	}
}

// BenchmarkGemmKernels times the packed gemm path with each available
// micro-kernel on the BenchmarkGemm shapes (one thread pool, as Gemm);
// the kernels run back to back per shape, so rerun the command for
// interleaved samples (docs/BENCHMARKS.md).
func BenchmarkGemmKernels(b *testing.B) {
	for _, s := range [][3]int{{512, 512, 512}, {1024, 4096, 1024}} {
		m, n, k := s[0], s[1], s[2]
		rng := rand.New(rand.NewPCG(1, 2))
		a, bm, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
		for _, kern := range availableKernels() {
			b.Run(fmt.Sprintf("%dx%dx%d/%s", m, n, k, kern.name), func(b *testing.B) {
				defer func(k microKernel) { activeKernel = k }(activeKernel)
				activeKernel = kern
				b.ResetTimer()
				for range b.N {
					gemm(true, m, n, k, 1, fmat(a, k, false), fmat(bm, n, false), 0, c, n)
				}
				b.ReportMetric(2*float64(m)*float64(n)*float64(k)*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
	}
}
