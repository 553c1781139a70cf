package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/lora"
)

var mergeIDs = []int32{3, 17, 42, 9, 60, 5, 11, 23, 8, 33, 2, 50}

// TestMergeCommand merges each golden LoRA/DoRA adapter (random, non-zero
// factors) with "gotune merge" and checks that the merged checkpoint
// loads and gives the logits of the base model with the adapter.
func TestMergeCommand(t *testing.T) {
	for _, name := range []string{"lora", "dora", "gpt2-dora", "qwen2-lora-all-linear"} {
		t.Run(name, func(t *testing.T) {
			s, err := golden.LoadMethod(filepath.Join(goldenDir, golden.MethodsDir, name))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "merged")
			res := runGotune(t, "merge", "--model", s.BaseDir(), "--adapter", s.AdapterDir(), "--out", out)
			if res.code != 0 {
				t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
			}
			if !strings.Contains(res.stdout, "merged ") || !strings.Contains(res.stdout, "wrote the model card "+filepath.Join(out, "README.md")) {
				t.Errorf("stdout: %s", res.stdout)
			}
			card, err := os.ReadFile(filepath.Join(out, "README.md"))
			require.NoError(t, err)
			assert.Contains(t, string(card), "| adapter | `"+s.AdapterDir()+"`: LORA, ")
			assert.Contains(t, string(card), "gotune merge --model "+s.BaseDir())
			be := cpu.New()
			merged, err := model.Load(out, be)
			if err != nil {
				t.Fatal(err)
			}
			withAdapter, err := model.Load(s.BaseDir(), be)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := lora.Load(withAdapter, s.AdapterDir(), lora.LoadOptions{Frozen: true}); err != nil {
				t.Fatal(err)
			}
			plain, err := model.Load(s.BaseDir(), be)
			if err != nil {
				t.Fatal(err)
			}
			logits := func(m model.Model) []float32 {
				lg, err := m.Logits(nil, mergeIDs, 2, 6, true)
				if err != nil {
					t.Fatal(err)
				}
				return be.Download(lg)
			}
			want := logits(withAdapter)
			if e := golden.RelErr(logits(merged), want); e > 1e-5 {
				t.Errorf("merged logits: rel err %.3g against base + adapter", e)
			}
			if e := golden.RelErr(logits(plain), want); e < 1e-3 {
				t.Errorf("the adapter hardly changes the logits (rel %.3g): the test would not notice a missing merge", e)
			}
		})
	}
}

