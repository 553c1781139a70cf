package continual

import (
	"math"
	"math/rand/v2"

	"github.com/gotune/gotune/engine/fielderr"
)

// Reservoir keeps a uniform random sample of at most Cap items of a
// stream of unknown length (Vitter's algorithm R): after n offers every
// item offered is held with probability min(1, Cap/n).
type Reservoir[T any] struct {
	capacity int
	seen     int
	items    []T
	rng      *rand.Rand
}

// NewReservoir returns an empty reservoir of the given capacity whose
// choices are drawn from a generator seeded with seed.
func NewReservoir[T any](capacity int, seed uint64) *Reservoir[T] {
	return &Reservoir[T]{capacity: capacity, rng: rand.New(rand.NewPCG(seed, 0x7265706c6179))} // "replay"
}

// Offer shows the reservoir the next item of the stream.
func (r *Reservoir[T]) Offer(x T) {
	r.seen++
	if len(r.items) < r.capacity {
		r.items = append(r.items, x)
		return
	}
	if j := r.rng.IntN(r.seen); j < r.capacity {
		r.items[j] = x
	}
}

// Items returns the items held (not a copy).
func (r *Reservoir[T]) Items() []T { return r.items }

// Seen returns the number of items offered so far.
func (r *Reservoir[T]) Seen() int { return r.seen }

// Draw returns an item chosen uniformly from those held, with
// replacement. The reservoir must not be empty.
func (r *Reservoir[T]) Draw() T { return r.items[r.rng.IntN(len(r.items))] }

// ReplayRows returns how many of a micro-batch's batchSize rows come
// from the replay buffer: round(ratio·batchSize), none while the buffer
// is empty, and always at least one row of the current task.
func ReplayRows(batchSize int, ratio float64, buffered int) int {
	if buffered == 0 {
		return 0
	}
	return min(int(math.Round(ratio*float64(batchSize))), batchSize-1)
}

// checkReplay validates the replay settings (Config.ReplaySize and
// ReplayRatio).
func checkReplay(size int, ratio float64) error {
	switch {
	case size < 1:
		return fielderr.Errorf("ReplaySize", "must be at least 1, got %d", size)
	case !(ratio > 0 && ratio < 1):
		return fielderr.Errorf("ReplayRatio", "must be in (0, 1), got %v", ratio)
	}
	return nil
}
