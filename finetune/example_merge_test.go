package finetune_test

import (
	"context"
	"fmt"
	"math"
	"os"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
)

// Merging a LoRA adapter into its base model's weights (what gotune
// merge does before saving): a freshly trained adapter is folded in,
// and the merged model computes the logits that the base model with the
// adapter computes, which differ from the base model's own.
func ExampleLoadMerged() {
	out, err := os.MkdirTemp("", "gotune-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(out)
	const base = "../testdata/tiny/llama"
	o := finetune.JobOptions{
		MethodOptions: finetune.DefaultMethodOptions(),
		Model:         base, Method: "lora", Out: out,
		Data: finetune.DataOptions{Train: "../testdata/tiny/data.jsonl"},
		Train: train.Config{Steps: 3, GradAccum: 1, LR: 1e-2, Schedule: train.Constant,
			Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1},
		BatchSize: 2, SeqLen: 32,
	}
	o.LoRA.Rank, o.LoRA.Alpha = 4, 8
	if _, err := finetune.Run(context.Background(), o); err != nil {
		panic(err)
	}

	be := cpu.New()
	plain, err := model.Load(base, be)
	if err != nil {
		panic(err)
	}
	withAdapter, err := model.Load(base, be)
	if err != nil {
		panic(err)
	}
	if err := finetune.LoadAdapter(out, withAdapter); err != nil {
		panic(err)
	}
	merged, layers, err := finetune.LoadMerged(be, finetune.MergeOptions{Model: base, Adapter: out})
	if err != nil {
		panic(err)
	}
	ids := []int32{1, 5, 9, 13, 17, 21}
	want := logits(withAdapter, ids)
	fmt.Println("merged layers > 0:", layers > 0)
	fmt.Println("adapter changes the logits:", maxAbsDiff(logits(plain, ids), want) > 1e-4)
	fmt.Println("merged equals base + adapter:", maxAbsDiff(logits(merged, ids), want) < 1e-4)
	// Output:
	// merged layers > 0: true
	// adapter changes the logits: true
	// merged equals base + adapter: true
}

// logits returns a copy of m's logits for every position of ids.
func logits(m model.Model, ids []int32) []float32 {
	lg, err := m.Logits(nil, ids, 1, len(ids), true)
	if err != nil {
		panic(err)
	}
	return append([]float32(nil), cpu.Float32s(lg)...)
}

// maxAbsDiff returns the largest |a[i] - b[i]|.
func maxAbsDiff(a, b []float32) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(float64(a[i]-b[i])))
	}
	return d
}
