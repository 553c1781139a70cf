// Package demo holds the recipe of gotune's built-in default model: a
// small LLaMA pretrained by gotune itself, on the CPU, on a mix of
// synthetic instruction tasks, with a byte-level tokenizer. The files are
// committed under testdata/demo; internal/demo/pretrain regenerates them
// (scripts/pretrain-demo.sh), and "gotune demo" fine-tunes the model on a
// task it has not seen.
package demo

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"

	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/synth"
	"github.com/gotune/gotune/internal/bytetok"
)

// Dir is where the model is committed, relative to the repository root.
const Dir = "testdata/demo"

// Tokenizer is the demo tokenizer: one token per byte, then BOS, EOS and
// PAD (ids 256, 257, 258).
var Tokenizer = bytetok.Spec{
	Specials: []string{"<s>", "</s>", "<pad>"},
	BOS:      "<s>", EOS: "</s>", PAD: "<pad>",
}

// Template is the chat template the model is pretrained and fine-tuned
// with.
const Template = "plain"

// PretrainTasks are the synthetic tasks of the pretraining mix (names for
// synth.Lookup).
// "copy" is CopyTask; the others are synth's.
var PretrainTasks = []string{"copy", "reverse", "upper", "double", "lookup", "cipher:1", "cipher:2", "cipher:3", "cipher:4"}

// HeldOutTask is the task "gotune demo" teaches by default: a cipher key
// the model has never seen, so it starts at (near) zero accuracy.
const HeldOutTask = "cipher:7"

// Config returns the model configuration: a LLaMA with hidden size 128, 4
// layers, 4 query and 2 key/value heads, SwiGLU width 384, tied
// embeddings, 128 positions.
func Config() (*hfconfig.Config, error) {
	cfg, err := hfconfig.NewLlama(hfconfig.Sizes{
		VocabSize: 256 + len(Tokenizer.Specials), Hidden: 128, Layers: 4, Heads: 4, KVHeads: 2,
		Intermediate: 384, MaxPos: 128,
	})
	if err != nil {
		return nil, err
	}
	cfg.TieEmbeddings = true
	cfg.NormEps = 1e-5
	cfg.BosTokenID = ptr(256)
	cfg.EosTokenIDs = []int{257}
	cfg.PadTokenID = ptr(258)
	return cfg, nil
}

func ptr(v int) *int { return &v }

// Find returns the directory of the built-in model: dir if it is not
// empty, else testdata/demo under the working directory, else next to the
// running executable (bin/gotune finds ../testdata/demo).
func Find(dir string) (string, error) {
	if dir != "" {
		if _, err := os.Stat(filepath.Join(dir, "config.json")); err != nil {
			return "", fmt.Errorf("demo model: %w", err)
		}
		return dir, nil
	}
	candidates := []string{Dir}
	if exe, err := os.Executable(); err == nil {
		d := filepath.Dir(exe)
		candidates = append(candidates, filepath.Join(d, "..", Dir), filepath.Join(d, Dir))
	}
	for _, c := range candidates {
		if _, err := os.Stat(filepath.Join(c, "config.json")); err == nil {
			return c, nil
		}
	}
	return "", errors.New("the built-in model is not found: run from the gotune repository root (it lives in " + Dir + "), or pass --base DIR")
}

// CopyTask is a pretraining-only task: write the input letters unchanged.
// Identity copying is the purest signal for the attention circuit that
// every letter task here needs (find the input letter that comes next and
// emit it, mapped or not), so a share of it makes that circuit form far
// earlier in pretraining.
type CopyTask struct{}

// Name returns "copy".
func (CopyTask) Name() string { return "copy" }

// Sample draws a word of 3 to 8 lowercase letters (like synth's tasks).
func (CopyTask) Sample(r *rand.Rand) synth.Example {
	b := make([]byte, 3+r.IntN(6))
	for i := range b {
		b[i] = byte('a' + r.IntN(26))
	}
	return synth.Example{Instruction: "Copy the letters.", Input: string(b), Output: string(b)}
}

// LookupTask returns a pretraining task by name: CopyTask for "copy",
// else synth.Lookup.
func LookupTask(name string) (synth.Task, error) {
	if name == "copy" {
		return CopyTask{}, nil
	}
	return synth.Lookup(name)
}
