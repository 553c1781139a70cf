package generate

import (
	"context"
	"fmt"

	"github.com/gotune/gotune/engine/chat"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/synth"
	"github.com/gotune/gotune/engine/textdata"
	"github.com/gotune/gotune/engine/tokenizer"
)

// Sample is one exact-match evaluation case and what the model said.
type Sample struct {
	// Loc is the record's file and line.
	Loc data.Loc
	// Prompt is the last user message (with its input).
	Prompt string
	// Answer is the expected reply, Got the generated one.
	Answer, Got string
	// Correct reports whether Got matches Answer (surrounding white space
	// ignored).
	Correct bool
}

// ExactMatchResult counts correct replies.
type ExactMatchResult struct {
	Correct, Total int
	// Samples holds every case, in file order.
	Samples []Sample
}

// Accuracy returns Correct/Total (0 for no cases).
func (r *ExactMatchResult) Accuracy() float64 {
	if r.Total == 0 {
		return 0
	}
	return float64(r.Correct) / float64(r.Total)
}

// ExactMatch scores a model on conversations with one right answer each:
// the last message is the expected reply, the messages before it are laid
// out with tmpl's generation prompt (exactly as training laid them out),
// and the model's greedy reply of at most maxNew tokens, stopped at EOS
// or the template's end-of-turn token, must equal it (surrounding white
// space ignored). progress, if set, is called after each case.
func ExactMatch(ctx context.Context, m model.Model, tok tokenizer.Tokenizer, tmpl chat.Template, convs []textdata.Conversation, maxNew int, progress func(done int)) (*ExactMatchResult, error) {
	res := &ExactMatchResult{}
	stop := chat.StopIDs(tmpl, tok)
	for i, c := range convs {
		if err := ctx.Err(); err != nil {
			return res, err
		}
		n := len(c.Messages)
		if n < 2 || c.Messages[n-1].Role != chat.Assistant {
			return nil, data.Errorf(c.Loc, "exact match needs a conversation ending with the assistant's answer")
		}
		ct, err := chat.WithTools(tmpl, c.Tools)
		if err != nil {
			return nil, data.Errorf(c.Loc, "%v", err)
		}
		pieces, err := ct.Prompt(c.Messages[:n-1])
		if err != nil {
			return nil, data.Errorf(c.Loc, "chat template %s: %v", tmpl.Name(), err)
		}
		ids, _, err := chat.Encode(tok, pieces)
		if err != nil {
			return nil, data.Errorf(c.Loc, "%v", err)
		}
		out, err := Generate(ctx, m, ids, Options{MaxNewTokens: maxNew, Stop: stop})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Loc, err)
		}
		got := tok.Decode(Ints(out.Tokens))
		user := c.Messages[n-2]
		prompt := user.Content
		if user.Input != "" {
			prompt += " " + user.Input
		}
		s := Sample{Loc: c.Loc, Prompt: prompt, Answer: c.Messages[n-1].Content, Got: got}
		s.Correct = synth.ExactMatch(got, s.Answer)
		if s.Correct {
			res.Correct++
		}
		res.Total++
		res.Samples = append(res.Samples, s)
		if progress != nil {
			progress(i + 1)
		}
	}
	return res, nil
}
