package fieldpaths

import (
	"io"
	"testing"

	"github.com/stretchr/testify/assert"

	"github.com/gotune/gotune/engine/train"
)

type inner struct{ A, B int }

type embedded struct{ E int }

type outer struct {
	embedded
	In     inner
	Ptr    *train.Parallel
	W      io.Writer
	hidden int
}

func TestOfWalksOwnStructs(t *testing.T) {
	_ = outer{}.hidden
	assert.Equal(t, []string{"E", "In.A", "In.B", "Ptr.Comm", "Ptr.Zero", "Ptr.BucketBytes", "W"}, Of(outer{}))
	assert.Equal(t, Of(outer{}), Of(&outer{}))
	assert.True(t, Has(outer{}, "In"))
	assert.True(t, Has(outer{}, "Ptr.Zero"))
	assert.False(t, Has(outer{}, "In.C"))
	assert.False(t, Has(outer{}, "I"))
}
