package model

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/internal/golden"
	"github.com/stretchr/testify/require"
)

func seqs(B, T, vocab int, seed uint64) [][]int32 {
	rng := newRand(seed)
	out := make([][]int32, B)
	for b := range out {
		for t := 0; t < T; t++ {
			out[b] = append(out[b], int32(rng.IntN(vocab)))
		}
	}
	return out
}

// column returns ids[:, from:to] flattened.
func column(ids [][]int32, from, to int) []int32 {
	var out []int32
	for _, s := range ids {
		out = append(out, s[from:to]...)
	}
	return out
}

// rowsOf returns rows t of each sequence of a [B·T, V] logits copy.
func rowsOf(logits []float32, B, T, V, t int) []float32 {
	var out []float32
	for b := 0; b < B; b++ {
		out = append(out, logits[(b*T+t)*V:(b*T+t+1)*V]...)
	}
	return out
}

func logitsCopy(t *testing.T, m Model, c *KVCache, ids []int32, B, T int, all bool) []float32 {
	t.Helper()
	lg, err := m.Logits(c, ids, B, T, all)
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), cpu.Float32s(lg)...)
}

// TestKVCacheMatchesFullSequence checks that a prompt chunk followed by
// one token at a time through the KV cache gives the logits of the whole
// sequence in one pass, with and without virtual tokens and prefixes.
func TestKVCacheMatchesFullSequence(t *testing.T) {
	const T = 7
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2, hfconfig.ArchOlmo2, hfconfig.ArchGranite,
		hfconfig.ArchPhi3, hfconfig.ArchGlm, hfconfig.ArchGlm4, hfconfig.ArchGemma2, hfconfig.ArchGemma3} {
		for _, B := range []int{1, 2} {
			for _, extra := range []string{"plain", "prompt", "prefix", "local-prefix"} {
				t.Run(fmt.Sprintf("%s/B%d/%s", arch, B, extra), func(t *testing.T) {
					m := tinyOrGolden(t, arch, 5)
					V := m.Config().VocabSize
					switch extra {
					case "prompt":
						m.SetPrompt(&testPrompt{e: newParam(m.Backend(), "prompt", 9, 0.5, 3, m.Config().Hidden)})
					case "prefix":
						m.SetPrefix(newTestPrefix(m, 2, 11))
					case "local-prefix":
						p := newTestPrefix(m, 2, 11)
						p.only = map[int]bool{1: true}
						m.SetPrefix(p)
					}
					ids := seqs(B, T, V, 7)
					full := logitsCopy(t, m, nil, flat(ids), B, T, true)
					c, err := m.NewKVCache(B, T+3)
					if err != nil {
						t.Fatal(err)
					}
					const first = 3
					chunk := logitsCopy(t, m, c, column(ids, 0, first), B, first, true)
					for tt := 0; tt < first; tt++ {
						if e := golden.RelErr(rowsOf(chunk, B, first, V, tt), rowsOf(full, B, T, V, tt)); e > 1e-5 {
							t.Errorf("chunk position %d: relative error %.3g", tt, e)
						}
					}
					for tt := first; tt < T; tt++ {
						got := logitsCopy(t, m, c, column(ids, tt, tt+1), B, 1, false)
						if e := golden.RelErr(got, rowsOf(full, B, T, V, tt)); e > 1e-5 {
							t.Errorf("position %d: relative error %.3g", tt, e)
						}
					}
					if c.Len() != T+m.(interface{ core() *Transformer }).core().promptLen() {
						t.Errorf("cache holds %d tokens", c.Len())
					}
				})
			}
		}
	}
}

