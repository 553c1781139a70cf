package cpu_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"

	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	"gorgonia.org/tensor"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
)

// TestGemmMatchesGorgonia checks Gemm against gorgonia.org/tensor's MatMul
// (gonum BLAS underneath), an implementation independent of both engine/cpu
// and backendtest, for every transpose combination. Operands travel through
// engine.FromDense / ToDense, which this also exercises.
func TestGemmMatchesGorgonia(t *testing.T) {
	b := cpu.New()
	rng := rand.New(rand.NewPCG(3, 4))
	for _, s := range [][3]int{{1, 1, 1}, {7, 5, 3}, {33, 65, 17}, {130, 97, 300}} {
		m, n, k := s[0], s[1], s[2]
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}, {true, true}} {
			ta, tb := tr[0], tr[1]
			t.Run(fmt.Sprintf("m%d_n%d_k%d_tA%v_tB%v", m, n, k, ta, tb), func(t *testing.T) {
				ad := randDense(rng, stored(m, k, ta))
				bd := randDense(rng, stored(k, n, tb))
				a, err := engine.FromDense(b, ad)
				if err != nil {
					t.Fatal(err)
				}
				bt, err := engine.FromDense(b, bd)
				if err != nil {
					t.Fatal(err)
				}
				c := b.Alloc(engine.Float32, m, n)
				b.Gemm(c, a, bt, ta, tb, 1, 0)

				// Reference: transpose the Dense operands as gorgonia views,
				// materialise them, and multiply in float64.
				opA, opB := logical(t, ad, ta), logical(t, bd, tb)
				ref, err := tensor.MatMul(opA, opB)
				if err != nil {
					t.Fatal(err)
				}
				want := ref.Data().([]float64)
				got := engine.ToDense(c).Data().([]float32)
				var num, den float64
				for i := range want {
					d := float64(got[i]) - want[i]
					num += d * d
					den += want[i] * want[i]
				}
				if rel := math.Sqrt(num / den); !(rel <= 1e-5) {
					t.Errorf("relative error %.3g vs gorgonia MatMul", rel)
				}
			})
		}
	}
}

func stored(r, c int, trans bool) []int {
	if trans {
		return []int{c, r}
	}
	return []int{r, c}
}

// randDense returns a float64 Dense of float32-representable normals, so
// the float32 backend and the float64 reference see identical inputs.
func randDense(rng *rand.Rand, shape []int) *tensor.Dense {
	v := make([]float64, shape[0]*shape[1])
	for i := range v {
		v[i] = float64(float32(rng.NormFloat64()))
	}
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(v))
}

// logical returns op(d): a materialised transpose when trans.
func logical(t *testing.T, d *tensor.Dense, trans bool) *tensor.Dense {
	if !trans {
		return d
	}
	c := d.Clone().(*tensor.Dense)
	if err := c.T(); err != nil {
		t.Fatal(err)
	}
	return c.Materialize().(*tensor.Dense)
}

// gemmBenchShapes are (m, n, k): a square product and the shape of a
// 1024-token batch through a 1024→4096 MLP projection.
var gemmBenchShapes = [][3]int{{512, 512, 512}, {1024, 4096, 1024}}

func BenchmarkGemm(b *testing.B) {
	be := cpu.New()
	for _, s := range gemmBenchShapes {
		m, n, k := s[0], s[1], s[2]
		for _, tr := range [][2]bool{{false, false}, {false, true}, {true, false}} {
			b.Run(fmt.Sprintf("%dx%dx%d_tA%v_tB%v", m, n, k, tr[0], tr[1]), func(b *testing.B) {
				a := be.Alloc(engine.Float32, stored(m, k, tr[0])...)
				bt := be.Alloc(engine.Float32, stored(k, n, tr[1])...)
				c := be.Alloc(engine.Float32, m, n)
				fillRand(cpu.Float32s(a))
				fillRand(cpu.Float32s(bt))
				meter := startFlops(b)
				for range b.N {
					be.Gemm(c, a, bt, tr[0], tr[1], 1, 0)
				}
				meter.report(2 * float64(m) * float64(n) * float64(k))
			})
		}
	}
}

// BenchmarkGonumSgemm measures gonum's pure-Go parallel Sgemm (what
// gorgonia.org/tensor's MatMul uses) on the same shapes, for a ratio.
func BenchmarkGonumSgemm(b *testing.B) {
	impl := gonum.Implementation{}
	for _, s := range gemmBenchShapes {
		m, n, k := s[0], s[1], s[2]
		b.Run(fmt.Sprintf("%dx%dx%d", m, n, k), func(b *testing.B) {
			a, bm, c := make([]float32, m*k), make([]float32, k*n), make([]float32, m*n)
			fillRand(a)
			fillRand(bm)
			meter := startFlops(b)
			for range b.N {
				impl.Sgemm(blas.NoTrans, blas.NoTrans, m, n, k, 1, a, k, bm, n, 0, c, n)
			}
			meter.report(2 * float64(m) * float64(n) * float64(k))
		})
	}
}

func fillRand(v []float32) {
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range v {
		v[i] = float32(rng.NormFloat64())
	}
}
