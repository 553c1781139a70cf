package engine_test

import (
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/stretchr/testify/assert"
)

// TestDropoutMaskSeed checks that the mask seed is the documented
// SplitMix64 chain and that every component of a pass and site moves it.
func TestDropoutMaskSeed(t *testing.T) {
	p := engine.TrainingPass{Step: 3, Micro: 1, Rank: 2}
	h := uint64(7)
	for _, v := range []uint64{3, 1, 2, 5, uint64(engine.DropoutMLPOutput)} {
		h = engine.SplitMix64(h ^ v)
	}
	base := engine.DropoutMaskSeed(7, p, 5, engine.DropoutMLPOutput)
	assert.Equal(t, h, base)
	others := []uint64{
		engine.DropoutMaskSeed(8, p, 5, engine.DropoutMLPOutput),
		engine.DropoutMaskSeed(7, engine.TrainingPass{Step: 4, Micro: 1, Rank: 2}, 5, engine.DropoutMLPOutput),
		engine.DropoutMaskSeed(7, engine.TrainingPass{Step: 3, Micro: 0, Rank: 2}, 5, engine.DropoutMLPOutput),
		engine.DropoutMaskSeed(7, engine.TrainingPass{Step: 3, Micro: 1, Rank: 0}, 5, engine.DropoutMLPOutput),
		engine.DropoutMaskSeed(7, p, 4, engine.DropoutMLPOutput),
		engine.DropoutMaskSeed(7, p, 5, engine.DropoutAttnOutput),
	}
	for i, o := range others {
		assert.NotEqual(t, base, o, "variation %d", i)
	}
}
