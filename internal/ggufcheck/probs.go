package ggufcheck

import (
	"fmt"
	"math"

	"github.com/gotune/gotune/engine/model"
)

// NextProbs returns the model's next-token distribution after every
// prefix of ids (row i: the softmax of the logits at position i), in one
// forward pass without a cache, the teacher-forced view that llama.cpp's
// distributions are compared with.
func NextProbs(m model.Model, ids []int32) ([][]float64, error) {
	if len(ids) == 0 {
		return nil, fmt.Errorf("ggufcheck: no token ids")
	}
	lg, err := m.Logits(nil, ids, 1, len(ids), true)
	if err != nil {
		return nil, err
	}
	logits := m.Backend().Download(lg)
	vocab := len(logits) / len(ids)
	out := make([][]float64, len(ids))
	for i := range out {
		out[i] = softmax(logits[i*vocab : (i+1)*vocab])
	}
	return out, nil
}

// softmax in float64.
func softmax(x []float32) []float64 {
	maxv := math.Inf(-1)
	for _, v := range x {
		maxv = math.Max(maxv, float64(v))
	}
	out := make([]float64, len(x))
	sum := 0.0
	for i, v := range x {
		out[i] = math.Exp(float64(v) - maxv)
		sum += out[i]
	}
	for i := range out {
		out[i] /= sum
	}
	return out
}
