package continual

import (
	"github.com/gotune/gotune/engine/data"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestReservoirKeepsTheFirstUntilFull(t *testing.T) {
	r := NewReservoir[int](3, 1)
	for i := range 3 {
		r.Offer(i)
	}
	assert.Equal(t, []int{0, 1, 2}, r.Items())
	for i := 3; i < 100; i++ {
		r.Offer(i)
	}
	assert.Len(t, r.Items(), 3)
	assert.Equal(t, 100, r.Seen())
}

// TestReservoirIsUniform checks algorithm R's promise: after n offers
// each item is held with probability k/n, whatever its position. With
// 4000 independent reservoirs the frequency's standard deviation is
// sqrt(p(1−p)/4000) ≈ 0.0068 for p = 1/4; the bound is 5 of them.
func TestReservoirIsUniform(t *testing.T) {
	const k, n, trials = 5, 20, 4000
	var held [n]int
	for s := range trials {
		r := NewReservoir[int](k, uint64(s))
		for i := range n {
			r.Offer(i)
		}
		for _, x := range r.Items() {
			held[x]++
		}
	}
	for i, h := range held {
		assert.InDelta(t, float64(k)/n, float64(h)/trials, 0.035, "item %d", i)
	}
}

func TestReservoirDrawIsUniform(t *testing.T) {
	r := NewReservoir[int](4, 7)
	for i := range 4 {
		r.Offer(i)
	}
	var n [4]int
	for range 8000 {
		n[r.Draw()]++
	}
	for i, c := range n {
		assert.InDelta(t, 0.25, float64(c)/8000, 0.025, "item %d", i) // σ ≈ 0.0048
	}
}

func TestReplayRows(t *testing.T) {
	tests := []struct {
		batch    int
		ratio    float64
		buffered int
		want     int
	}{
		{16, 0.25, 100, 4},
		{16, 0.25, 0, 0}, // nothing to replay yet
		{10, 0.33, 5, 3},
		{2, 0.9, 5, 1}, // at least one current row
		{1, 0.5, 5, 0},
	}
	for _, tc := range tests {
		assert.Equal(t, tc.want, ReplayRows(tc.batch, tc.ratio, tc.buffered), "%+v", tc)
	}
}

// TestReplayStream checks the batches a replay stage trains on: each has
// BatchSize − ReplayRows rows of the current task, then buffered ones.
func TestReplayStream(t *testing.T) {
	cur := examples(10, 100)
	r := &runner{cfg: Config{Steps: 3, BatchSize: 4, ReplayRatio: 0.5, Seed: 3}, tasks: []Task{{Train: examples(10, 0)}, {Train: cur}}}
	r.reservoir = NewReservoir[data.Example](8, 1)
	for _, e := range examples(10, 0) {
		r.reservoir.Offer(e)
	}
	stream, seen := r.stream(1)
	require.Len(t, stream, 12)
	for b := range 3 {
		for i, e := range stream[4*b : 4*b+4] {
			if i < 2 {
				assert.GreaterOrEqual(t, int(e.InputIDs[0]), 100, "batch %d row %d: want the current task", b, i)
			} else {
				assert.Less(t, int(e.InputIDs[0]), 100, "batch %d row %d: want a replayed example", b, i)
			}
		}
	}
	assert.Len(t, seen, 6, "6 current rows, distinct within the first epoch of 10")
}
