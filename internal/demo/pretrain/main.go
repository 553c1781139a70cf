// Command pretrain builds gotune's built-in default model from nothing:
// it writes the byte-level tokenizer, generates a corpus of synthetic
// instruction tasks — a warm-up phase of the copy task alone, then a
// shuffled mix of demo.PretrainTasks — pretrains a small LLaMA on it in
// that order with gotune's own trainer on the CPU, reports exact-match accuracy per
// task (and on the held-out demo task, which it never saw), and saves the
// weights as BF16 safetensors with config.json and the tokenizer files.
//
// Usage (from the repository root; scripts/pretrain-demo.sh runs it with
// the committed settings):
//
//	go run ./internal/demo/pretrain --out testdata/demo
//
// Everything is seeded: the same flags give the same files.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/synth"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/bytetok"
	"github.com/gotune/gotune/internal/demo"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "pretrain:", err)
		os.Exit(1)
	}
}

func run() error {
	out := flag.String("out", demo.Dir, "output `DIR` for config.json, model.safetensors and the tokenizer files")
	steps := flag.Int("steps", 2500, "optimizer steps in all")
	copySteps := flag.Int("copy-steps", 700, "first steps on the copy task alone (the curriculum's warm-up phase)")
	batch := flag.Int("batch-size", 32, "sequences per step")
	lr := flag.Float64("lr", 2e-3, "peak learning rate (cosine schedule)")
	warmup := flag.Int("warmup-steps", 100, "warmup steps")
	evalN := flag.Int("eval-n", 100, "evaluation examples per task")
	seed := flag.Uint64("seed", 1, "seed of the data and the initial weights")
	flag.Parse()
	if *copySteps < 0 || *copySteps >= *steps {
		return fmt.Errorf("--copy-steps must be in [0, --steps)")
	}
	start := time.Now()
	fmt.Printf("pretraining the demo model on %d CPU threads\n", runtime.GOMAXPROCS(0))

	if err := os.MkdirAll(*out, 0o755); err != nil {
		return err
	}
	if err := bytetok.Write(*out, demo.Tokenizer); err != nil {
		return err
	}
	tok, err := tokenizer.Load(*out)
	if err != nil {
		return err
	}
	tmpl, err := chat.Lookup(demo.Template)
	if err != nil {
		return err
	}
	cfg, err := demo.Config()
	if err != nil {
		return err
	}

	// The corpus, read in file order (one pass): first copySteps batches
	// of the copy task alone, which forms the attention circuit every
	// letter task needs; then the mix of all tasks, shuffled. Each task
	// also gets a disjoint evaluation set (and so does the held-out task)
	// for the report.
	tmp, err := os.MkdirTemp("", "gotune-pretrain-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	perTask := ((*steps-*copySteps)**batch + len(demo.PretrainTasks) - 1) / len(demo.PretrainTasks)
	corpus := synth.Generate(demo.CopyTask{}, *copySteps**batch, *seed+1)
	var mix []synth.Example
	evalSets := map[string]string{}
	for _, name := range append(append([]string(nil), demo.PretrainTasks...), demo.HeldOutTask) {
		task, err := demo.LookupTask(name)
		if err != nil {
			return err
		}
		all := synth.Generate(task, perTask+*evalN, *seed)
		if name != demo.HeldOutTask {
			mix = append(mix, all[:perTask]...)
		}
		p := filepath.Join(tmp, strings.ReplaceAll(name, ":", "_")+"-eval.jsonl")
		if err := synth.WriteFile(p, all[perTask:]); err != nil {
			return err
		}
		evalSets[name] = p
	}
	order := make([]int, len(mix))
	for i := range order {
		order[i] = i
	}
	data.Permute(order, *seed, 0)
	for _, i := range order {
		corpus = append(corpus, mix[i])
	}
	trainPath := filepath.Join(tmp, "train.jsonl")
	if err := synth.WriteFile(trainPath, corpus); err != nil {
		return err
	}
	ds, err := textdata.Open(trainPath, textdata.Options{Tokenizer: tok, Template: tmpl, VocabSize: cfg.VocabSize})
	if err != nil {
		return err
	}
	fmt.Println(textdata.Summary(ds))
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: *batch, SeqLen: cfg.MaxPos, PadID: 258})
	if err != nil {
		return err
	}
	if st := loader.Stats(); st.Truncated > 0 {
		return fmt.Errorf("%s", st.TruncationMessage())
	}

	be := cpu.New()
	m, err := model.New(cfg, be, *seed)
	if err != nil {
		return err
	}
	fmt.Println(train.ParamSummary(m.Params()))
	tr, err := train.New(m, loader, train.Config{
		Steps: *steps, GradAccum: 1, LR: *lr, Schedule: train.Cosine, WarmupSteps: *warmup,
		WeightDecay: 0.01, Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, MaxGradNorm: 1, LogEvery: 100,
	}, train.Options{Log: os.Stdout})
	if err != nil {
		return err
	}
	res, err := tr.Run(context.Background())
	tr.Close()
	if err != nil {
		return err
	}
	fmt.Printf("pretrained %d steps in %s\n", res.Steps, res.Elapsed.Round(time.Second))

	if err := saveBF16(m, *out); err != nil {
		return err
	}
	// Report on the saved (BF16-rounded) weights, as users get them.
	saved, err := model.Load(*out, cpu.New())
	if err != nil {
		return err
	}
	fmt.Println("exact match of the saved model (greedy, plain template):")
	for _, name := range append(append([]string(nil), demo.PretrainTasks...), demo.HeldOutTask) {
		convs, _, err := textdata.ReadConversations(evalSets[name], textdata.Instruction)
		if err != nil {
			return err
		}
		r, err := generate.ExactMatch(context.Background(), saved, tok, tmpl, convs, 24, nil)
		if err != nil {
			return err
		}
		note := ""
		if name == demo.HeldOutTask {
			note = "  (held out: never trained on)"
		}
		fmt.Printf("  %-10s %5.1f%%%s\n", name, 100*r.Accuracy(), note)
	}
	fmt.Printf("wrote %s in %s\n", *out, time.Since(start).Round(time.Second))
	return nil
}

// saveBF16 writes the model's weights as BF16 safetensors (half the size
// of float32; the loader computes in float32) and its config.
func saveBF16(m model.Model, dir string) error {
	be := m.Backend()
	var ts []safetensors.Tensor
	for _, p := range m.BaseParams() {
		ts = append(ts, safetensors.Tensor{Name: p.Name, DType: "BF16", Shape: append([]int(nil), p.W.Shape()...), F32: be.Download(p.W)})
	}
	if err := safetensors.Write(filepath.Join(dir, safetensors.SingleFile), ts, map[string]string{"format": "pt"}); err != nil {
		return err
	}
	cfg := m.Config().Clone()
	cfg.TorchDtype = "bfloat16"
	return cfg.Save(dir)
}
