package fewshot_test

import (
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"slices"

	"github.com/gotune/gotune/engine"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/fewshot"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/synth"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/finetune"
)

// Meta-training a LoRA adapter with Reptile on the cipher family (a
// fresh substitution key per task) with the demo model, as gotune
// meta-train does: two meta-steps of two tasks, k = 4 support examples,
// scored on one held-out task before and after (two meta-steps teach
// nothing yet: docs/results.md has runs long enough to).
func ExampleMetaTrain() {
	be := cpu.New()
	m, err := model.Load("../../testdata/demo", be)
	if err != nil {
		panic(err)
	}
	tok, err := tokenizer.LoadHF("../../testdata/demo/tokenizer.json")
	if err != nil {
		panic(err)
	}
	tmpl, err := chat.Lookup("plain")
	if err != nil {
		panic(err)
	}
	lora, err := finetune.Methods().Lookup("lora", nil)
	if err != nil {
		panic(err)
	}
	opts := finetune.DefaultMethodOptions()
	opts.LoRA.Rank, opts.LoRA.Alpha = 4, 8
	if _, err := lora.Apply(m, &opts); err != nil {
		panic(err)
	}
	params := fewshot.Trainable(m.Params())
	before := fewshot.Take(be, params)

	enc := fewshot.Encoding{Tokenizer: tok, Template: tmpl, VocabSize: m.Config().VocabSize}
	family, err := synth.LookupFamily("cipher")
	if err != nil {
		panic(err)
	}
	heldOut, err := fewshot.SynthTask(family.Draw(rand.New(rand.NewPCG(7, 7))), 6, 7, enc)
	if err != nil {
		panic(err)
	}
	inner := fewshot.InnerConfig{Steps: 2, LR: 1e-3, Optimizer: fewshot.AdamW, Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1}
	scorer := &fewshot.Scorer{Model: m, Params: params, Inner: inner, Encoding: enc,
		Batching: fewshot.Batching{SeqLen: 64, MicroBatch: 4, PadID: int32(tok.PAD())}}
	cfg := fewshot.MetaConfig{
		Inner: inner, Outer: fewshot.OuterConfig{Algo: fewshot.Reptile, LR: 1, Steps: 2},
		MetaBatch: 2, Shots: 4, Query: 2, Seed: 1, EvalQuery: 2,
	}
	src := fewshot.FamilySource{Family: family, Encoding: enc}
	res, err := fewshot.MetaTrain(context.Background(), scorer, src, []*fewshot.Task{heldOut}, cfg, io.Discard)
	if err != nil {
		panic(err)
	}
	first, last := res.Evals[0], res.Evals[len(res.Evals)-1]
	fmt.Printf("%d meta-steps; held-out 4-shot exact match before %.1f, after %.1f\n",
		res.Steps, *first.ValAcc, *last.ValAcc)
	fmt.Println("the adapter moved:", moved(before, params))
	// Output:
	// 2 meta-steps; held-out 4-shot exact match before 0.0, after 0.0
	// the adapter moved: true
}

// moved reports whether any parameter's values differ from the snapshot's.
func moved(before *fewshot.Snapshot, params []*engine.Param) bool {
	for i, v := range before.Values() {
		if !slices.Equal(cpu.Float32s(v), cpu.Float32s(params[i].W)) {
			return true
		}
	}
	return false
}
