package engine_test

import (
	"math"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSplitMix64KnownAnswers checks the mixer against the first outputs of
// the reference SplitMix64 generator seeded with 0 (state advanced by the
// golden gamma before each mix), as published with the algorithm.
func TestSplitMix64KnownAnswers(t *testing.T) {
	const gamma = 0x9E3779B97F4A7C15
	want := []uint64{0xE220A8397B1DCDAF, 0x6E789E6AA1B965F4, 0x06C45D188009454F}
	for i, w := range want {
		assert.Equal(t, w, engine.SplitMix64(uint64(i)*gamma), "output %d", i)
	}
}

// TestDropoutKeepRate checks that the kept share of a mask matches 1 − p
// within five standard deviations, and that the mask depends on the seed.
func TestDropoutKeepRate(t *testing.T) {
	const n = 200000
	for _, p := range []float32{0, 0.1, 0.5, 0.9} {
		thr := engine.DropoutThreshold(p)
		kept, same := 0, 0
		for i := uint64(0); i < n; i++ {
			k := engine.DropoutKeep(42, i, thr)
			if k {
				kept++
			}
			if k == engine.DropoutKeep(43, i, thr) {
				same++
			}
		}
		q := 1 - float64(p)
		sd := math.Sqrt(n * q * (1 - q))
		assert.InDelta(t, q*n, float64(kept), 5*sd+1, "p=%g", p)
		if p == 0.5 {
			require.Less(t, same, n*6/10, "masks of seeds 42 and 43 agree too often")
		}
	}
}

// TestAttentionOptionsVisible checks the causal and sliding-window rule:
// with window 3, query index 5 sees keys 3, 4, 5.
func TestAttentionOptionsVisible(t *testing.T) {
	o := engine.AttentionOptions{Window: 3}
	var seen []int
	for j := 0; j < 8; j++ {
		if o.Visible(5, j) {
			seen = append(seen, j)
		}
	}
	assert.Equal(t, []int{3, 4, 5}, seen)
	assert.True(t, engine.AttentionOptions{}.Visible(5, 0))
	assert.InDelta(t, 0.125, engine.AttentionOptions{}.ScaleFor(64), 1e-7)
}
