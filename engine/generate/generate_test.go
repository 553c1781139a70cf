package generate

import (
	"context"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/internal/fieldpaths"
)

// testModel returns a small random model whose lm_head (or, when tied,
// embedding) is scaled up so that logits are far apart: a greedy choice
// then never hinges on float rounding, and the cached and uncached paths
// must agree token for token.
func testModel(t *testing.T, arch string, maxPos int) model.Model {
	t.Helper()
	sizes := hfconfig.Sizes{VocabSize: 50, Hidden: 32, Layers: 2, Heads: 4, KVHeads: 2, Intermediate: 64, MaxPos: maxPos}
	var cfg *hfconfig.Config
	var err error
	if arch == "gpt2" {
		sizes.KVHeads = 0
		cfg, err = hfconfig.NewGPT2(sizes)
	} else {
		cfg, err = hfconfig.NewLlama(sizes)
	}
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, cpu.New(), 7)
	if err != nil {
		t.Fatal(err)
	}
	be := m.Backend()
	rng := rand.New(rand.NewPCG(1, 2))
	for _, p := range m.Params() {
		if p.Name == "lm_head.weight" || (cfg.TieEmbeddings && strings.HasSuffix(p.Name, "wte.weight")) {
			w := make([]float32, p.W.Len())
			for i := range w {
				w[i] = float32(rng.NormFloat64())
			}
			be.Upload(p.W, w)
		}
	}
	return m
}

// counting wraps a model and counts the tokens fed to Logits.
type counting struct {
	model.Model
	fed, calls int
}

func (c *counting) Logits(kv *model.KVCache, ids []int32, B, T int, all bool) (*engine.Tensor, error) {
	c.fed += B * T
	c.calls++
	return c.Model.Logits(kv, ids, B, T, all)
}

var prompt = []int32{1, 5, 9, 13}

func TestCacheMatchesNoCache(t *testing.T) {
	for _, arch := range []string{"llama", "gpt2"} {
		for _, o := range []Options{
			{MaxNewTokens: 20},
			{MaxNewTokens: 20, Temperature: 0.8, TopK: 10, TopP: 0.9, Seed: 3},
		} {
			m := testModel(t, arch, 64)
			cm := &counting{Model: m}
			withCache, err := Generate(context.Background(), cm, prompt, o)
			if err != nil {
				t.Fatal(err)
			}
			o.NoCache = true
			without, err := Generate(context.Background(), m, prompt, o)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(withCache.Tokens, without.Tokens) || len(withCache.Tokens) != 20 {
				t.Errorf("%s T=%v: cached %v\nuncached %v", arch, o.Temperature, withCache.Tokens, without.Tokens)
			}
			// The cache feeds the prompt once and then one token per step.
			if want := len(prompt) + 19; cm.fed != want || cm.calls != 20 {
				t.Errorf("%s: cached generation fed %d tokens in %d calls, want %d in 20", arch, cm.fed, cm.calls, want)
			}
		}
	}
}

// TestCacheLogits compares the cached logits of every step with a full
// forward pass over the same sequence, on a LLaMA and on the golden
// Gemma models (whose sliding layers see 3 positions: the sequence
// outgrows the window).
func TestCacheLogits(t *testing.T) {
	for _, name := range []string{"llama", "gemma2", "gemma3"} {
		t.Run(name, func(t *testing.T) {
			var m model.Model
			if name == "llama" {
				m = testModel(t, "llama", 64)
			} else {
				var err error
				if m, err = model.Load(filepath.Join("..", "..", "testdata", "golden", name), cpu.New()); err != nil {
					t.Fatal(err)
				}
			}
			checkCacheLogits(t, m)
		})
	}
}

func checkCacheLogits(t *testing.T, m model.Model) {
	seq := append([]int32(nil), prompt...)
	next, release, err := stepper(m, prompt, 30, false)
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	lg, err := next(prompt)
	if err != nil {
		t.Fatal(err)
	}
	for step := 0; step < 10; step++ {
		full, err := m.Logits(nil, seq, 1, len(seq), false)
		if err != nil {
			t.Fatal(err)
		}
		ref := m.Backend().Download(full)
		var num, den float64
		for i := range ref {
			d := float64(lg[i] - ref[i])
			num += d * d
			den += float64(ref[i]) * float64(ref[i])
		}
		if rel := math.Sqrt(num / den); rel > 1e-5 {
			t.Fatalf("step %d: cached logits differ from a full pass by %g (relative)", step, rel)
		}
		id := int32(Argmax(lg))
		seq = append(seq, id)
		if lg, err = next([]int32{id}); err != nil {
			t.Fatal(err)
		}
	}
}

