package data

import (
	"cmp"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestPack(t *testing.T) {
	tests := []struct {
		name     string
		lengths  []int
		capacity int
		want     [][]int
	}{
		// Decreasing: 5 (#1) opens bin A, 4 (#3) B, 3 (#0) C; 2 (#2)
		// fits B, 1 (#4) fits A. Bins list items by index and are
		// ordered by their first item.
		{"first fit decreasing", []int{3, 5, 2, 4, 1}, 6, [][]int{{0}, {1, 4}, {2, 3}}},
		{"all fit in one", []int{1, 2, 3}, 6, [][]int{{0, 1, 2}}},
		{"each fills a bin", []int{4, 4, 4}, 4, [][]int{{0}, {1}, {2}}},
		{"ties in index order", []int{2, 2, 2}, 5, [][]int{{0, 1}, {2}}},
		{"empty", nil, 4, nil},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Pack(tc.lengths, tc.capacity))
		})
	}
}

// naiveFFD is first-fit decreasing by a linear scan of the open bins,
// the reference for Pack's segment tree.
func naiveFFD(lengths []int, capacity int) [][]int {
	order := make([]int, len(lengths))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(lengths[b], lengths[a]) })
	var bins [][]int
	var room []int
	for _, i := range order {
		b := slices.IndexFunc(room, func(r int) bool { return r >= lengths[i] })
		if b < 0 {
			b = len(bins)
			bins, room = append(bins, nil), append(room, capacity)
		}
		bins[b] = append(bins[b], i)
		room[b] -= lengths[i]
	}
	for _, bin := range bins {
		slices.Sort(bin)
	}
	slices.SortFunc(bins, func(a, b []int) int { return cmp.Compare(a[0], b[0]) })
	return bins
}

func TestPackMatchesLinearFirstFit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := 0; trial < 200; trial++ {
		capacity := 1 + rng.IntN(64)
		lengths := make([]int, rng.IntN(300))
		total := 0
		for i := range lengths {
			lengths[i] = 1 + rng.IntN(capacity)
			total += lengths[i]
		}
		got := Pack(lengths, capacity)
		require.Equal(t, naiveFFD(lengths, capacity), got, "capacity %d lengths %v", capacity, lengths)
		seen := make([]bool, len(lengths))
		for _, bin := range got {
			sum := 0
			for _, i := range bin {
				require.False(t, seen[i], "item %d packed twice", i)
				seen[i] = true
				sum += lengths[i]
			}
			require.LessOrEqual(t, sum, capacity)
		}
		require.NotContains(t, seen, false)
		// Every bin but one is more than half full in first fit, so
		// FFD never needs more than twice the lower bound.
		require.LessOrEqual(t, len(got), max(1, 2*((total+capacity-1)/capacity)))
	}
}

func TestPackedBatchLayout(t *testing.T) {
	// Lengths 3, 5, 2, 4 at seq-len 8: FFD puts 5 (#1) and 3 (#0) in one
	// sequence, 4 (#3) and 2 (#2) in another; the second example's second
	// label is ignored.
	ds := mkDataset(3, 5, 2, 4)
	ds.Examples[1].Labels = []int32{100, -100, 102, 103, 104}
	l, err := NewLoader(ds, LoaderConfig{BatchSize: 2, SeqLen: 8, PadID: 9, Packing: true})
	require.NoError(t, err)
	require.Equal(t, 2, l.Sequences())
	require.Equal(t, 1, l.BatchesPerEpoch())
	b := l.Next()
	require.Equal(t, 2, b.B)
	require.Equal(t, 8, b.T)
	assert.Equal(t, [][]int{{0, 1}, {2, 3}}, b.Packs)
	assert.Nil(t, b.Rows)
	assert.Equal(t, []int32{
		0, 1, 2, 100, 101, 102, 103, 104,
		200, 201, 300, 301, 302, 303, 9, 9,
	}, b.InputIDs)
	// Each example's last token predicts nothing: no target crosses
	// into the next example.
	assert.Equal(t, []int32{
		1, 2, -100, -100, 102, 103, 104, -100,
		201, -100, 301, 302, 303, -100, -100, -100,
	}, b.Targets)
	assert.Equal(t, []int32{0, 0, 0, 1, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 2, 2}, b.Segments)
	assert.Equal(t, []int32{0, 1, 2, 0, 1, 2, 3, 4, 0, 1, 0, 1, 2, 3, 0, 1}, b.Positions)
	assert.Equal(t, []int32{-100, -100}, b.FirstLabels)
	assert.Equal(t, 0, b.CountedFirst)
	assert.Equal(t, 9, b.Counted)
}