// TestLoRACommandErrors checks the messages and exit statuses of bad
// LoRA, freeze, merge and --adapter invocations.
func TestLoRACommandErrors(t *testing.T) {
	s, err := golden.LoadMethod(filepath.Join(goldenDir, golden.MethodsDir, "lora"))
	if err != nil {
		t.Fatal(err)
	}
	prefix, err := golden.LoadMethod(filepath.Join(goldenDir, golden.MethodsDir, "prefix"))
	if err != nil {
		t.Fatal(err)
	}
	noWeights := t.TempDir()
	raw, _ := os.ReadFile(filepath.Join(s.AdapterDir(), "adapter_config.json"))
	os.WriteFile(filepath.Join(noWeights, "adapter_config.json"), raw, 0o644)
	train := []string{"train", "--model", s.BaseDir(), "--data", s.Path(s.Meta.Data), "--steps", "1", "--device", "cpu", "--out", t.TempDir()}
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"conflicting rank", append(train, "--method", "lora", "--init-adapter", s.AdapterDir(), "--lora-r", "8"),
			"--lora-r 8 (r is 4)"},
		{"conflicting targets", append(train, "--method", "lora", "--init-adapter", s.AdapterDir(), "--lora-targets", "q_proj"),
			"--lora-targets q_proj"},
		{"unknown target", append(train, "--method", "lora", "--lora-targets", "q_proj,c_attn"),
			`"c_attn" match no module`},
		{"bad rank", append(train, "--method", "lora", "--lora-r", "0"), "--lora-r must be at least 1"},
		{"bad init", append(train, "--method", "lora", "--lora-init", "zeros"), "--lora-init must be kaiming or gaussian"},
		{"adapter without weights", append(train, "--method", "lora", "--init-adapter", noWeights),
			"adapter_model.safetensors are missing"},
		{"other method's adapter", append(train, "--method", "lora", "--init-adapter", prefix.AdapterDir()),
			`peft_type is "PREFIX_TUNING", expected "LORA"`},
		{"freeze with init-adapter", append(train, "--method", "freeze", "--init-adapter", s.AdapterDir()),
			"--init-adapter applies to adapter methods"},
		{"freeze unknown module", append(train, "--method", "freeze", "--freeze-trainable-modules", "attn"),
			`--freeze-trainable-modules "attn": no such module in the layers`},
		{"merge prefix adapter", []string{"merge", "--model", s.BaseDir(), "--adapter", prefix.AdapterDir(), "--out", t.TempDir()},
			"a PREFIX_TUNING adapter cannot be merged"},
		{"merge without adapter", []string{"merge", "--model", s.BaseDir(), "--out", t.TempDir()}, "--adapter is required"},
		{"merge into the model", []string{"merge", "--model", s.BaseDir(), "--adapter", s.AdapterDir(), "--out", s.BaseDir()},
			"would overwrite the base model"},
		{"eval with a bad adapter folder", []string{"eval", "--model", s.BaseDir(), "--adapter", t.TempDir(), "--data", s.Path(s.Meta.Data)},
			"not a PEFT adapter folder"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := runGotune(t, tc.args...)
			if res.code != exitError {
				t.Fatalf("exit %d, want %d\nstderr: %s", res.code, exitError, res.stderr)
			}
			if !strings.Contains(res.stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, res.stderr)
			}
			if strings.Contains(res.stderr, "goroutine ") {
				t.Errorf("a panic trace:\n%s", res.stderr)
			}
		})
	}
}

// TestLoRATrainsFromScratch trains a fresh LoRA (PEFT's initialisation)
// and a freeze run on the golden model for a few steps, checks that the
// loss falls, and that the adapter written loads back for eval.
func TestLoRATrainsFromScratch(t *testing.T) {
	s, err := golden.LoadMethod(filepath.Join(goldenDir, golden.MethodsDir, "lora"))
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "out")
	res := runGotune(t, "train", "--model", s.BaseDir(), "--data", s.Path(s.Meta.Data), "--method", "lora",
		"--lora-targets", "all-linear", "--lora-r", "4", "--lora-dropout", "0.1", "--use-dora",
		"--steps", "12", "--lr", "0.01", "--lr-schedule", "constant", "--batch-size", "2", "--shuffle=false",
		"--device", "cpu", "--out", out)
	if res.code != 0 {
		t.Fatalf("exit %d\n%s%s", res.code, res.stdout, res.stderr)
	}
	ms := readLosses(t, out)
	if !(ms[len(ms)-1] < ms[0]) {
		t.Errorf("loss did not fall: %v", ms)
	}
	ev := runGotune(t, "eval", "--model", s.BaseDir(), "--adapter", out, "--data", s.Path(s.Meta.Data), "--device", "cpu")
	if ev.code != 0 || !strings.Contains(ev.stdout, "loss: ") {
		t.Fatalf("eval --adapter of the trained adapter: exit %d\n%s%s", ev.code, ev.stdout, ev.stderr)
	}
}

func readLosses(t *testing.T, out string) []float64 {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(out, "metrics.jsonl"))
	if err != nil {
		t.Fatal(err)
	}
	var losses []float64
	for _, line := range strings.Split(strings.TrimSpace(string(raw)), "\n") {
		var m struct {
			Loss float64 `json:"loss"`
		}
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatal(err)
		}
		losses = append(losses, m.Loss)
	}
	return losses
}
