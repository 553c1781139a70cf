package fewshot

import (
	"context"
	"errors"
	"math"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/generate"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
)

// Scorer adapts a model to a task's support set and scores exact match
// on its query set, always from the same starting values (the
// parameters' values when each call starts; they are put back after it).
type Scorer struct {
	Model    model.Model
	Params   []*engine.Param
	Inner    InnerConfig
	Batching Batching
	Encoding Encoding
	// MaxNewTokens caps the generated answer; 0 means the longest
	// expected answer of the query set plus 4 tokens.
	MaxNewTokens int
}

// ScoreResult is one task's k-shot outcome.
type ScoreResult struct {
	Task string
	// Correct of Total query examples matched exactly after adaptation.
	Correct, Total int
	// SupportLoss is the support loss before adaptation, AdaptedLoss
	// before the last inner step.
	SupportLoss, AdaptedLoss float64
	// QueryLoss is the mean token loss of the query examples after
	// adaptation: a finer signal than exact match when few answers are
	// entirely right.
	QueryLoss float64
}

// Accuracy returns Correct/Total.
func (r ScoreResult) Accuracy() float64 {
	if r.Total == 0 {
		return 0
	}
	return float64(r.Correct) / float64(r.Total)
}

// Score adapts on the split's support examples and returns the exact
// match on its query examples. The parameters are restored afterwards.
func (s *Scorer) Score(ctx context.Context, t *Task, sp Split) (ScoreResult, error) {
	res := ScoreResult{Task: t.Name}
	if !t.Scorable() {
		return res, errors.New(t.Name + " is not instruction or chat data: exact match needs answers")
	}
	be := s.Model.Backend()
	start := Take(be, s.Params)
	defer func() {
		start.Restore()
		start.Free()
	}()
	grad, err := LossGrad(s.Model, t.Name, t.examples(sp.Support), s.Batching)
	if err != nil {
		return res, err
	}
	r, err := Adapt(be, s.Params, grad, s.Inner)
	if err != nil {
		return res, err
	}
	res.SupportLoss, res.AdaptedLoss = r.FirstLoss, r.LastLoss
	qloss, err := Loss(s.Model, t.Name+" (query)", t.examples(sp.Query), s.Batching)
	if err != nil {
		return res, err
	}
	if res.QueryLoss, err = qloss(); err != nil {
		return res, err
	}
	res.Correct, res.Total, err = s.exactMatch(ctx, t.conversations(sp.Query))
	return res, err
}

// exactMatch counts the greedy replies to convs that equal their last
// message, generating at most MaxNewTokens (or the longest answer plus 4).
func (s *Scorer) exactMatch(ctx context.Context, convs []textdata.Conversation) (correct, total int, err error) {
	maxNew := s.MaxNewTokens
	if maxNew == 0 {
		if maxNew, err = answerTokens(s.Encoding.Tokenizer, convs); err != nil {
			return 0, 0, err
		}
		maxNew += 4
	}
	em, err := generate.ExactMatch(ctx, s.Model, s.Encoding.Tokenizer, s.Encoding.Template, convs, maxNew, nil)
	if err != nil {
		return 0, 0, err
	}
	return em.Correct, em.Total, nil
}

// answerTokens returns the most tokens of any expected answer.
func answerTokens(tok tokenizer.Tokenizer, convs []textdata.Conversation) (int, error) {
	n := 0
	for _, c := range convs {
		if len(c.Messages) == 0 || c.Messages[len(c.Messages)-1].Role != chat.Assistant {
			continue
		}
		ids, err := tok.Encode(c.Messages[len(c.Messages)-1].Content, false)
		if err != nil {
			return 0, err
		}
		n = max(n, len(ids))
	}
	return n, nil
}

// Spread summarises per-task accuracies.
type Spread struct {
	Mean, Std, Min, Max float64
	N                   int
}

// Summarise returns the mean, sample standard deviation (n−1; 0 for one
// task), minimum and maximum of xs.
func Summarise(xs []float64) Spread {
	s := Spread{N: len(xs), Min: math.Inf(1), Max: math.Inf(-1)}
	if len(xs) == 0 {
		return Spread{}
	}
	for _, x := range xs {
		s.Mean += x
		s.Min, s.Max = min(s.Min, x), max(s.Max, x)
	}
	s.Mean /= float64(len(xs))
	if len(xs) > 1 {
		for _, x := range xs {
			s.Std += (x - s.Mean) * (x - s.Mean)
		}
		s.Std = math.Sqrt(s.Std / float64(len(xs)-1))
	}
	return s
}