// TestKVCacheErrors checks that misuse is reported, not panicked on.
// tinyOrGolden returns a tiny random model of arch, or the golden set's
// model for a family hfconfig has no constructor for (OLMo-2, Granite,
// Phi-3, GLM, GLM-4, Gemma 2 and 3: their sequences of 7 exceed the
// window of 3). Phi-3's comes with original_max_position_embeddings
// 2, so that every pass of these tests (at least 3 positions long) uses
// longrope's long factors: a cached continuation then computes what the
// whole sequence does (transformers too switches factors by each pass's
// last position).
func tinyOrGolden(t *testing.T, arch string, seed uint64) Model {
	t.Helper()
	set := map[string]string{hfconfig.ArchOlmo2: "olmo2", hfconfig.ArchGranite: "granite",
		hfconfig.ArchPhi3: "phi3", hfconfig.ArchGlm: "glm", hfconfig.ArchGlm4: "glm4",
		hfconfig.ArchGemma2: "gemma2", hfconfig.ArchGemma3: "gemma3"}[arch]
	if set == "" {
		return newTiny(t, arch, seed)
	}
	dir := filepath.Join(goldenRoot, set)
	if arch == hfconfig.ArchPhi3 {
		dir = withLongRopeFrom(t, dir, 2)
	}
	m, err := Load(dir, cpu.New())
	require.NoError(t, err)
	return m
}

// withLongRopeFrom copies the Phi-3 checkpoint in dir to a temporary
// folder with original_max_position_embeddings set to orig.
func withLongRopeFrom(t *testing.T, dir string, orig int) string {
	t.Helper()
	cfg, err := hfconfig.Load(dir)
	require.NoError(t, err)
	rs := *cfg.RopeScaling
	rs.OriginalMaxPos, rs.Factor = orig, float64(cfg.MaxPos)/float64(orig)
	cfg.RopeScaling = &rs
	out := t.TempDir()
	require.NoError(t, cfg.Save(out))
	data, err := os.ReadFile(filepath.Join(dir, "model.safetensors"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(out, "model.safetensors"), data, 0o644))
	return out
}

func TestKVCacheErrors(t *testing.T) {
	m := newTiny(t, hfconfig.ArchGPT2, 1)
	if _, err := m.NewKVCache(0, 4); err == nil {
		t.Error("NewKVCache(0, 4) succeeded")
	}
	if _, err := m.NewKVCache(1, 1000); err == nil {
		t.Error("a GPT-2 cache past n_positions was accepted")
	}
	c, err := m.NewKVCache(1, 2)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.Logits(c, []int32{1, 2, 3}, 1, 3, false); err == nil {
		t.Error("overfilling the cache succeeded")
	}
	if _, err := m.Logits(c, []int32{1, 2}, 2, 1, false); err == nil {
		t.Error("a batch of 2 on a cache of 1 succeeded")
	}
	if _, err := m.Logits(nil, []int32{1, 99}, 1, 2, false); err == nil {
		t.Error("an out-of-vocabulary id was accepted")
	}
	if _, err := m.Logits(nil, []int32{1}, 1, 2, false); err == nil {
		t.Error("a wrong number of ids was accepted")
	}
}

// TestPrefixIsAPastKVCache checks prefix tuning's semantics independently:
// a prefix holding exactly the keys and values a KV cache stored for P
// tokens must give the same logits as continuing that cache. This is what
// transformers does with PEFT's past_key_values: the prefix is used as
// given (not rotated again) and the real tokens take positions P, P+1, ...
func TestPrefixIsAPastKVCache(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2, hfconfig.ArchOlmo2, hfconfig.ArchGranite,
		hfconfig.ArchPhi3, hfconfig.ArchGlm, hfconfig.ArchGlm4, hfconfig.ArchGemma2, hfconfig.ArchGemma3} {
		t.Run(arch, func(t *testing.T) {
			const P, T = 3, 5
			m := tinyOrGolden(t, arch, 8)
			tr := m.(interface{ core() *Transformer }).core()
			cfg := m.Config()
			kvd := cfg.KVHeads * cfg.HeadDim
			ids := seqs(1, P+T, cfg.VocabSize, 3)[0]
			c, err := m.NewKVCache(1, P+T)
			if err != nil {
				t.Fatal(err)
			}
			if _, err := m.Logits(c, ids[:P], 1, P, false); err != nil {
				t.Fatal(err)
			}
			want := logitsCopy(t, m, c, ids[P:], 1, T, true)

			// Build the prefix table from the cache's first P positions.
			L := cfg.Layers
			table := make([]float32, P*L*2*kvd)
			for l := 0; l < L; l++ {
				k, v := cpu.Float32s(c.k[l]), cpu.Float32s(c.v[l])
				for p := 0; p < P; p++ {
					copy(table[p*L*2*kvd+2*l*kvd:], k[p*kvd:(p+1)*kvd])
					copy(table[p*L*2*kvd+(2*l+1)*kvd:], v[p*kvd:(p+1)*kvd])
				}
			}
			pre := newTestPrefix(m, P, 1)
			tr.be.Upload(pre.e.W, table)
			m.SetPrefix(pre)
			got := logitsCopy(t, m, nil, ids[P:], 1, T, true)
			if e := golden.RelErr(got, want); e > 1e-5 {
				t.Errorf("prefix logits differ from the cached continuation: relative error %.3g", e)
			}
			// And the training path agrees with the inference path.
			bt := makeBatch(tr.be, [][]int32{ids[P:]}, [][]int32{ids[P:]})
			if _, err := m.ForwardBackward(bt, false, 1); err != nil {
				t.Fatal(err)
			}
			if e := golden.RelErr(cpu.Float32s(tr.last.logits), want); e > 1e-5 {
				t.Errorf("training-path logits with prefix: relative error %.3g", e)
			}
		})
	}
}

