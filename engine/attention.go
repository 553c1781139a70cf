package engine

import (
	"fmt"
	"math"
)

// AttentionOptions are the variants of Backend.Attention and
// AttentionBackward that model families ask for. The zero value is plain
// causal attention with scores scaled by 1/sqrt(D); both calls of one
// layer must get the same options.
//
// Key index j counts over all S keys, and query t sits at key index
// t + (S − T), so keys before the queries (a KV cache, trainable
// prefixes) come first. A key is visible to a query when every option
// allows it; the query's own key is always visible.
type AttentionOptions struct {
	// Scale multiplies q·k; 0 means 1/sqrt(D). Gemma's
	// query_pre_attn_scalar^-0.5 and Granite's attention_multiplier.
	Scale float32
	// SoftCap, when positive, replaces each scaled score s by
	// SoftCap·tanh(s/SoftCap) before the softmax (Gemma 2's
	// attn_logit_softcapping); the statistics in lse are of the capped
	// scores.
	SoftCap float32
	// Window, when positive, is a sliding window: query t sees key j only
	// when (t + S − T) − j < Window, its own key and Window−1 before it
	// (transformers' sliding_window masks: kv_idx > q_idx − window).
	Window int
	// Segments, when set, is an Int32 [B, T] tensor of example ids for
	// packed sequences: query t sees key j >= S − T only when both tokens
	// have the same id. Keys before the queries are seen by every query.
	Segments *Tensor
	// Dropout is the probability of dropping each attention probability in
	// training (attn_pdrop, attention_dropout); 0 disables it. A kept
	// probability counts 1/(1 − Dropout) times, and DropoutKeep(DropoutSeed,
	// AttentionDropoutCounter(...), DropoutThreshold(Dropout)) decides
	// which are kept, identically on every backend.
	Dropout float32
	// DropoutSeed picks the dropout mask; a run derives one per layer and
	// step from its --seed so masks are reproducible.
	DropoutSeed uint64
}

// Check reports what is wrong with the options of a call with batch size
// batch and queries queries per example: a negative soft cap or window,
// a dropout outside [0, 1), or segments that are not an Int32 [batch,
// queries] tensor. Every backend checks the same conditions.
func (o AttentionOptions) Check(batch, queries int) error {
	if o.SoftCap < 0 || o.Window < 0 {
		return fmt.Errorf("soft cap %g and window %d must not be negative", o.SoftCap, o.Window)
	}
	if !(o.Dropout >= 0 && o.Dropout < 1) {
		return fmt.Errorf("dropout %g outside [0, 1)", o.Dropout)
	}
	if s := o.Segments; s != nil && (s.DType() != Int32 || s.Len() != batch*queries) {
		return fmt.Errorf("segments %v must be Int32 [%d, %d]", s, batch, queries)
	}
	return nil
}

// ScaleFor returns the score multiplier for head dimension d.
func (o AttentionOptions) ScaleFor(d int) float32 {
	if o.Scale != 0 {
		return o.Scale
	}
	return float32(1 / math.Sqrt(float64(d)))
}

// Visible reports whether the query at key index qi (t + S − T) sees key
// j by the causal rule and the sliding window; Segments is checked by the
// caller, which holds the ids.
func (o AttentionOptions) Visible(qi, j int) bool {
	return j <= qi && (o.Window <= 0 || qi-j < o.Window)
}

// AttentionDropoutCounter is the counter DropoutKeep hashes for the
// probability of query t (of T) and key j (of S) in batch b and query head
// h (of hq): the row-major index of that probability in a [B, Hq, T, S]
// array.
func AttentionDropoutCounter(b, h, t, j, hq, T, S int) uint64 {
	return uint64(((b*hq+h)*T+t)*S + j)
}

// dropoutBits is the number of random bits DropoutKeep compares with
// DropoutThreshold: few enough that the threshold is an exact integer in
// float32 arithmetic on every backend.
const dropoutBits = 24

// DropoutThreshold converts a drop probability p in [0, 1) into the
// integer threshold DropoutKeep compares with.
func DropoutThreshold(p float32) uint32 {
	return uint32(math.Round(float64(p) * (1 << dropoutBits)))
}

// DropoutKeep reports whether element counter of the dropout mask with the
// given seed is kept: the top dropoutBits bits of a SplitMix64 hash of
// seed and counter, compared with threshold. It is a pure function so the
// CPU backend, the CUDA kernels and the PyTorch goldens draw the same
// mask without sharing a generator's state.
func DropoutKeep(seed, counter uint64, threshold uint32) bool {
	return uint32(SplitMix64(seed^(counter*0x9E3779B97F4A7C15))>>(64-dropoutBits)) >= threshold
}

// SplitMix64 is the finaliser of the SplitMix64 generator (Steele, Lea and
// Flood 2014): a bijective 64-bit mix whose outputs pass BigCrush for
// consecutive inputs.
func SplitMix64(x uint64) uint64 {
	x += 0x9E3779B97F4A7C15
	x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9
	x = (x ^ (x >> 27)) * 0x94D049BB133111EB
	return x ^ (x >> 31)
}