func TestGreedyDeterministicAndStops(t *testing.T) {
	m := testModel(t, "llama", 64)
	a, err := Generate(context.Background(), m, prompt, Options{MaxNewTokens: 12})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Generate(context.Background(), m, prompt, Options{MaxNewTokens: 12, Seed: 99})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(a.Tokens, b.Tokens) || a.Reason != StopLength {
		t.Fatalf("greedy differs between runs: %v %v (%s)", a.Tokens, b.Tokens, a.Reason)
	}
	// Top-k 1 sampling is greedy whatever the temperature and seed.
	k1, err := Generate(context.Background(), m, prompt, Options{MaxNewTokens: 12, Temperature: 5, TopK: 1, Seed: 4})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(k1.Tokens, a.Tokens) {
		t.Errorf("top-k 1: %v, greedy %v", k1.Tokens, a.Tokens)
	}
	// Stopping at the token greedy decoding produces at position 3 (one
	// that does not appear earlier) keeps the tokens before it.
	at := -1
	for i, id := range a.Tokens {
		if !slices.Contains(a.Tokens[:i], id) && i > 0 {
			at = i
			break
		}
	}
	if at < 0 {
		t.Skip("greedy output repeats one token; no stop position to test")
	}
	var streamed []int32
	s, err := Generate(context.Background(), m, prompt, Options{MaxNewTokens: 12, Stop: []int32{a.Tokens[at]}, OnToken: func(id int32) error {
		streamed = append(streamed, id)
		return nil
	}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Tokens, a.Tokens[:at]) || s.Reason != StopToken || s.StopID != a.Tokens[at] || !slices.Equal(streamed, s.Tokens) {
		t.Errorf("stop at %d: got %v (%s, %d), streamed %v; want %v", a.Tokens[at], s.Tokens, s.Reason, s.StopID, streamed, a.Tokens[:at])
	}
}

func TestSeededSampling(t *testing.T) {
	m := testModel(t, "llama", 64)
	gen := func(seed uint64) []int32 {
		r, err := Generate(context.Background(), m, prompt, Options{MaxNewTokens: 16, Temperature: 1.5, TopK: 20, TopP: 0.95, Seed: seed})
		if err != nil {
			t.Fatal(err)
		}
		return r.Tokens
	}
	a, b, c := gen(1), gen(1), gen(2)
	if !slices.Equal(a, b) {
		t.Errorf("same seed, different tokens: %v %v", a, b)
	}
	if slices.Equal(a, c) {
		t.Errorf("seeds 1 and 2 gave the same 16 tokens %v", a)
	}
}

func TestContextLimit(t *testing.T) {
	m := testModel(t, "llama", 8)
	r, err := Generate(context.Background(), m, prompt, Options{MaxNewTokens: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Tokens) != 4 || r.Reason != StopContext {
		t.Errorf("%d tokens (%s), want 4 (context)", len(r.Tokens), r.Reason)
	}
	long := make([]int32, 8)
	if _, err := Generate(context.Background(), m, long, Options{MaxNewTokens: 1}); err == nil || !strings.Contains(err.Error(), "at most 8 positions") {
		t.Errorf("prompt too long: %v", err)
	}
}

func TestOptionErrors(t *testing.T) {
	m := testModel(t, "llama", 16)
	for _, c := range []struct {
		o    Options
		want string
	}{
		{Options{MaxNewTokens: -1}, "MaxNewTokens must not be negative, got -1"},
		{Options{Temperature: -1}, "Temperature must be a non-negative number, got -1"},
		{Options{Temperature: math.NaN()}, "Temperature must be a non-negative number, got NaN"},
		{Options{TopK: -2}, "TopK must not be negative, got -2"},
		{Options{TopP: 1.5}, "TopP must be in [0, 1], got 1.5"},
	} {
		_, err := Generate(context.Background(), m, prompt, c.o)
		assert.EqualError(t, err, c.want)
		fieldpaths.RequireFieldError(t, err, Options{})
	}
	if _, err := Generate(context.Background(), m, nil, Options{}); err == nil || !strings.Contains(err.Error(), "empty prompt") {
		t.Errorf("empty prompt: %v", err)
	}
}

// TestSamplerDistribution checks the sampler against the distribution it
// should draw from: frequencies over many draws match the tempered,
// truncated, renormalised probabilities computed here directly.
func TestSamplerDistribution(t *testing.T) {
	logits := []float32{2, 1, 0.5, 0, -1, 3}
	// Probabilities at temperature 1, in descending order of logit:
	// ids 5, 0, 1, 2, 3, 4.
	order := []int{5, 0, 1, 2, 3, 4}
	cases := []struct {
		name    string
		temp    float64
		k       int
		p       float64
		support int // how many of order may appear
	}{
		{"full", 1, 0, 0, 6},
		{"hot", 2, 0, 1, 6},
		{"top-k 3", 1, 3, 0, 3},
		{"top-p 0.8", 1, 0, 0.8, 2},         // cumulative .605, .827
		{"top-p 0.5", 1, 0, 0.5, 1},         // the top token alone
		{"top-k 4 top-p 0.9", 1, 4, 0.9, 3}, // over 4: .631, .863, .948
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			// Reference distribution.
			w := make([]float64, len(order))
			for r, id := range order {
				w[r] = math.Exp(float64(logits[id]) / c.temp)
			}
			keep := len(order)
			if c.k > 0 {
				keep = c.k
			}
			sum := 0.0
			for r := 0; r < keep; r++ {
				sum += w[r]
			}
			if c.p > 0 && c.p < 1 {
				cum := 0.0
				for r := 0; r < keep; r++ {
					cum += w[r] / sum
					if cum >= c.p {
						keep = r + 1
						break
					}
				}
			}
			sum = 0
			for r := 0; r < keep; r++ {
				sum += w[r]
			}
			if keep != c.support {
				t.Fatalf("reference keeps %d tokens, the case says %d", keep, c.support)
			}
			s := NewSampler(c.temp, c.k, c.p, 11)
			const n = 40000
			counts := map[int32]int{}
			for i := 0; i < n; i++ {
				counts[s.Sample(logits)]++
			}
			for r, id := range order {
				want := 0.0
				if r < keep {
					want = w[r] / sum
				}
				got := float64(counts[int32(id)]) / n
				if (want == 0) != (got == 0) || math.Abs(got-want) > 0.01 {
					t.Errorf("token %d: frequency %.4f, probability %.4f", id, got, want)
				}
			}
		})
	}
}
