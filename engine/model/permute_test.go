package model

import (
	"testing"

	"github.com/stretchr/testify/assert"
)

// TestHeadRowPermutationsAreInverse: converting q/k rows to the
// interleaved RoPE layout and back gives the original rows, for several
// heads and a row width above one, and the forward permutation moves rows.
func TestHeadRowPermutationsAreInverse(t *testing.T) {
	const headDim, heads, cols = 8, 3, 2
	data := make([]float32, headDim*heads*cols)
	for i := range data {
		data[i] = float32(i)
	}
	inter := HalfToInterleaved(data, headDim, cols)
	assert.NotEqual(t, data, inter)
	assert.Equal(t, data, interleavedToHalf(inter, headDim, cols))
}