func TestPackedPadding(t *testing.T) {
	l, err := NewLoader(mkDataset(3, 2), LoaderConfig{BatchSize: 1, SeqLen: 8, PadID: 9, Packing: true, PadToSeqLen: true})
	require.NoError(t, err)
	b := l.Next()
	assert.Equal(t, []int32{0, 1, 2, 100, 101, 9, 9, 9}, b.InputIDs)
	// Padding is one more segment, with its own positions.
	assert.Equal(t, []int32{0, 0, 0, 1, 1, 2, 2, 2}, b.Segments)
	assert.Equal(t, []int32{0, 1, 2, 0, 1, 0, 1, 2}, b.Positions)
	assert.Equal(t, []int32{1, 2, -100, 101, -100, -100, -100, -100}, b.Targets)
}

// TestPackingKeepsEveryTarget checks on random data that packing moves
// tokens, not targets: each example appears once per epoch, contiguous,
// with positions 0.. and the targets it has unpacked.
func TestPackingKeepsEveryTarget(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	lens := make([]int, 57)
	for i := range lens {
		lens[i] = 1 + rng.IntN(12)
	}
	ds := mkDataset(lens...)
	for i := range ds.Examples {
		e := &ds.Examples[i]
		e.Labels = slices.Clone(e.InputIDs)
		for t := range e.Labels {
			if rng.IntN(3) == 0 {
				e.Labels[t] = IgnoreIndex
			}
		}
	}
	cfg := LoaderConfig{BatchSize: 3, SeqLen: 10, Shuffle: true, Seed: 5}
	plain, err := NewLoader(ds, cfg)
	require.NoError(t, err)
	cfg.Packing = true
	packed, err := NewLoader(ds, cfg)
	require.NoError(t, err)

	// Targets of each example as the unpacked loader lays them out.
	want := map[int][]int32{}
	counted := 0
	for i := 0; i < plain.BatchesPerEpoch(); i++ {
		b := plain.Batch(0, i)
		counted += b.Counted
		for r, ex := range b.Rows {
			n := min(len(ds.Examples[ex].InputIDs), cfg.SeqLen)
			want[ex] = b.Targets[r*b.T : r*b.T+n]
		}
	}
	got := map[int][]int32{}
	packedCounted := 0
	for i := 0; i < packed.BatchesPerEpoch(); i++ {
		b := packed.Batch(1, i)
		packedCounted += b.Counted
		for r, exs := range b.Packs {
			at := r * b.T
			for j, ex := range exs {
				n := min(len(ds.Examples[ex].InputIDs), cfg.SeqLen)
				for k := 0; k < n; k++ {
					require.Equal(t, int32(j), b.Segments[at+k])
					require.Equal(t, int32(k), b.Positions[at+k])
					require.Equal(t, ds.Examples[ex].InputIDs[k], b.InputIDs[at+k])
				}
				require.NotContains(t, got, ex, "example %d packed twice", ex)
				got[ex] = b.Targets[at : at+n]
				at += n
			}
		}
	}
	assert.Equal(t, want, got)
	assert.Equal(t, counted, packedCounted)
	assert.Less(t, packed.BatchesPerEpoch(), plain.BatchesPerEpoch())
	st := packed.Stats()
	assert.Equal(t, packed.Sequences(), st.Packed)
	assert.Less(t, packed.EpochSlots(0), plain.EpochSlots(0))
	assert.LessOrEqual(t, st.Tokens, packed.EpochSlots(0))
}

func TestPackingMessage(t *testing.T) {
	l, err := NewLoader(mkDataset(3, 5, 2, 4, 1), LoaderConfig{BatchSize: 2, SeqLen: 8, Packing: true})
	require.NoError(t, err)
	// The one-token example is skipped: 14 tokens in 2 sequences of 8.
	assert.Equal(t, "packed 4 examples into 2 sequences of at most 8 tokens (87.5% full)", l.Stats().PackingMessage())
}
