package finetune_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/finetune"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestMergeGemma folds the golden Gemma LoRA adapters (every linear
// module) into their bases, saves the merged model in the Hugging Face
// layout and reloads it: the merged model computes base plus adapter, the
// saved one the same to float32 rounding, and config.json keeps Gemma's
// keys as they were.
func TestMergeGemma(t *testing.T) {
	for _, tc := range []struct{ base, adapter string }{{"gemma2", "gemma2-lora"}, {"gemma3", "gemma3-lora"}} {
		t.Run(tc.adapter, func(t *testing.T) {
			base := filepath.Join("..", "testdata", "golden", tc.base)
			adapterDir := filepath.Join("..", "testdata", "golden", "methods", tc.adapter)
			be := cpu.New()
			ids := []int32{5, 9, 33, 2, 17, 40, 11, 60, 3, 21} // longer than the window of 3
			withAdapter, err := model.Load(base, be)
			require.NoError(t, err)
			require.NoError(t, finetune.LoadAdapter(adapterDir, withAdapter))
			want := logits(withAdapter, ids)

			merged, layers, err := finetune.LoadMerged(be, finetune.MergeOptions{Model: base, Adapter: adapterDir})
			require.NoError(t, err)
			assert.Equal(t, 7*3, layers, "every linear module of the 3 layers")
			assert.Less(t, maxAbsDiff(logits(merged, ids), want), 1e-5)

			out := filepath.Join(t.TempDir(), "merged")
			require.NoError(t, merged.Save(out))
			saved, err := model.Load(out, be)
			require.NoError(t, err)
			assert.Less(t, maxAbsDiff(logits(saved, ids), logits(merged, ids)), 1e-6)

			orig, err := os.ReadFile(filepath.Join(base, hfconfig.FileName))
			require.NoError(t, err)
			got, err := os.ReadFile(filepath.Join(out, hfconfig.FileName))
			require.NoError(t, err)
			assert.Equal(t, string(orig), string(got), "an unchanged config saves byte for byte")
		})
	}
}
