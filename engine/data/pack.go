package data

import (
	"cmp"
	"slices"
)

// Packing several short examples into one sequence (LoaderConfig.Packing,
// LLaMA-Factory's neat_packing) fills the rows a batch would otherwise pad.
// The loader marks each token with its example (Batch.Segments) and its
// position inside it (Batch.Positions), the model keeps attention inside
// each example and restarts positions at 0, and targets never cross an
// example's end, so every example's loss and gradient are those of the
// example trained alone.

// Pack groups items of the given lengths (each at most capacity) into as
// few bins of capacity tokens as first-fit decreasing finds: items in
// order of decreasing length (ties in index order), each into the first
// bin it fits, a new bin when none. FFD uses at most 11/9·OPT + 6/9 bins
// (Dósa 2007), and because the bins are filled once at load (not per
// epoch) an epoch has a fixed number of batches, which checkpoints and
// --epochs rely on. Each bin lists its items in increasing index order,
// and bins are ordered by their first item, so the layout follows the
// file's order as far as packing allows. The result is deterministic.
func Pack(lengths []int, capacity int) [][]int {
	order := make([]int, len(lengths))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(a, b int) int { return cmp.Compare(lengths[b], lengths[a]) })
	free := newFitTree(len(lengths), capacity)
	var bins [][]int
	for _, i := range order {
		b := free.first(lengths[i])
		if b == len(bins) {
			bins = append(bins, nil)
		}
		bins[b] = append(bins[b], i)
		free.take(b, lengths[i])
	}
	for _, bin := range bins {
		slices.Sort(bin)
	}
	slices.SortFunc(bins, func(a, b []int) int { return cmp.Compare(a[0], b[0]) })
	return bins
}

// fitTree finds the first bin with room for n tokens in O(log bins): a
// segment tree over the room left in each of up to size bins. Bins not
// yet used have the whole capacity, and since first fit opens bins left
// to right, "the first bin with room" is a new bin exactly when no open
// one fits.
type fitTree struct {
	leaves int
	room   []int // room[1] is the root; node i has children 2i, 2i+1
}

func newFitTree(size, capacity int) *fitTree {
	leaves := 1
	for leaves < max(size, 1) {
		leaves *= 2
	}
	t := &fitTree{leaves: leaves, room: make([]int, 2*leaves)}
	for i := range t.room {
		t.room[i] = capacity
	}
	return t
}

// first returns the lowest bin index with at least n tokens of room.
// Callers never ask for more than the capacity, which an unused bin has.
func (t *fitTree) first(n int) int {
	i := 1
	for i < t.leaves {
		i *= 2
		if t.room[i] < n {
			i++
		}
	}
	return i - t.leaves
}

// take uses n tokens of bin b's room.
func (t *fitTree) take(b, n int) {
	i := b + t.leaves
	t.room[i] -= n
	for i /= 2; i >= 1; i /= 2 {
		t.room[i] = max(t.room[2*i], t.room[2*i+1])
	}
}
