package model

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/internal/golden"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestLongRopeShortFactors checks the other half of Phi-3's longrope: the
// golden batches (8 positions, past original_max_position_embeddings 6)
// use the long factors (TestGolden); a pass of 5 positions uses the short
// ones, as transformers picks them by each pass's largest position.
func TestLongRopeShortFactors(t *testing.T) {
	dir := filepath.Join(goldenRoot, "phi3")
	g, err := golden.Load(dir)
	require.NoError(t, err)
	m, err := Load(dir, cpu.New())
	require.NoError(t, err)
	ids, _ := readData(t, g.Path(g.Meta.Data))
	const T = 5
	var short [][]int32
	for _, s := range ids {
		short = append(short, s[:T])
	}
	want, shape := g.Tensor("short_logits")
	require.Equal(t, []int{len(ids), T, m.Config().VocabSize}, shape)
	got := logitsCopy(t, m, nil, flat(short), len(ids), T, true)
	e := golden.RelErr(got, want)
	assert.LessOrEqual(t, e, 1e-5, "logits with the short factors: relative error")
	t.Logf("short-factor logits: relative error %.3g", e)
}

// TestPhi3SlidingWindow: Phi-3's sliding_window (32 in the golden config)
// applies to every layer, as transformers' Phi-3 does: in a 40-token
// context the first 32 positions see what they would see without it, the
// last ones see less.
func TestPhi3SlidingWindow(t *testing.T) {
	const T, window = 40, 32
	m, err := Load(filepath.Join(goldenRoot, "phi3"), cpu.New())
	require.NoError(t, err)
	cfg := m.Config()
	for l := 0; l < cfg.Layers; l++ {
		require.Equal(t, window, cfg.LayerWindow(l), "layer %d", l)
	}
	V := cfg.VocabSize
	ids := seqs(1, T, V, 1)
	windowed := logitsCopy(t, m, nil, flat(ids), 1, T, true)

	for _, b := range m.(*Llama).blocks {
		b.attn.Window = 0 // as without sliding_window
	}
	full := logitsCopy(t, m, nil, flat(ids), 1, T, true)
	for tt := 0; tt < window; tt++ {
		assert.Less(t, golden.RelErr(rowsOf(windowed, 1, T, V, tt), rowsOf(full, 1, T, V, tt)), 1e-6, "position %d", tt)
	}
	assert.Greater(t, golden.RelErr(rowsOf(windowed, 1, T, V, T-1), rowsOf(full, 1, T, V, T-1)), 1e-4,
		"the window changes the last position's logits")
}

// TestFamiliesSaveAsLoaded loads the Phi-3, GLM and GLM-4 golden
// checkpoints and saves them: config.json comes back byte for byte, every
// tensor under its Hugging Face name (qkv_proj, gate_up_proj, GLM-4's
// output norms) with its values, and the saved folder computes the same
// logits.
func TestFamiliesSaveAsLoaded(t *testing.T) {
	for _, name := range []string{"phi3", "glm", "glm4"} {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join(goldenRoot, name)
			m, err := Load(dir, cpu.New())
			require.NoError(t, err)
			out := tempDir(t, "saved")
			require.NoError(t, m.Save(out))
			want, err := os.ReadFile(filepath.Join(dir, "config.json"))
			require.NoError(t, err)
			got, err := os.ReadFile(filepath.Join(out, "config.json"))
			require.NoError(t, err)
			assert.Equal(t, string(want), string(got))

			back, err := Load(out, cpu.New())
			require.NoError(t, err)
			require.Equal(t, len(m.BaseParams()), len(back.BaseParams()))
			for i, p := range m.BaseParams() {
				q := back.BaseParams()[i]
				assert.Equal(t, p.Name, q.Name)
				assert.True(t, equalBits(cpu.Float32s(p.W), cpu.Float32s(q.W)), "%s not restored", p.Name)
			}
			ids := seqs(2, 6, m.Config().VocabSize, 3)
			assert.Equal(t, logitsCopy(t, m, nil, flat(ids), 2, 6, true), logitsCopy(t, back, nil, flat(ids), 2, 6, true))
		})
	}
}
