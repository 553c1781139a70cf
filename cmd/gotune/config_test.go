package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/runcard"
	"github.com/gotune/gotune/engine/train"
)

// printConfig runs "gotune train --print-config" with args and returns the
// resolved settings as a map.
func printConfig(t *testing.T, args ...string) map[string]string {
	t.Helper()
	code, stdout, stderr := gotuneIn(append([]string{"train", "--print-config"}, args...)...)
	require.Equal(t, 0, code, stderr)
	got := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(stdout), "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, ": ")
		require.True(t, ok, line)
		got[k] = v
	}
	return got
}

func TestConfigFileResolves(t *testing.T) {
	dataFile := writeTemp(t, "train.jsonl", `{"text": "x"}`+"\n")
	yamlFile := writeTemp(t, "run.yaml", `
# LLaMA-Factory names, gotune names with _ and with -
model_name_or_path: some/model
dataset: `+dataFile+`
finetuning_type: lora
lora_rank: 4
lora_target: all
learning_rate: 2.0e-4
num_train_epochs: 3.0
per_device_train_batch_size: 2
gradient_accumulation_steps: 4
cutoff_len: 64
lr_scheduler_type: constant_with_warmup
warmup_ratio: 0.1
output_dir: runs/x
use_rslora: true
adam-beta2: 0.95
bf16: true
stage: sft
`)
	// LLaMA-Factory writes packing: true beside neat_packing: true.
	neatFile := writeTemp(t, "neat.yaml", "model: m\ndata: "+dataFile+"\nneat_packing: true\n")
	bothFile := writeTemp(t, "both.yaml", "model: m\ndata: "+dataFile+"\npacking: true\nneat_packing: True\n")
	jsonFile := writeTemp(t, "run.json", `{"model": "some/model", "data": "`+dataFile+`", "method": "lora",
		"lora_r": 4, "lora_targets": ["q_proj", "v_proj"], "lr": 0.0002, "steps": 7}`)
	for _, tc := range []struct {
		name string
		args []string
		want map[string]string
	}{
		{"yaml", []string{"--config", yamlFile}, map[string]string{
			"model": "some/model", "dataset": dataFile, "method": "lora", "lora-r": "4",
			"lora-targets": "all-linear", "lr": "0.0002", "epochs": "3", "batch-size": "2",
			"grad-accum": "4", "seq-len": "64", "lr-schedule": "constant", "warmup-ratio": "0.1",
			"out": "runs/x", "use-rslora": "true", "adam-beta2": "0.95", "precision": "bf16",
		}},
		{"neat packing", []string{"--config", neatFile}, map[string]string{"packing": "true"}},
		{"packing and neat packing", []string{"--config", bothFile}, map[string]string{"packing": "true"}},
		{"json", []string{"--config", jsonFile}, map[string]string{
			"lora-r": "4", "lora-targets": "q_proj,v_proj", "steps": "7",
		}},
		{"flags win over the file", []string{"--config", yamlFile, "--lora-r", "16", "--lr=1e-3"}, map[string]string{
			"lora-r": "16", "lr": "0.001", "lora-alpha": "16",
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := printConfig(t, tc.args...)
			for k, v := range tc.want {
				assert.Equal(t, v, got[k], k)
			}
			assert.NotContains(t, got, "config", "--config itself is not a setting")
			assert.NotContains(t, got, "adapter-variant", "other methods' flags are left out")
		})
	}
}

