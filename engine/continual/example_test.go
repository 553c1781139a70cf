package continual_test

import (
	"context"
	"fmt"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/continual"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/synth"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/finetune"
)

// Continual learning of two synthetic tasks in turn with a LoRA adapter
// on the demo model, as gotune continual --strategy naive does: two
// optimizer steps per task, every task scored (exact match and eval
// loss) after each one. Learning the second task lowers its eval loss.
func ExampleRun() {
	m, err := model.Load("../../testdata/demo", cpu.New())
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
	opts.LoRA.Rank, opts.LoRA.Alpha = 8, 16
	if _, err := lora.Apply(m, &opts); err != nil {
		panic(err)
	}
	var tasks []continual.Task
	for i, name := range []string{"double", "reverse"} {
		task, err := synthTask(name, uint64(i), tok, tmpl, m.Config().VocabSize)
		if err != nil {
			panic(err)
		}
		tasks = append(tasks, task)
	}
	cfg := continual.Config{
		Strategy: continual.StrategyNaive, Steps: 2, BatchSize: 8, SeqLen: 64, PadID: int32(tok.PAD()),
		Train: train.Config{GradAccum: 1, LR: 3e-3, Schedule: train.Constant,
			Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, MaxGradNorm: 1},
		Scorer: continual.Scorer{Tokenizer: tok, Template: tmpl, MaxNewTokens: 12},
	}
	res, err := continual.Run(context.Background(), m, tasks, cfg)
	if err != nil {
		panic(err)
	}
	fmt.Printf("tasks %v, accuracy matrix %d×%d\n", res.Tasks, len(res.Acc), len(res.Acc[1]))
	fmt.Println("training reverse lowered its eval loss:", res.EvalLoss[1][1] < res.EvalLoss[0][1])
	// Output:
	// tasks [double reverse], accuracy matrix 2×2
	// training reverse lowered its eval loss: true
}

// synthTask draws 16 training and 4 evaluation examples of a synthetic
// task and encodes them with tok and tmpl.
func synthTask(name string, seed uint64, tok tokenizer.Tokenizer, tmpl chat.Template, vocab int) (continual.Task, error) {
	st, err := synth.Lookup(name)
	if err != nil {
		return continual.Task{}, err
	}
	t := continual.Task{Name: name, Eval: &data.Dataset{Name: name + " eval"}}
	for i, x := range synth.Generate(st, 20, seed) {
		c := textdata.Conversation{Loc: data.Loc{File: name, Line: i + 1},
			Messages: chat.FromInstruction("", x.Instruction, x.Input, x.Output)}
		ex, err := textdata.EncodeConversation(c, tmpl, tok, vocab)
		if err != nil {
			return continual.Task{}, err
		}
		if i < 16 {
			t.Train = append(t.Train, ex)
		} else {
			t.Eval.Examples = append(t.Eval.Examples, ex)
			t.Convs = append(t.Convs, c)
		}
	}
	return t, nil
}
