package cpu_test

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
)

// TestCoreCountDeterminism runs a training-step's worth of operations with
// 1, 3 and 8 worker goroutines and requires bit-identical results: the
// work split may change, the arithmetic order may not.
func TestCoreCountDeterminism(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(0))
	var ref [][]float32
	for _, procs := range []int{1, 3, 8} {
		runtime.GOMAXPROCS(procs)
		got := deterministicWorkload()
		if ref == nil {
			ref = got
			continue
		}
		for i := range ref {
			for j := range ref[i] {
				if math.Float32bits(ref[i][j]) != math.Float32bits(got[i][j]) {
					t.Fatalf("GOMAXPROCS=%d: output %d element %d = %v, with 1 worker %v", procs, i, j, got[i][j], ref[i][j])
				}
			}
		}
	}
}

// deterministicWorkload returns the outputs of a fixed set of operations on
// fixed random inputs, sized to cross every parallel threshold.
func deterministicWorkload() [][]float32 {
	b := cpu.New()
	rng := rand.New(rand.NewPCG(5, 6))
	randT := func(shape ...int) *engine.Tensor {
		x := b.Alloc(engine.Float32, shape...)
		v := cpu.Float32s(x)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return x
	}
	var outs [][]float32
	keep := func(ts ...*engine.Tensor) {
		for _, t := range ts {
			outs = append(outs, b.Download(t))
		}
	}

	a, w := randT(300, 200), randT(250, 200)
	c := b.Alloc(engine.Float32, 300, 250)
	b.Gemm(c, a, w, false, true, 1, 0)
	keep(c)

	x := randT(257, 333)
	for _, act := range []engine.Act{engine.ActSiLU, engine.ActGELUTanh, engine.ActTanh} {
		o := b.Alloc(engine.Float32, 257, 333)
		b.Activation(o, x, act)
		dx := b.Alloc(engine.Float32, 257, 333)
		b.ActivationBackward(dx, o, x, act)
		keep(o, dx)
	}

	nw := randT(333)
	no, rstd := b.Alloc(engine.Float32, 257, 333), b.Alloc(engine.Float32, 257)
	b.RMSNorm(no, rstd, x, nw, 1e-5)
	dx, dw := b.Alloc(engine.Float32, 257, 333), b.Alloc(engine.Float32, 333)
	b.RMSNormBackward(dx, dw, no, x, nw, rstd)
	ss := b.Alloc(engine.Float32, 1)
	b.SumSquares(ss, x)
	keep(no, dx, dw, ss)

	q, k, v := randT(2, 70, 4, 16), randT(2, 90, 2, 16), randT(2, 90, 2, 16)
	out, lse := b.Alloc(engine.Float32, 2, 70, 4, 16), b.Alloc(engine.Float32, 2, 4, 70)
	b.Attention(out, lse, q, k, v, engine.AttentionOptions{})
	dq, dk, dv := b.Alloc(engine.Float32, 2, 70, 4, 16), b.Alloc(engine.Float32, 2, 90, 2, 16), b.Alloc(engine.Float32, 2, 90, 2, 16)
	b.AttentionBackward(dq, dk, dv, out, q, k, v, out, lse, engine.AttentionOptions{})
	keep(out, lse, dq, dk, dv)
	return outs
}