func TestConfigFileErrors(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, content, want string
		args                []string
	}{
		{"typo", "model: m\ndata: d\nlora_rnak: 8\n", `run.yaml:3: unknown key "lora_rnak" (did you mean "lora_rank"?)`, nil},
		{"typo with dashes", "learnig-rate: 1\n", `run.yaml:1: unknown key "learnig-rate" (did you mean "learning-rate"?)`, nil},
		{"far from everything", "zzzzzzzzzzzz: 1\n", `run.yaml:1: unknown key "zzzzzzzzzzzz"` + "\n", nil},
		{"duplicate key", "model: a\nsteps: 2\nmodel: b\n", `run.yaml:3: duplicate key "model" (first on line 1)`, nil},
		{"duplicate JSON key", `{"lr": 1, "lr": 2}`, `run.yaml:1: duplicate key "lr" (first on line 1)`, nil},
		{"one flag twice", "lora_rank: 4\nlora-r: 8\n", `run.yaml:2: "lora-r" sets --lora-r again (first set on line 1)`, nil},
		{"packing with attention across examples", "packing: true\nneat_packing: false\n", `run.yaml:2: neat_packing: false disagrees with line 1, which set --packing to true: LLaMA-Factory's packing without neat_packing lets packed examples attend to each other, which gotune does not do`, nil},
		{"packing twice", "packing: true\npacking: true\n", `run.yaml:2: duplicate key "packing"`, nil},
		{"packing with prompt tuning", "model: m\ndata: d\nmethod: prompt\nneat_packing: true\n", `--packing cannot be used with --method prompt: its virtual tokens sit in front of each sequence`, nil},
		{"bad number", "model: m\nlora_rank: eight\n", `run.yaml:2: lora_rank: invalid value "eight" for --lora-r: want a whole number`, nil},
		{"no value", "steps:\n", `run.yaml:1: steps: no value`, nil},
		{"nested", "lora:\n  r: 8\n", `run.yaml:1: lora: want a single value, got a mapping`, nil},
		{"not a mapping", "- a\n- b\n", `run.yaml:1: want a mapping of settings`, nil},
		{"syntax", "model: m\n  bad: indent\n", `run.yaml:2: mapping values are not allowed`, nil},
		{"empty", "", `run.yaml: the config file is empty`, nil},
		{"include", "config: other.yaml\n", `run.yaml:1: key "config" is not allowed in a config file`, nil},
		{"fractional epochs", "num_train_epochs: 2.5\n", `run.yaml:1: num_train_epochs: want a whole number, got "2.5"`, nil},
		{"scheduler", "lr_scheduler_type: polynomial\n", `run.yaml:1: lr_scheduler_type: "polynomial" is not supported`, nil},
		{"eval dataset name", "eval_dataset: alpaca_en_demo\n", `run.yaml:1: eval_dataset: "alpaca_en_demo" is not a file: gotune reads a data file path here (dataset_info.json names are read for dataset only)`, nil},
		{"stage", "stage: dpo\n", `run.yaml:1: stage: only "sft" is supported, got "dpo"`, nil},
		{"finetuning type", "finetuning_type: oft\n", `run.yaml:1: finetuning_type: "oft" is not supported`, nil},
		{"warmup both", "model: m\ndata: d\nwarmup_ratio: 0.1\nwarmup_steps: 3\n", `--warmup-ratio and --warmup-steps exclude each other`, nil},
		{"keep best without eval", "model: m\ndata: d\nkeep_best: true\n", `--keep-best needs --eval-data`, nil},
		{"patience without eval-every", "model: m\ndata: d\neval_data: e\nearly_stopping_patience: 2\n", `--early-stopping-patience needs --eval-data and --eval-every`, nil},
		{"missing file", "", `--config: open`, []string{"--config", filepath.Join(dir, "nope.yaml")}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(dir, "run.yaml")
			require.NoError(t, os.WriteFile(path, []byte(tc.content), 0o644))
			args := tc.args
			if args == nil {
				args = []string{"--config", path}
			}
			code, stdout, stderr := gotuneIn(append([]string{"train", "--print-config"}, args...)...)
			assert.Equal(t, exitError, code)
			assert.Empty(t, stdout)
			assert.Contains(t, stderr, tc.want)
			assert.NotContains(t, stderr, "panic")
			first, _, _ := strings.Cut(stderr, "\n")
			assert.Contains(t, first, "gotune train: ", "one line naming the command")
		})
	}
}

// TestExamplesRun trains every examples/*.yaml for 2 steps on the bundled
// model: each writes its output, the model card, summary.json and a
// config.yaml that resolves to the same run again.
func TestExamplesRun(t *testing.T) {
	t.Chdir("../..")
	examples, err := filepath.Glob("examples/*.yaml")
	require.NoError(t, err)
	require.GreaterOrEqual(t, len(examples), 10, "one example per method")
	methodsSeen := map[string]bool{}
	for _, ex := range examples {
		t.Run(filepath.Base(ex), func(t *testing.T) {
			out := t.TempDir()
			code, stdout, stderr := gotuneIn("train", "--config", ex, "--steps", "2", "--eval-every", "2", "--eval-exact-match", "4", "--log-every", "0", "--device", "cpu", "--out", out)
			require.Equal(t, 0, code, stderr)
			assert.Contains(t, stdout, "saved ")
			for _, f := range []string{train.MetricsFile, train.LossPlotFile, configFileName, runcard.CardFile, runcard.SummaryFile} {
				assert.FileExists(t, filepath.Join(out, f))
			}
			assert.DirExists(t, filepath.Join(out, train.BestDir), "every example keeps the best model")
			var sum runcard.Card
			b, err := os.ReadFile(filepath.Join(out, runcard.SummaryFile))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &sum))
			assert.Equal(t, 2, sum.Steps)
			assert.Equal(t, runcard.Completed, sum.Outcome)
			assert.NotNil(t, sum.FinalEvalLoss)
			if assert.NotNil(t, sum.EvalExactMatch) {
				assert.Equal(t, 4, sum.EvalExactMatchOf)
			}
			methodsSeen[sum.Method+sum.MethodSettings["adapter-variant"]+sum.MethodSettings["use-dora"]] = true

			// The written config.yaml is the same run.
			again := printConfig(t, "--config", filepath.Join(out, configFileName))
			first := printConfig(t, "--config", ex, "--steps", "2", "--eval-every", "2", "--eval-exact-match", "4", "--log-every", "0", "--device", "cpu", "--out", out)
			assert.Equal(t, "128", again["seq-len"], "the effective --seq-len: the model's length")
			delete(first, "seq-len")
			delete(again, "seq-len")
			assert.Equal(t, first, again)
		})
	}
	assert.GreaterOrEqual(t, len(methodsSeen), 10, "distinct methods and variants: %v", methodsSeen)
}
