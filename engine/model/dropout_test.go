package model

import (
	"math"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// dropoutConfig returns a tiny config of arch asking for every dropout
// the family has (GPT-2: all three pdrops; the others:
// attention_dropout).
func dropoutConfig(t testing.TB, arch string) *Config {
	cfg := tinyConfig(t, arch)
	cfg.AttentionDropout = 0.3
	if arch == hfconfig.ArchGPT2 {
		cfg.ResidDropout, cfg.EmbdDropout = 0.2, 0.25
	}
	return cfg
}

// pair builds the same scrambled tiny model with and without dropout.
func pair(t *testing.T, arch string) (drop, plain Model) {
	t.Helper()
	mk := func(cfg *Config) Model {
		m, err := New(cfg, cpu.New(), 3)
		require.NoError(t, err)
		scramble(m, 4, 0.3)
		for _, p := range m.Params() {
			SetTrainable(p, true)
		}
		return m
	}
	return mk(dropoutConfig(t, arch)), mk(tinyConfig(t, arch))
}

// TestDropoutOnlyInTraining checks that evaluation passes, Logits and KV
// cache generation of a model with dropout are those of the same model
// without, and that training passes differ from them.
func TestDropoutOnlyInTraining(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchGPT2, hfconfig.ArchLlama} {
		t.Run(arch, func(t *testing.T) {
			drop, plain := pair(t, arch)
			drop.SetDropoutSeed(9)
			bt := randomBatch(drop.Backend(), 2, 7, drop.Config().VocabSize, 1)
			assert.Equal(t, lossAt(t, plain, bt), lossAt(t, drop, bt), "forward-only ForwardBackward")

			const B, T = 2, 6
			ids := seqs(B, T, drop.Config().VocabSize, 3)
			assert.Equal(t, logitsCopy(t, plain, nil, flat(ids), B, T, true), logitsCopy(t, drop, nil, flat(ids), B, T, true), "Logits")
			gen := func(m Model) []float32 {
				c, err := m.NewKVCache(B, T)
				require.NoError(t, err)
				logitsCopy(t, m, c, column(ids, 0, 3), B, 3, true)
				return logitsCopy(t, m, c, column(ids, 3, 4), B, 1, false)
			}
			assert.Equal(t, gen(plain), gen(drop), "generation through the KV cache")

			train, err := drop.ForwardBackward(bt, true, 1)
			require.NoError(t, err)
			assert.NotEqual(t, lossAt(t, drop, bt), train, "a training pass applies dropout")
			// and a model with dropout does not touch its eval results afterwards
			assert.Equal(t, lossAt(t, plain, bt), lossAt(t, drop, bt))
		})
	}
}

// TestDropoutMasksFollowThePass checks that the masks are a function of
// the seed and the training pass: the same pass gives the same loss bit
// for bit, another pass or seed another loss.
func TestDropoutMasksFollowThePass(t *testing.T) {
	drop, _ := pair(t, hfconfig.ArchGPT2)
	bt := randomBatch(drop.Backend(), 2, 7, drop.Config().VocabSize, 1)
	loss := func(seed uint64, p engine.TrainingPass) float64 {
		drop.SetDropoutSeed(seed)
		drop.SetTrainingPass(p)
		l, err := drop.ForwardBackward(bt, true, 0)
		require.NoError(t, err)
		return l
	}
	a := loss(1, engine.TrainingPass{Step: 2})
	assert.Equal(t, math.Float64bits(a), math.Float64bits(loss(1, engine.TrainingPass{Step: 2})))
	for _, other := range []float64{loss(2, engine.TrainingPass{Step: 2}), loss(1, engine.TrainingPass{Step: 3}),
		loss(1, engine.TrainingPass{Step: 2, Micro: 1}), loss(1, engine.TrainingPass{Step: 2, Rank: 1})} {
		assert.NotEqual(t, a, other)
	}
}

// TestDropoutGradients checks the training pass's gradients against
// finite differences of the training loss with the same masks.
func TestDropoutGradients(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchGPT2, hfconfig.ArchLlama} {
		t.Run(arch, func(t *testing.T) {
			m, _ := pair(t, arch)
			m.SetDropoutSeed(5)
			m.SetTrainingPass(engine.TrainingPass{Step: 1})
			bt := randomBatch(m.Backend(), 2, 7, m.Config().VocabSize, 2)
			zeroGrads(m)
			_, err := m.ForwardBackward(bt, true, 1)
			require.NoError(t, err)
			trainLoss := func() float64 {
				l, err := m.ForwardBackward(bt, true, 0) // same masks, nothing accumulated
				require.NoError(t, err)
				return l
			}
			names := []string{"model.embed_tokens.weight", "model.layers.1.self_attn.v_proj.weight", "model.layers.0.mlp.down_proj.weight"}
			if arch == hfconfig.ArchGPT2 {
				names = []string{"transformer.wte.weight", "transformer.wpe.weight", "transformer.h.1.attn.c_attn.weight",
					"transformer.h.0.attn.c_proj.bias", "transformer.h.2.mlp.c_proj.weight"}
			}
			for _, n := range names {
				p, ok := m.Param(n)
				require.True(t, ok, n)
				fdCheckWith(t, m, p, gradOf(p), trainLoss)
			}
		})
	}
}

// fdCheckWith is fdCheck against the loss loss() returns.
func fdCheckWith(t *testing.T, m Model, p *engine.Param, grad []float32, loss func() float64) {
	t.Helper()
	be := m.Backend()
	w := be.Download(p.W)
	idx := []int{argmaxAbs(grad)}
	for k := 0; k < 5; k++ {
		idx = append(idx, k*(len(w)-1)/4)
	}
	for _, i := range idx {
		const h = 1e-2
		orig := w[i]
		w[i] = orig + h
		be.Upload(p.W, w)
		lp := loss()
		w[i] = orig - h
		be.Upload(p.W, w)
		lm := loss()
		w[i] = orig
		be.Upload(p.W, w)
		fd, g := (lp-lm)/(2*h), float64(grad[i])
		den := math.Max(math.Max(math.Abs(fd), math.Abs(g)), 1e-2)
		assert.LessOrEqual(t, math.Abs(fd-g)/den, 2e-2, "%s[%d]: gradient %.6g, finite difference %.6g", p.Name, i, g, fd)
	}
}
