// Package generate produces text from a causal language model: greedy
// decoding and seeded sampling with temperature, top-k and top-p, using
// the model's key/value cache so that each new token costs one forward
// pass over that token alone (O(context) attention, not a pass over the
// whole sequence).
package generate

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"sort"

	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/tokenizer"
)

// Options control decoding.
type Options struct {
	// MaxNewTokens is the most tokens to generate (>= 0).
	MaxNewTokens int
	// Temperature divides the logits before sampling; 0 means greedy
	// decoding (the most likely token, the lowest id on ties).
	Temperature float64
	// TopK keeps only the K most likely tokens (0: all).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP (nucleus sampling; 0 or 1: all).
	TopP float64
	// Seed seeds the sampler: the same seed, model and options give the
	// same tokens.
	Seed uint64
	// Stop lists token ids that end generation (EOS, end-of-turn tokens).
	// The stop token is not part of the result.
	Stop []int32
	// OnToken, if set, is called with each generated token (stop tokens
	// excluded) as soon as it is chosen, for streaming; an error ends
	// generation with that error.
	OnToken func(id int32) error
	// NoCache recomputes the whole sequence for every token instead of
	// using the key/value cache: quadratic work, kept as the reference the
	// cached path is tested against.
	NoCache bool
}

// Stop reasons of a Result.
const (
	// StopToken means a token of Options.Stop was generated.
	StopToken = "stop"
	// StopLength means MaxNewTokens tokens were generated.
	StopLength = "length"
	// StopContext means the model's maximum sequence length was reached.
	StopContext = "context"
)

// Result is what Generate produced.
type Result struct {
	// Tokens are the generated ids, without the prompt and the stop token.
	Tokens []int32
	// Reason is StopToken, StopLength or StopContext.
	Reason string
	// StopID is the stop token generated, or -1.
	StopID int32
}

// Validate reports the first invalid option as a *fielderr.Error.
func (o *Options) Validate() error {
	switch {
	case o.MaxNewTokens < 0:
		return fielderr.Errorf("MaxNewTokens", "must not be negative, got %d", o.MaxNewTokens)
	case !(o.Temperature >= 0) || math.IsInf(o.Temperature, 0):
		return fielderr.Errorf("Temperature", "must be a non-negative number, got %v", o.Temperature)
	case o.TopK < 0:
		return fielderr.Errorf("TopK", "must not be negative, got %d", o.TopK)
	case !(o.TopP >= 0 && o.TopP <= 1):
		return fielderr.Errorf("TopP", "must be in [0, 1], got %v", o.TopP)
	}
	return nil
}

