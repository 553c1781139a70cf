package model

import (
	"fmt"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/internal/golden"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// windowed returns a scrambled tiny model whose sliding windows (3
// positions) matter for sequences of 9: every layer of a Mistral, the
// layers from 1 on of a Qwen2 (max_window_layers 1).
func windowed(t *testing.T, arch string, window int) Model {
	t.Helper()
	cfg := tinyConfig(t, arch)
	cfg.SlidingWindow = &window
	if arch == hfconfig.ArchQwen2 {
		cfg.MaxWindowLayers = 1
	}
	m, err := New(cfg, cpu.New(), 3)
	require.NoError(t, err)
	scramble(m, 4, 0.3)
	return m
}

// TestSlidingWindowKVCache checks that generation through the KV cache
// (which keeps every key; the window masks the old ones) gives the logits
// of the whole sequence in one pass, with and without a key/value prefix,
// and that the window changes them.
func TestSlidingWindowKVCache(t *testing.T) {
	const T, window = 9, 3
	for _, arch := range []string{hfconfig.ArchMistral, hfconfig.ArchQwen2} {
		for _, extra := range []string{"plain", "prefix"} {
			t.Run(fmt.Sprintf("%s/%s", arch, extra), func(t *testing.T) {
				m := windowed(t, arch, window)
				if extra == "prefix" {
					require.NoError(t, m.SetPrefix(newTestPrefix(m, 2, 11)))
				}
				const B = 2
				V := m.Config().VocabSize
				ids := seqs(B, T, V, 7)
				full := logitsCopy(t, m, nil, flat(ids), B, T, true)
				c, err := m.NewKVCache(B, T)
				require.NoError(t, err)
				const first = 4
				chunk := logitsCopy(t, m, c, column(ids, 0, first), B, first, true)
				for tt := 0; tt < first; tt++ {
					assert.Less(t, golden.RelErr(rowsOf(chunk, B, first, V, tt), rowsOf(full, B, T, V, tt)), 1e-5, "chunk position %d", tt)
				}
				for tt := first; tt < T; tt++ {
					got := logitsCopy(t, m, c, column(ids, tt, tt+1), B, 1, false)
					assert.Less(t, golden.RelErr(got, rowsOf(full, B, T, V, tt)), 1e-5, "position %d", tt)
				}

				// Without the window the last positions see more keys.
				m.Config().SlidingWindow = nil
				plain, err := New(m.Config(), cpu.New(), 3)
				require.NoError(t, err)
				scramble(plain, 4, 0.3)
				if extra == "prefix" {
					require.NoError(t, plain.SetPrefix(newTestPrefix(plain, 2, 11)))
				}
				unwindowed := logitsCopy(t, plain, nil, flat(ids), B, T, true)
				assert.Less(t, golden.RelErr(rowsOf(unwindowed, B, T, V, 0), rowsOf(full, B, T, V, 0)), 1e-6,
					"the first position sees every key it would see without the window")
				assert.Greater(t, golden.RelErr(rowsOf(unwindowed, B, T, V, T-1), rowsOf(full, B, T, V, T-1)), 1e-3,
					"the window changes the last position's logits")
			})
		}
	}
}

// TestSlidingWindowGradients checks the windowed backward pass against
// finite differences of the loss.
func TestSlidingWindowGradients(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchMistral, hfconfig.ArchQwen2} {
		t.Run(arch, func(t *testing.T) {
			m := windowed(t, arch, 3)
			for _, p := range m.Params() {
				SetTrainable(p, true)
			}
			bt := randomBatch(m.Backend(), 2, 9, m.Config().VocabSize, 5)
			_, err := m.ForwardBackward(bt, true, 1)
			require.NoError(t, err)
			for _, name := range []string{"model.layers.2.self_attn.k_proj.weight", "model.layers.0.self_attn.q_proj.weight", "model.layers.1.self_attn.v_proj.weight"} {
				p, ok := m.Param(name)
				require.True(t, ok, name)
				fdCheck(t, m, bt, p, gradOf(p))
			}
		})
	}
}
