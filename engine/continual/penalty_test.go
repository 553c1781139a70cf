package continual

import (
	"math/rand/v2"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestEWCByHand: F = [1 2 3], θ* = 0, θ = [1 1 2]: penalty λ·(1 + 2 + 12),
// gradient 2λ·F⊙θ = 2λ·[1 2 6]; a second separate anchor adds its own
// term; online EWC merges the anchors as γ·F₁ + F₂ around the latest θ*.
func TestEWCByHand(t *testing.T) {
	for name, be := range backends(t) {
		t.Run(name, func(t *testing.T) {
			const lambda = 0.5
			p := param(be, "w", []float32{0, 0, 0}, 3)
			params := []*engine.Param{p}

			e := NewEWC(be, lambda, false, 0)
			v, err := e.AddGrad(params)
			require.NoError(t, err)
			assert.Zero(t, v, "no anchor, no penalty")
			require.NoError(t, e.Consolidate(params, []*engine.Tensor{tensor(be, []float32{1, 2, 3}, 3)}))
			be.Upload(p.W, []float32{1, 1, 2})
			v, err = e.AddGrad(params)
			require.NoError(t, err)
			assert.InDelta(t, lambda*15, v, 1e-6)
			assert.InDeltaSlice(t, []float32{1, 2, 6}, be.Download(p.G), 1e-6)

			// Separate: a second anchor at θ* = [1 1 2] with F = [4 0 1];
			// at θ = [2 1 0]: λ(1·4 + 2·1 + 3·0) + λ(4·1 + 0 + 1·4).
			require.NoError(t, e.Consolidate(params, []*engine.Tensor{tensor(be, []float32{4, 0, 1}, 3)}))
			be.Upload(p.W, []float32{2, 1, 0})
			be.Fill(p.G, 0)
			v, err = e.AddGrad(params)
			require.NoError(t, err)
			assert.Equal(t, 2, e.Anchors())
			assert.InDelta(t, lambda*(6+8), v, 1e-6)
			// 2λ(F₁⊙θ + F₂⊙(θ − θ*₂)) = [2 2 0] + [4 0 −2].
			assert.InDeltaSlice(t, []float32{6, 2, -2}, be.Download(p.G), 1e-6)

			// Online with γ = 0.5: F = 0.5·[1 2 3] + [4 0 1] = [4.5 1 2.5],
			// θ* = [1 1 2]; at θ = [2 1 0]: λ(4.5 + 0 + 10).
			o := NewEWC(be, lambda, true, 0.5)
			be.Upload(p.W, []float32{0, 0, 0})
			require.NoError(t, o.Consolidate(params, []*engine.Tensor{tensor(be, []float32{1, 2, 3}, 3)}))
			be.Upload(p.W, []float32{1, 1, 2})
			require.NoError(t, o.Consolidate(params, []*engine.Tensor{tensor(be, []float32{4, 0, 1}, 3)}))
			be.Upload(p.W, []float32{2, 1, 0})
			be.Fill(p.G, 0)
			v, err = o.AddGrad(params)
			require.NoError(t, err)
			assert.Equal(t, 1, o.Anchors())
			assert.InDelta(t, lambda*14.5, v, 1e-6)
			assert.InDeltaSlice(t, []float32{4.5, 0, -5}, be.Download(p.G), 1e-6)
		})
	}
}

func TestEWCRejectsOtherParams(t *testing.T) {
	be := backends(t)["cpu"]
	e := NewEWC(be, 1, false, 0)
	p := param(be, "a", []float32{0}, 1)
	require.NoError(t, e.Consolidate([]*engine.Param{p}, []*engine.Tensor{tensor(be, []float32{1}, 1)}))
	_, err := e.AddGrad([]*engine.Param{param(be, "b", []float32{0}, 1)})
	assert.ErrorContains(t, err, "trainable parameter 0 is b, but the anchors hold a")
}

// TestOLoRAByHand: A_old = [[1 0]], A_new = [[1 1] [0 2]]: A_old·A_newᵀ =
// [1 0], penalty λ·1, gradient 2λ·[1 0]ᵀ·[1 0] = 2λ·[[1 0] [0 0]].
func TestOLoRAByHand(t *testing.T) {
	for name, be := range backends(t) {
		t.Run(name, func(t *testing.T) {
			a := param(be, "A", []float32{1, 1, 0, 2}, 2, 2)
			o := NewOLoRA(be, 0.5)
			o.SetOld([][]*engine.Tensor{{tensor(be, []float32{1, 0}, 1, 2)}})
			require.NoError(t, o.Begin(fakeAdapter{a}))
			v, err := o.AddGrad(nil)
			require.NoError(t, err)
			assert.InDelta(t, 0.5, v, 1e-6)
			assert.InDeltaSlice(t, []float32{1, 0, 0, 0}, be.Download(a.G), 1e-6)
		})
	}
}

// TestOLoRAFloat64 compares the penalty and gradient with a float64
// evaluation of λ·Σ_t Σ_l ‖A_t,l·A_lᵀ‖² and its derivative on random
// factors of two layers and two earlier tasks of different ranks.
func TestOLoRAFloat64(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	randn := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	const lambda, in = 0.7, 6
	rNew := []int{3, 2}
	rOld := []int{2, 4}
	cur := make([][]float32, 2)
	old := make([][][]float32, 2)
	for l := range cur {
		cur[l] = randn(rNew[l] * in)
	}
	for k := range old {
		old[k] = [][]float32{randn(rOld[k] * in), randn(rOld[k] * in)}
	}
	// float64 reference.
	want := 0.0
	wantG := [][]float64{make([]float64, rNew[0]*in), make([]float64, rNew[1]*in)}
	for k := range old {
		for l := range cur {
			for i := range rOld[k] {
				for j := range rNew[l] {
					m := 0.0
					for c := range in {
						m += float64(old[k][l][i*in+c]) * float64(cur[l][j*in+c])
					}
					want += lambda * m * m
					for c := range in {
						wantG[l][j*in+c] += 2 * lambda * m * float64(old[k][l][i*in+c])
					}
				}
			}
		}
	}
	for name, be := range backends(t) {
		t.Run(name, func(t *testing.T) {
			a := []*engine.Param{param(be, "A0", cur[0], rNew[0], in), param(be, "A1", cur[1], rNew[1], in)}
			o := NewOLoRA(be, lambda)
			var olds [][]*engine.Tensor
			for k := range old {
				olds = append(olds, []*engine.Tensor{tensor(be, old[k][0], rOld[k], in), tensor(be, old[k][1], rOld[k], in)})
			}
			o.SetOld(olds)
			require.NoError(t, o.Begin(fakeAdapter(a)))
			v, err := o.AddGrad(nil)
			require.NoError(t, err)
			assert.InDelta(t, want, v, 1e-4*want)
			for l := range a {
				got := be.Download(a[l].G)
				for i := range got {
					assert.InDelta(t, wantG[l][i], float64(got[i]), 1e-4*(1+abs(wantG[l][i])), "layer %d element %d", l, i)
				}
			}
		})
	}
}

func abs(v float64) float64 {
	if v < 0 {
		return -v
	}
	return v
}

// fakeAdapter is a LowRankAdapter over given A factors.
type fakeAdapter []*engine.Param

func (f fakeAdapter) DownProjections() []*engine.Param { return f }
func (f fakeAdapter) MergeAndRemove() error            { return nil }

func TestOLoRARejectsMismatchedLayers(t *testing.T) {
	be := backends(t)["cpu"]
	o := NewOLoRA(be, 1)
	o.SetOld([][]*engine.Tensor{{tensor(be, make([]float32, 6), 2, 3)}})
	err := o.Begin(fakeAdapter{param(be, "A", make([]float32, 4), 2, 2)})
	assert.ErrorContains(t, err, "A has 2 input features, task 0's layer 0 had 3")
}