// Generate continues prompt (token ids, at least one) with up to
// opts.MaxNewTokens tokens. It stops early at a stop token, at the model's
// maximum sequence length (max_position_embeddings) or when ctx is
// cancelled (returning what it has and ctx's error).
func Generate(ctx context.Context, m model.Model, prompt []int32, opts Options) (*Result, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if len(prompt) == 0 {
		return nil, fmt.Errorf("generate: empty prompt (give at least one token, e.g. BOS)")
	}
	maxPos := m.Config().MaxPos
	if len(prompt) >= maxPos {
		return nil, fmt.Errorf("generate: the prompt has %d tokens, but the model handles at most %d positions (max_position_embeddings), leaving no room for a new token", len(prompt), maxPos)
	}
	budget, reason := opts.MaxNewTokens, StopLength
	if room := maxPos - len(prompt); room < budget {
		budget, reason = room, StopContext
	}
	res := &Result{StopID: -1, Reason: reason}
	if budget == 0 {
		res.Reason = StopLength
		return res, nil
	}
	s := NewSampler(opts.Temperature, opts.TopK, opts.TopP, opts.Seed)
	capacity := len(prompt) + budget
	if p := m.Prompt(); p != nil {
		// Prompt tuning's virtual tokens go into the cache in front.
		capacity += p.NumTokens()
	}
	next, release, err := stepper(m, prompt, capacity, opts.NoCache)
	if err != nil {
		return nil, err
	}
	defer release()
	logits, err := next(prompt)
	if err != nil {
		return nil, err
	}
	for len(res.Tokens) < budget {
		id := s.Sample(logits)
		if slices.Contains(opts.Stop, id) {
			res.Reason, res.StopID = StopToken, id
			return res, nil
		}
		res.Tokens = append(res.Tokens, id)
		if opts.OnToken != nil {
			if err := opts.OnToken(id); err != nil {
				return res, err
			}
		}
		if len(res.Tokens) == budget {
			break
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
		if logits, err = next([]int32{id}); err != nil {
			return res, err
		}
	}
	return res, nil
}

// stepper returns a function that feeds new tokens and returns the logits
// of the last one, with a KV cache of capacity tokens (or, with noCache,
// by running the whole sequence so far each time).
func stepper(m model.Model, prompt []int32, capacity int, noCache bool) (next func([]int32) ([]float32, error), release func(), err error) {
	be := m.Backend()
	if noCache {
		seq := []int32{}
		return func(ids []int32) ([]float32, error) {
			seq = append(seq, ids...)
			lg, err := m.Logits(nil, seq, 1, len(seq), false)
			if err != nil {
				return nil, err
			}
			return be.Download(lg), nil
		}, func() {}, nil
	}
	c, err := m.NewKVCache(1, capacity)
	if err != nil {
		return nil, nil, err
	}
	return func(ids []int32) ([]float32, error) {
		lg, err := m.Logits(c, ids, 1, len(ids), false)
		if err != nil {
			return nil, err
		}
		return be.Download(lg), nil
	}, c.Free, nil
}

// Sampler picks the next token from logits.
type Sampler struct {
	temperature, topP float64
	topK              int
	rng               *rand.Rand

	idx   []int
	probs []float64
}

// NewSampler returns a sampler; temperature 0 makes it greedy (and the
// other settings unused).
func NewSampler(temperature float64, topK int, topP float64, seed uint64) *Sampler {
	return &Sampler{temperature: temperature, topK: topK, topP: topP, rng: rand.New(rand.NewPCG(seed, 0x67656e6572617465))}
}

// Sample returns the chosen token id. The steps are those of Hugging Face's
// logits warpers, in their order: temperature, top-k, top-p, then a draw
// from the renormalised distribution. Ties are broken by the lower id, so
// the result depends only on the logits and the seed.
func (s *Sampler) Sample(logits []float32) int32 {
	if s.temperature == 0 {
		return int32(Argmax(logits))
	}
	n := len(logits)
	if cap(s.idx) < n {
		s.idx = make([]int, n)
		s.probs = make([]float64, n)
	}
	idx, probs := s.idx[:n], s.probs[:n]
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return logits[idx[a]] > logits[idx[b]] })
	keep := n
	if s.topK > 0 && s.topK < keep {
		keep = s.topK
	}
	// Softmax over the kept tokens, in float64, from the largest logit.
	top := float64(logits[idx[0]])
	sum := 0.0
	for r := 0; r < keep; r++ {
		p := math.Exp((float64(logits[idx[r]]) - top) / s.temperature)
		probs[r] = p
		sum += p
	}
	if s.topP > 0 && s.topP < 1 {
		cum := 0.0
		for r := 0; r < keep; r++ {
			cum += probs[r] / sum
			if cum >= s.topP {
				keep = r + 1
				break
			}
		}
		sum = 0
		for r := 0; r < keep; r++ {
			sum += probs[r]
		}
	}
	u := s.rng.Float64() * sum
	for r := 0; r < keep; r++ {
		u -= probs[r]
		if u < 0 {
			return int32(idx[r])
		}
	}
	return int32(idx[keep-1]) // rounding left u >= 0 after the last token
}

// Argmax returns the index of the largest value, the lowest on ties.
func Argmax(x []float32) int {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return best
}

// PromptIDs tokenizes a raw text prompt the way the model's tokenizer
// starts a sequence (tok.Encode with its special tokens, e.g. BOS). An
// empty prompt becomes BOS alone (or EOS for tokenizers without BOS, as
// GPT-2 starts unconditional text with <|endoftext|>).
func PromptIDs(tok tokenizer.Tokenizer, text string) ([]int32, error) {
	ids, err := tok.Encode(text, true)
	if err != nil {
		return nil, err
	}
	if len(ids) == 0 {
		switch {
		case tok.BOS() != tokenizer.NoToken:
			ids = []int{tok.BOS()}
		case tok.EOS() != tokenizer.NoToken:
			ids = []int{tok.EOS()}
		default:
			return nil, fmt.Errorf("generate: empty prompt and the tokenizer has neither BOS nor EOS to start from")
		}
	}
	out := make([]int32, len(ids))
	for i, id := range ids {
		out[i] = int32(id)
	}
	return out, nil
}

// Ints converts token ids for tokenizer.Decode.
func Ints(ids []int32) []int {
	out := make([]int, len(ids))
	for i, id := range ids {
		out[i] = int(id)
	}
	return out
}
