package finetune_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/runcard"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
)

// A merged model's folder gets a model card naming the base model, the
// adapter with its settings, how many layers were merged, what was saved,
// the adapter's training run (from the summary.json gotune wrote beside
// it) and the command.
func TestWriteMergeCard(t *testing.T) {
	const base = "../testdata/tiny/llama"
	adapter := t.TempDir()
	o := finetune.JobOptions{
		MethodOptions: finetune.DefaultMethodOptions(),
		Model:         base, Method: "lora", Out: adapter,
		Data: finetune.DataOptions{Train: "../testdata/tiny/data.jsonl"},
		Train: train.Config{Steps: 2, GradAccum: 1, LR: 1e-2, Schedule: train.Constant,
			Beta1: 0.9, Beta2: 0.999, Eps: 1e-8},
		BatchSize: 2, SeqLen: 32,
	}
	o.LoRA.Rank, o.LoRA.Alpha, o.LoRA.DoRA = 4, 8, true
	res, err := finetune.Run(context.Background(), o)
	require.NoError(t, err)

	mo := finetune.MergeOptions{Model: base, Adapter: adapter}
	m, layers, err := finetune.LoadMerged(cpu.New(), mo)
	require.NoError(t, err)
	out := t.TempDir()
	opts := model.SaveOptions{DType: "BF16"}
	require.NoError(t, m.SaveWithOptions(out, opts))
	require.NoError(t, finetune.WriteMergeCard(out, m, mo, layers, opts, "merge it"))

	b, err := os.ReadFile(filepath.Join(out, runcard.CardFile))
	require.NoError(t, err)
	card := string(b)
	for _, want := range []string{
		"# `" + adapter + "` merged into `" + base + "`",
		"| base model | `" + base + "` (LlamaForCausalLM) |",
		"| adapter | `" + adapter + "`: LORA, lora_alpha `8`, r `4`, target_modules `q_proj,v_proj`, use_dora `true` |",
		"| merged layers | 4 |",
		"| weights | " + finetune.DescribeSaved(m, opts, out) + " |",
		"| adapter training | lora on `../testdata/tiny/data.jsonl`, 2 of 2 steps (completed), final loss ",
		"```sh\nmerge it\n```",
	} {
		assert.Contains(t, card, want)
	}
	assert.Equal(t, 4, layers)
	assert.Equal(t, 2, res.Steps)

	// An adapter folder without gotune's summary.json: no training row.
	require.NoError(t, os.Remove(filepath.Join(adapter, runcard.SummaryFile)))
	require.NoError(t, finetune.WriteMergeCard(out, m, mo, layers, opts, "merge it"))
	b, err = os.ReadFile(filepath.Join(out, runcard.CardFile))
	require.NoError(t, err)
	assert.NotContains(t, string(b), "adapter training")
}
