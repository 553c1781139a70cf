package fewshot

import (
	"fmt"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/train"
)

// Batching says how examples are cut into micro-batches.
type Batching struct {
	// SeqLen truncates longer examples (at least 2).
	SeqLen int
	// MicroBatch is the most sequences per forward pass (>= 1); the
	// examples of a set are one optimizer step whatever their number.
	MicroBatch int
	// PadID is the input id of padding positions.
	PadID int32
}

// batches cuts examples, in order, into micro-batches.
func (b Batching) batches(name string, examples []data.Example) ([]data.Batch, int, error) {
	loader, err := data.NewLoader(&data.Dataset{Name: name, Examples: examples}, data.LoaderConfig{
		BatchSize: max(1, b.MicroBatch), SeqLen: b.SeqLen, PadID: b.PadID,
	})
	if err != nil {
		return nil, 0, err
	}
	out := make([]data.Batch, loader.BatchesPerEpoch())
	for i := range out {
		out[i] = loader.Batch(0, i)
	}
	return out, loader.Examples(), nil
}

// LossGrad returns the GradFunc of model's mean token loss over
// examples (one step over all of them, however many micro-batches that
// takes): it accumulates the gradient into the trainable parameters'
// buffers and returns the loss. name labels the set in errors.
func LossGrad(model engine.CausalLM, name string, examples []data.Example, b Batching) (GradFunc, error) {
	return lossFunc(model, name, examples, b, true)
}

// Loss returns a function computing model's mean token loss over
// examples without gradients.
func Loss(model engine.CausalLM, name string, examples []data.Example, b Batching) (GradFunc, error) {
	return lossFunc(model, name, examples, b, false)
}

func lossFunc(model engine.CausalLM, name string, examples []data.Example, b Batching, backward bool) (GradFunc, error) {
	batches, _, err := b.batches(name, examples)
	if err != nil {
		return nil, err
	}
	tokens := 0
	for _, hb := range batches {
		tokens += train.Counted(model, hb)
	}
	if tokens == 0 {
		return nil, fmt.Errorf("%s: no scored token", name)
	}
	scale := float32(1 / float64(tokens))
	return func() (float64, error) {
		sum := 0.0
		for _, hb := range batches {
			s, err := train.ForwardBatch(model, hb, backward, scale)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", name, err)
			}
			sum += s
		}
		return sum / float64(tokens), nil
	}, nil
}
