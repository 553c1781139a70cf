package fewshot

import (
	"context"
	"errors"
	"fmt"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/textdata"
)

// In-context k-shot prompting: the baseline that adapts nothing. Each
// query example is prompted with the split's support examples in front,
// as earlier turns of one conversation (so the chat template lays them
// out exactly as it lays out a multi-turn conversation), and the model's
// greedy reply to the last turn is scored.

// InContext returns, for each query example of sp, one conversation: the
// support examples' turns in support order, then the query example's
// turns. Only the first conversation's system message (if any) is kept,
// at the start: a template allows one, and only first.
func (t *Task) InContext(sp Split) []textdata.Conversation {
	out := make([]textdata.Conversation, len(sp.Query))
	for i, q := range sp.Query {
		var msgs []chat.Message
		for _, j := range append(append([]int(nil), sp.Support...), q) {
			for _, m := range t.Convs[j].Messages {
				if m.Role != chat.System || len(msgs) == 0 {
					msgs = append(msgs, m)
				}
			}
		}
		out[i] = textdata.Conversation{Loc: t.Convs[q].Loc, Messages: msgs}
	}
	return out
}

// ScoreInContext scores exact match on the split's query examples, each
// prompted with the k support examples in front (see InContext), without
// changing any parameter. QueryLoss is the mean token loss of the query
// answers in that context; SupportLoss and AdaptedLoss stay 0 (nothing
// adapts). A prompt and answer longer than the model's context
// (Batching.SeqLen) is an error naming k: a truncated prompt would not be
// k-shot.
func (s *Scorer) ScoreInContext(ctx context.Context, t *Task, sp Split) (ScoreResult, error) {
	res := ScoreResult{Task: t.Name}
	if !t.Scorable() {
		return res, errors.New(t.Name + " is not instruction or chat data: exact match needs answers")
	}
	convs := t.InContext(sp)
	examples := make([]data.Example, len(convs))
	for i, c := range convs {
		ex, err := s.encodeLastReply(c)
		if err != nil {
			return res, err
		}
		if len(ex.InputIDs) > s.Batching.SeqLen {
			return res, fmt.Errorf("%s: the in-context prompt of %s with %d support examples, and its answer, take %d tokens, more than the model's %d positions; use a smaller k",
				t.Name, c.Loc, len(sp.Support), len(ex.InputIDs), s.Batching.SeqLen)
		}
		examples[i] = ex
	}
	qloss, err := Loss(s.Model, t.Name+" (in-context query)", examples, s.Batching)
	if err != nil {
		return res, err
	}
	if res.QueryLoss, err = qloss(); err != nil {
		return res, err
	}
	res.Correct, res.Total, err = s.exactMatch(ctx, convs)
	return res, err
}

// encodeLastReply tokenizes a conversation with only its last reply as
// labels: the earlier replies are context, not what is scored.
func (s *Scorer) encodeLastReply(c textdata.Conversation) (data.Example, error) {
	ex, err := textdata.EncodeConversation(c, s.Encoding.Template, s.Encoding.Tokenizer, s.Encoding.VocabSize)
	if err != nil {
		return ex, err
	}
	pieces, err := s.Encoding.Template.Prompt(c.Messages[:len(c.Messages)-1])
	if err != nil {
		return ex, data.Errorf(c.Loc, "chat template %s: %v", s.Encoding.Template.Name(), err)
	}
	prompt, _, err := chat.Encode(s.Encoding.Tokenizer, pieces)
	if err != nil {
		return ex, data.Errorf(c.Loc, "%v", err)
	}
	for i := range min(len(prompt), len(ex.Labels)) {
		ex.Labels[i] = chat.IgnoreIndex
	}
	return ex, nil
}
