package runcard

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/train"
)

func TestAddHistory(t *testing.T) {
	var c Card
	c.AddHistory([]train.StepMetrics{
		{Step: 1, Loss: 3, Tokens: 100, ElapsedS: 1, Epoch: 0.5, PeakMemBytes: 10},
		{Step: 2, Loss: 1.5, Tokens: 100, ElapsedS: 2, Epoch: 1, PeakMemBytes: 30, Eval: map[string]float64{train.EvalLossMetric: 2}},
		{Step: 3, Loss: 2, Tokens: 200, ElapsedS: 4, Epoch: 1.5, PeakMemBytes: 20},
	})
	assert.Equal(t, 3, c.Steps)
	assert.Equal(t, 2.0, c.FinalLoss)
	assert.Equal(t, 1.5, c.BestLoss)
	assert.Equal(t, 2, c.BestLossStep)
	require.NotNil(t, c.FinalEvalLoss)
	assert.Equal(t, 2.0, *c.FinalEvalLoss)
	assert.Equal(t, 400, c.TokensTrained)
	assert.Equal(t, 100.0, c.TokensPerS)
	assert.Equal(t, uint64(30), c.PeakMemBytes)
	assert.Equal(t, 1.5, c.Epochs)

	var empty Card
	empty.AddHistory(nil)
	assert.Zero(t, empty.BestLoss, "no steps: no infinite loss (JSON cannot hold it)")
}

func TestWrite(t *testing.T) {
	best := 1.25
	for _, tc := range []struct {
		peftType   string
		want, omit []string
	}{
		{"LORA", []string{"library_name: peft", "AutoPeftModelForCausalLM"}, []string{"BOTTLENECK"}},
		{BottleneckType, []string{"library_name: peft", "PEFT has no loader"}, []string{"AutoPeftModelForCausalLM"}},
		{"", nil, []string{"library_name", "## Use"}},
	} {
		dir := t.TempDir()
		c := &Card{
			Command: "gotune train --config run.yaml", BaseModel: "models/base", Method: "lora",
			MethodSettings: map[string]string{"lora-r": "8"}, Settings: map[string]string{"lr": "0.001"},
			PeftType: tc.peftType, TrainData: "train.jsonl", Outcome: EarlyStopped,
			BestEvalLoss: &best, FinalEvalLoss: &best, BestEvalStep: 20, BestDir: "best",
		}
		c.AddHistory([]train.StepMetrics{{Step: 20, Loss: 0.5, Tokens: 10, ElapsedS: 1}})
		require.NoError(t, Write(dir, c))

		b, err := os.ReadFile(filepath.Join(dir, SummaryFile))
		require.NoError(t, err)
		var back Card
		require.NoError(t, json.Unmarshal(b, &back))
		assert.Equal(t, c, &back, "summary.json holds the card")

		b, err = os.ReadFile(filepath.Join(dir, CardFile))
		require.NoError(t, err)
		md := string(b)
		for _, w := range append(tc.want, "`models/base`", "lora-r `8`", "| lr | `0.001` |", "20 of 0 (early stopping)",
			"best 1.2500 (step 20)", "gotune train --config run.yaml") {
			assert.Contains(t, md, w)
		}
		for _, w := range tc.omit {
			assert.NotContains(t, md, w)
		}
		assert.True(t, strings.HasPrefix(md, "---\n"), "front matter first")
	}
}

// ReadSummary reads back what Write wrote; a folder without summary.json
// is no error, a damaged or duplicated-key file is.
func TestReadSummary(t *testing.T) {
	dir := t.TempDir()
	c, err := ReadSummary(dir)
	require.NoError(t, err)
	assert.Nil(t, c)

	want := &Card{Method: "lora", BaseModel: "m", Steps: 3, FinalLoss: 1.5, Settings: map[string]string{"--lr": "0.01"}}
	require.NoError(t, Write(dir, want))
	got, err := ReadSummary(dir)
	require.NoError(t, err)
	assert.Equal(t, want, got)

	for _, bad := range []string{`{"steps": `, `{"steps": 1, "steps": 2}`} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, SummaryFile), []byte(bad), 0o644))
		_, err := ReadSummary(dir)
		assert.ErrorContains(t, err, filepath.Join(dir, SummaryFile)+": ", bad)
	}
}
