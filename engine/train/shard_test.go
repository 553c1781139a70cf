package train

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/data"
)

// TestShardPackedBatch checks that each rank's rows of a packed batch
// keep their segments, positions and packed examples.
func TestShardPackedBatch(t *testing.T) {
	ds := &data.Dataset{Name: "mem"}
	for i, n := range []int{3, 5, 2, 4, 6, 1, 7} {
		e := data.Example{}
		for k := 0; k < n; k++ {
			e.InputIDs = append(e.InputIDs, int32(10*i+k))
		}
		e.Labels = e.InputIDs
		ds.Examples = append(ds.Examples, e)
	}
	l, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: 8, SeqLen: 8, Packing: true})
	require.NoError(t, err)
	hb := l.Batch(0, 0)
	require.Equal(t, 4, hb.B)
	counted := 0
	for rank := 0; rank < 2; rank++ {
		part := shardBatch(hb, rank, 2)
		lo, hi := rank*2*hb.T, (rank+1)*2*hb.T
		assert.Equal(t, hb.InputIDs[lo:hi], part.InputIDs)
		assert.Equal(t, hb.Segments[lo:hi], part.Segments)
		assert.Equal(t, hb.Positions[lo:hi], part.Positions)
		assert.Equal(t, hb.Packs[2*rank:2*rank+2], part.Packs)
		counted += part.Counted
	}
	assert.Equal(t, hb.Counted, counted)
}
