// Package ckpttest checks that gradient checkpointing changes no bit of a
// model's losses or gradients, on whatever backend and fine-tuning method
// a test sets up.
package ckpttest

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/model"
	"github.com/stretchr/testify/require"
)

// Setup builds a model on be with a fine-tuning method applied. Two calls
// must build identical models (same seeds).
type Setup func(t testing.TB, be engine.Backend) model.Model

// Method applies a fine-tuning method to a fresh model; nil means full
// fine-tuning (every parameter trains).
type Method func(m model.Model) error

// NewSetup returns a Setup building a seeded random model of cfg with
// method applied.
func NewSetup(cfg *model.Config, method Method) Setup {
	return func(t testing.TB, be engine.Backend) model.Model {
		m, err := model.New(cfg, be, 7)
		require.NoError(t, err)
		if method == nil {
			for _, p := range m.Params() {
				model.SetTrainable(p, true)
			}
			return m
		}
		require.NoError(t, method(m))
		return m
	}
}

// Shape is the batch geometry and the number of training passes.
type Shape struct {
	B, T, Passes int
}

// RequireBitIdentical builds two models with setup, turns gradient
// checkpointing on in the second, perturbs every trainable parameter of
// both identically (so that no gradient is trivially zero: LoRA's B and
// the adapters' up projections start at zero), then runs sh.Passes
// training passes over the same random batches, requiring after each that
// the losses and every trainable parameter's accumulated gradient are
// equal bit for bit. Several passes check that random streams (LoRA
// dropout) continue as they would without recomputation.
func RequireBitIdentical(t *testing.T, be engine.Backend, setup Setup, sh Shape) {
	t.Helper()
	plain, ckpt := setup(t, be), setup(t, be)
	ckpt.SetGradCheckpoint(true)
	require.True(t, ckpt.GradCheckpoint())
	perturb(t, plain, 11)
	perturb(t, ckpt, 11)
	rng := rand.New(rand.NewPCG(5, 6))
	for pass := 0; pass < sh.Passes; pass++ {
		bt := randomBatch(be, rng, sh.B, sh.T, plain.Config().VocabSize, plain.Prompt() != nil)
		lp, err := plain.ForwardBackward(bt, true, 1/float32(bt.Counted))
		require.NoError(t, err)
		lc, err := ckpt.ForwardBackward(bt, true, 1/float32(bt.Counted))
		require.NoError(t, err)
		require.Equal(t, math.Float64bits(lp), math.Float64bits(lc), "pass %d: loss %v without checkpointing, %v with", pass, lp, lc)
		requireSameGrads(t, plain, ckpt, pass)
		for _, x := range []*engine.Tensor{bt.InputIDs, bt.Targets, bt.FirstLabels} {
			if x != nil {
				be.Free(x)
			}
		}
	}
}

// requireSameGrads compares the gradients of the trainable parameters bit
// for bit (their order is the models' own, identical by construction).
func requireSameGrads(t *testing.T, a, b model.Model, pass int) {
	t.Helper()
	pa, pb := a.Params(), b.Params()
	require.Equal(t, len(pa), len(pb))
	nonzero := 0
	for i, p := range pa {
		require.Equal(t, p.Name, pb[i].Name)
		require.Equal(t, p.Trainable, pb[i].Trainable, p.Name)
		if !p.Trainable {
			continue
		}
		ga, gb := a.Backend().Download(p.G), b.Backend().Download(pb[i].G)
		for j := range ga {
			if math.Float32bits(ga[j]) != math.Float32bits(gb[j]) {
				t.Fatalf("pass %d: %s gradient element %d: %v without checkpointing, %v with", pass, p.Name, j, ga[j], gb[j])
			}
			if ga[j] != 0 {
				nonzero++
			}
		}
	}
	require.Positive(t, nonzero, "no gradient element is nonzero: the comparison would prove nothing")
}

// perturb adds seeded noise to every trainable parameter.
func perturb(t *testing.T, m model.Model, seed uint64) {
	t.Helper()
	be := m.Backend()
	rng := rand.New(rand.NewPCG(seed, 1))
	for _, p := range m.Params() {
		if !p.Trainable {
			continue
		}
		w := be.Download(p.W)
		for i := range w {
			w[i] += float32(rng.Float64()-0.5) * 0.2
		}
		be.Upload(p.W, w)
	}
	require.NoError(t, be.Synchronize())
}

// RandomBatch uploads B random sequences of T tokens (seeded) with a
// few ignored targets.
func RandomBatch(be engine.Backend, seed uint64, B, T, vocab int) *engine.Batch {
	return randomBatch(be, rand.New(rand.NewPCG(seed, 0)), B, T, vocab, false)
}

// randomBatch uploads B random sequences of T tokens with a few ignored
// targets, and first labels when a prompt scores them.
func randomBatch(be engine.Backend, rng *rand.Rand, B, T, vocab int, first bool) *engine.Batch {
	ids, tg := make([]int32, B*T), make([]int32, B*T)
	counted := 0
	for i := range ids {
		ids[i] = int32(rng.IntN(vocab))
		tg[i] = int32(rng.IntN(vocab))
		if rng.IntN(5) == 0 {
			tg[i] = -100
		} else {
			counted++
		}
	}
	bt := &engine.Batch{B: B, T: T, Counted: counted, InputIDs: be.Alloc(engine.Int32, B*T), Targets: be.Alloc(engine.Int32, B*T)}
	be.UploadInt32(bt.InputIDs, ids)
	be.UploadInt32(bt.Targets, tg)
	if first {
		fl := make([]int32, B)
		for i := range fl {
			fl[i] = int32(rng.IntN(vocab))
		}
		bt.FirstLabels = be.Alloc(engine.Int32, B)
		be.UploadInt32(bt.FirstLabels, fl)
		bt.Counted += B
	}
	return bt
}
