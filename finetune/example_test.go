package finetune_test

import (
	"context"
	"fmt"
	"os"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
)

// LoRA fine-tuning end to end: the library path of "gotune train
// --method lora", then the adapter loaded onto a fresh copy of the base
// model by its peft_type.
func ExampleRun() {
	out, err := os.MkdirTemp("", "gotune-example-")
	if err != nil {
		panic(err)
	}
	defer os.RemoveAll(out)

	o := finetune.JobOptions{
		MethodOptions: finetune.DefaultMethodOptions(),
		Model:         "../testdata/tiny/llama",
		Method:        "lora",
		Data:          finetune.DataOptions{Train: "../testdata/tiny/data.jsonl"},
		Train: train.Config{Steps: 3, GradAccum: 1, LR: 1e-2, Schedule: train.Constant,
			Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1},
		BatchSize: 2, SeqLen: 32, Out: out,
	}
	o.LoRA.Rank, o.LoRA.Alpha = 4, 8
	res, err := finetune.Run(context.Background(), o)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Printf("%d steps, adapter %v, loss went down %v\n", res.Steps, res.Adapter,
		res.History[len(res.History)-1].Loss < res.History[0].Loss)

	m, err := model.Load("../testdata/tiny/llama", cpu.New())
	if err != nil {
		panic(err)
	}
	if err := finetune.LoadAdapter(out, m); err != nil {
		panic(err)
	}
	fmt.Println("adapter loaded")
	// Output:
	// 3 steps, adapter true, loss went down true
	// adapter loaded
}

// A wrong option is an *OptionError naming the option by its field path
// (or by whatever Names maps it to).
func ExampleRun_optionError() {
	o := finetune.JobOptions{Model: "m", Method: "lora", Data: finetune.DataOptions{Train: "d.jsonl"}, Out: "out"}
	_, err := finetune.Run(context.Background(), o)
	fmt.Println(err)
	o.Names = finetune.Names{"BatchSize": "--batch-size"}
	_, err = finetune.Run(context.Background(), o)
	fmt.Println(err)
	// Output:
	// BatchSize must be at least 1, got 0
	// --batch-size must be at least 1, got 0
}

// The built-in methods.
func ExampleMethods() {
	fmt.Println(finetune.Methods().Names())
	// Output:
	// [adapter freeze full lora prefix prompt ptuning]
}
