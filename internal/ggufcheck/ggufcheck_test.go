package ggufcheck

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
)

const demoDir = "../../testdata/demo"

// TestWriteEveryFamily writes the check model of every family mkcheck
// offers and loads it back: a folder of that model_type (gemma3:
// gemma3_text) with the demo's tokenizer, whose next-token distributions
// are finite (sum to 1).
func TestWriteEveryFamily(t *testing.T) {
	fams := Families()
	require.Equal(t, []string{"gemma2", "gemma3", "glm4", "gpt2", "granite", "llama", "olmo2", "phi3", "qwen2", "qwen3"}, fams)
	for _, fam := range fams {
		t.Run(fam, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "out")
			require.NoError(t, Write(fam, demoDir, dir, cpu.New(), 1))
			assert.FileExists(t, filepath.Join(dir, "tokenizer.json"))
			m, err := model.Load(dir, cpu.New())
			require.NoError(t, err)
			modelType := fam
			if fam == "gemma3" {
				modelType = "gemma3_text" // Gemma3ForCausalLM's text config
			}
			assert.Equal(t, modelType, m.Config().ModelType)
			probs, err := NextProbs(m, []int32{256, 72, 105})
			require.NoError(t, err)
			for _, row := range probs {
				sum := 0.0
				for _, p := range row {
					sum += p
				}
				assert.InDelta(t, 1, sum, 1e-9)
			}
		})
	}
}

func TestWriteUnknownFamily(t *testing.T) {
	err := Write("mamba", demoDir, t.TempDir(), cpu.New(), 1)
	require.ErrorContains(t, err, `no check model for family "mamba" (have gemma2, gemma3, glm4, gpt2, granite, llama, olmo2, phi3, qwen2, qwen3)`)
}
