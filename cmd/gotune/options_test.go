package main

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/continual"
	"github.com/gotune/gotune/engine/fewshot"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/finetune"
	"github.com/gotune/gotune/internal/fieldpaths"
)

// optionTable is a library struct whose fields a command's flags set:
// the names its errors use and the fields no flag sets.
type optionTable struct {
	command string
	config  any
	flags   finetune.Names
	// path maps a field path of config to the option the library reports
	// it as (nil: the same); see finetune.TrainOption.
	path func(string) string
	// noFlag lists the fields (or structs of fields) no flag sets, and
	// why: the command sets them itself, or they are programmatic.
	noFlag map[string]string
}

func optionTables() []optionTable {
	jobPath := func(p string) string {
		if rest, ok := strings.CutPrefix(p, "Train."); ok {
			return finetune.TrainOption(rest)
		}
		return p
	}
	programmatic := "set by a program, not a flag"
	return []optionTable{
		{"train", finetune.JobOptions{}, optionFlags, jobPath, map[string]string{
			"BaseModel": "Run sets it from Model", "Explicit": "the flags given", "Names": "this table", "Methods": programmatic,
			"Backend": "--device opens it", "Log": programmatic, "Warn": programmatic, "Record": programmatic,
			"Train.ScheduleSteps": "the CLI trains the whole schedule", "Train.Settings": "Run records them",
			"Parallel.Comm": "torchrun, srun, mpirun or gotune launch start it", "Parallel.BucketBytes": "PyTorch DDP's default",
		}},
		{"generate", generate.Options{}, generateOptionFlags, nil, map[string]string{
			"Stop": "the chat template's stop tokens", "OnToken": "streams to stdout", "NoCache": programmatic,
		}},
		{"meta-train", fewshot.MetaConfig{}, metaConfigFlags, nil, map[string]string{
			"Inner.Beta1": "AdamW's defaults", "Inner.Beta2": "AdamW's defaults", "Inner.Eps": "AdamW's defaults", "Inner.WeightDecay": "no decay",
		}},
		{"continual", continual.Config{}, continualConfigFlags, nil, map[string]string{
			"PadID": "the tokenizer's", "Train": "checked as train's flags (optionFlags)", "TrainName": "trainFlag",
			"NewAdapter": "--method lora", "Scorer.Tokenizer": "--tokenizer or the model's", "Scorer.Template": "--template", "Log": programmatic,
		}},
	}
}

// covered reports whether path, or a struct above it, is a key of m.
func covered[V any](m map[string]V, path string) bool {
	for p := path; ; {
		if _, ok := m[p]; ok {
			return true
		}
		i := strings.LastIndexByte(p, '.')
		if i < 0 {
			return false
		}
		p = p[:i]
	}
}

// Every field of the library structs the CLI fills is named by a flag of
// its command (or listed as set otherwise), so every option error the
// library can report reaches the user under the flag's name; and every
// name in the tables is a real field and a real flag.
func TestOptionFlagsCoverEveryField(t *testing.T) {
	for _, tab := range optionTables() {
		t.Run(tab.command, func(t *testing.T) {
			help := runGotune(t, tab.command, "--help")
			require.Equal(t, 0, help.code, help.stderr)
			for opt, flag := range tab.flags {
				assert.True(t, fieldpaths.Has(tab.config, opt), "%s names %s, which is not a field of %T", flag, opt, tab.config)
				assert.Regexp(t, regexp.MustCompile(`(?m)^  `+regexp.QuoteMeta(flag)+`( |$)`), help.stdout+help.stderr, "gotune %s has no flag %s", tab.command, flag)
			}
			for p := range tab.noFlag {
				assert.True(t, fieldpaths.Has(tab.config, p), "noFlag lists %s, which is not a field of %T", p, tab.config)
			}
			for _, p := range fieldpaths.Of(tab.config) {
				opt := p
				if tab.path != nil {
					opt = tab.path(p)
				}
				assert.True(t, covered(tab.flags, opt) || covered(tab.noFlag, p), "%T.%s (option %s) has no flag", tab.config, p, opt)
			}
		})
	}
}

// The library's option errors reach the CLI user naming the flags, one
// line, exit status 1.
func TestOptionErrorsNameFlags(t *testing.T) {
	llama := filepath.Join(goldenDir, "llama-gqa")
	data := filepath.Join(llama, "data.jsonl")
	txt := writeTemp(t, "plain.txt", "some text\n")
	tasks := writeTokenTasks(t, t.TempDir(), 1)
	train := func(extra ...string) []string {
		return append([]string{"train", "--model", llama, "--data", data, "--steps", "1", "--device", "cpu", "--out", filepath.Join(t.TempDir(), "out")}, extra...)
	}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"lr", train("--lr", "NaN"), "--lr must be a non-negative number, got NaN"},
		{"nothing to train", train("--steps", "0", "--epochs", "0"), "--steps is 0 and --epochs 0: nothing to train"},
		{"warmup ratio", train("--warmup-ratio", "1"), "--warmup-ratio must be in [0, 1), got 1"},
		{"schedule", train("--adam-beta2", "1"), "--adam-beta2 must be in [0, 1), got 1"},
		{"save total limit", train("--save-total-limit", "-1"), "--save-total-limit must not be negative (0 keeps every checkpoint), got -1"},
		{"freeze layers", train("--method", "freeze", "--freeze-trainable-layers", "9"), "--freeze-trainable-layers is 9, but the model has 2 layers"},
		{"freeze nothing", train("--method", "freeze", "--freeze-trainable-layers", "0"), "--freeze-trainable-layers is 0 and --freeze-extra-modules names no module: nothing to train"},
		{"adapter reduction", train("--method", "adapter", "--adapter-reduction-factor", "-1"), "--adapter-reduction-factor must be at least 1, got -1"},
		{"prefix layers", train("--method", "prefix", "--prefix-layers", "1,1"), "--prefix-layers lists layer 1 twice"},
		{"ptuning layers", train("--method", "ptuning", "--encoder-num-layers", "-1"), "--encoder-num-layers must not be negative, got -1"},
		{"format of a .txt", append(train("--format", "instruction"), "--model", tinyModelDir(t), "--data", txt), "--format instruction needs a JSONL file: " + txt + " is a .txt file"},
		{"top-p", []string{"generate", "--model", llama, "--top-p", "2"}, "--top-p must be in [0, 1], got 2"},
		{"eval query", []string{"meta-train", "--model", demoModel, "--device", "cpu", "--out", t.TempDir(), "--synth-family", "cipher", "--eval-query", "0"},
			"--eval-query must be at least 1, got 0"},
		{"ewc gamma", []string{"continual", "--model", llama, "--tasks", tasks[0], "--steps", "1", "--strategy", "ewc", "--ewc-online", "--ewc-gamma", "2"},
			"--ewc-gamma must be in [0, 1], got 2"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			assertOneLineError(t, runGotune(t, tc.args...), "gotune "+tc.args[0]+": "+tc.want)
		})
	}
}