// TestPromptIsPrependedTokens checks prompt tuning's semantics: virtual
// embeddings equal to some tokens' embeddings give the logits of those
// tokens prepended to the input (positions included, for GPT-2), and the
// loss over the real tokens.
func TestPromptIsPrependedTokens(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2, hfconfig.ArchOlmo2, hfconfig.ArchGranite,
		hfconfig.ArchPhi3, hfconfig.ArchGlm, hfconfig.ArchGlm4, hfconfig.ArchGemma2, hfconfig.ArchGemma3} {
		t.Run(arch, func(t *testing.T) {
			const Pv, T = 3, 5
			m := tinyOrGolden(t, arch, 4)
			tr := m.(interface{ core() *Transformer }).core()
			cfg := m.Config()
			D, V := cfg.Hidden, cfg.VocabSize
			ids := seqs(2, Pv+T, V, 5)
			// One prompt is shared by the batch: both sequences start with
			// the same Pv tokens.
			copy(ids[1][:Pv], ids[0][:Pv])
			labels := make([][]int32, 2)
			for b := range ids {
				for i, id := range ids[b] {
					if i <= Pv { // virtual tokens, and the first real token's label (see Prompt)
						id = -100
					}
					labels[b] = append(labels[b], id)
				}
			}
			want := logitsCopy(t, m, nil, flat(ids), 2, Pv+T, true)
			wantLoss := lossAt(t, m, makeBatch(tr.be, ids, labels))

			emb := cpu.Float32s(tr.embed.Weight.W)
			table := make([]float32, Pv*D)
			_, tokMul := tr.embedMuls() // Gemma 3 scales token embeddings, not virtual ones
			for i, id := range ids[0][:Pv] {
				for j, v := range emb[int(id)*D : (int(id)+1)*D] {
					table[i*D+j] = v * tokMul
				}
			}
			pr := &testPrompt{e: newParam(tr.be, "prompt", 1, 1, Pv, D)}
			tr.be.Upload(pr.e.W, table)
			m.SetPrompt(pr)
			real := [][]int32{ids[0][Pv:], ids[1][Pv:]}
			got := logitsCopy(t, m, nil, flat(real), 2, T, true)
			var wantReal []float32
			for b := 0; b < 2; b++ {
				wantReal = append(wantReal, want[(b*(Pv+T)+Pv)*V:(b+1)*(Pv+T)*V]...)
			}
			if e := golden.RelErr(got, wantReal); e > 1e-5 {
				t.Errorf("logits: relative error %.3g", e)
			}
			realLabels := [][]int32{labels[0][Pv:], labels[1][Pv:]}
			gotLoss := lossAt(t, m, makeBatch(tr.be, real, realLabels))
			if e := golden.RelErr([]float32{float32(gotLoss)}, []float32{float32(wantLoss)}); e > 1e-5 {
				t.Errorf("loss %v, want %v", gotLoss, wantLoss)
			}
		})
	}
}

// promptLen returns the number of virtual tokens (0 without a prompt).
func (m *Transformer) promptLen() int {
	if m.prompt == nil {
		return 0
	}
	return m.prompt.NumTokens()
}
