package model

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
)

// TestPackedBatchChecks checks that a packed batch's segments and
// positions are validated before any work (methods/internal/methodtest's
// TestPacking checks what packed batches compute).
func TestPackedBatchChecks(t *testing.T) {
	m := newTiny(t, hfconfig.ArchLlama, 1)
	be := m.Backend()
	ids := seqs(2, 4, m.Config().VocabSize, 3)
	ints := func(n int) *engine.Tensor { return be.Alloc(engine.Int32, n) }
	tests := []struct {
		name                string
		segments, positions *engine.Tensor
		want                string
	}{
		{"segments alone", ints(8), nil, "needs both segments and positions"},
		{"positions alone", nil, ints(8), "needs both segments and positions"},
		{"short segments", ints(7), ints(8), "want Int32 with 8 elements each"},
		{"float positions", ints(8), be.Alloc(engine.Float32, 8), "want Int32 with 8 elements each"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			bt := makeBatch(be, ids, ids)
			bt.Segments, bt.Positions = tc.segments, tc.positions
			_, err := m.ForwardBackward(bt, false, 1)
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.want)
		})
	}
}
