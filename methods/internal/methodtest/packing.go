package methodtest

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/internal/golden"
)

// PackingData returns examples of lengths 2..9 with random tokens below
// vocab, every fourth label ignored, so that packed into sequences of
// PackingSeqLen tokens most sequences hold two or three examples.
func PackingData(vocab int, seed uint64) *data.Dataset {
	rng := rand.New(rand.NewPCG(seed, 13))
	ds := &data.Dataset{Name: "packing"}
	for i, n := range []int{5, 3, 7, 2, 6, 4, 9, 3, 5} {
		e := data.Example{Loc: data.Loc{File: "packing", Line: i + 1}}
		for t := 0; t < n; t++ {
			id := int32(rng.IntN(vocab))
			e.InputIDs = append(e.InputIDs, id)
			if (i+t)%4 == 3 {
				id = data.IgnoreIndex
			}
			e.Labels = append(e.Labels, id)
		}
		ds.Examples = append(ds.Examples, e)
	}
	return ds
}

// PackingSeqLen is the sequence length CheckPacking packs PackingData into.
const PackingSeqLen = 12

// CheckPacking checks the property packing rests on, on m with its method
// installed: a batch of PackingData packed into sequences (segments and
// per-example positions) gives every example the loss it has unpacked,
// one example per sequence, and the same gradient of every trainable
// tensor, within tol (relative). It also checks that the test can fail:
// the packed batch without its segments and positions (examples attending
// to each other, positions running on) must move some example's loss by
// more than 100·tol. It
// returns the largest relative difference found.
func CheckPacking(t *testing.T, m model.Model, tol float64) float64 {
	t.Helper()
	ds := PackingData(m.Config().VocabSize, 1)
	plain := onlyBatch(t, ds, false)
	packed := onlyBatch(t, ds, true)
	if packed.B >= plain.B || len(packed.Packs[0]) < 2 {
		t.Fatalf("packing gave %d rows (%v) for %d examples: nothing shares a sequence", packed.B, packed.Packs, plain.B)
	}
	worst := 0.0
	check := func(what string, e float64) {
		worst = max(worst, e)
		if !(e <= tol) {
			t.Errorf("%s: packed differs from unpacked by %.3g (relative) > %.3g", what, e, tol)
		}
	}
	exampleLoss := func(hb data.Batch, i int) float64 {
		return maskedLoss(t, m, hb, func(r, t int) bool {
			seg := int(packed.Segments[r*packed.T+t]) // len(Packs[r]) on padding
			return seg < len(packed.Packs[r]) && packed.Packs[r][seg] == i
		})
	}
	wantLoss := make([]float64, len(ds.Examples))
	for i := range ds.Examples {
		wantLoss[i] = maskedLoss(t, m, plain, func(r, _ int) bool { return plain.Rows[r] == i })
		check(fmt.Sprintf("loss of example %d", i), relErr(exampleLoss(packed, i), wantLoss[i]))
	}
	wantSum, wantGrads := lossAndGrads(t, m, plain)
	gotSum, gotGrads := lossAndGrads(t, m, packed)
	check("loss sum", relErr(gotSum, wantSum))
	if len(wantGrads) == 0 {
		t.Fatal("nothing trains")
	}
	for name, want := range wantGrads {
		check("gradient of "+name, golden.RelErr(gotGrads[name], want))
	}
	crossed := packed
	crossed.Segments, crossed.Positions = nil, nil
	moved := 0.0
	for i := range ds.Examples {
		moved = max(moved, relErr(exampleLoss(crossed, i), wantLoss[i]))
	}
	if moved < 100*tol {
		t.Errorf("without segments and positions the packed examples' losses move by at most %.3g (relative) from unpacked: the check cannot fail", moved)
	}
	return worst
}

// relErr is the relative difference of two losses.
func relErr(got, want float64) float64 {
	return golden.RelErr([]float32{float32(got)}, []float32{float32(want)})
}

// onlyBatch returns ds as one batch, packed into PackingSeqLen-token
// sequences or one example per row.
func onlyBatch(t *testing.T, ds *data.Dataset, packing bool) data.Batch {
	t.Helper()
	l, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: len(ds.Examples), SeqLen: PackingSeqLen, Packing: packing})
	if err != nil {
		t.Fatal(err)
	}
	if l.BatchesPerEpoch() != 1 {
		t.Fatalf("%d batches, want 1", l.BatchesPerEpoch())
	}
	return l.Batch(0, 0)
}

// maskedLoss returns the forward loss of hb with only the targets at
// (row, t) where keep says so counted.
func maskedLoss(t *testing.T, m model.Model, hb data.Batch, keep func(r, t int) bool) float64 {
	t.Helper()
	hb.Targets = slices.Clone(hb.Targets)
	for r := 0; r < hb.B; r++ {
		for i := 0; i < hb.T; i++ {
			if !keep(r, i) {
				hb.Targets[r*hb.T+i] = data.IgnoreIndex
			}
		}
	}
	return ModelLoss(t, m, hb)()
}

// lossAndGrads returns the loss sum of hb and every trainable tensor's
// gradient of it.
func lossAndGrads(t *testing.T, m model.Model, hb data.Batch) (float64, map[string][]float32) {
	t.Helper()
	loss, err := ModelLossGrad(m, hb)
	if err != nil {
		t.Fatal(err)
	}
	grads := map[string][]float32{}
	for _, p := range trainable(m) {
		grads[p.Name] = m.Backend().Download(p.G)
	}
	return loss, grads
}

// Randomize fills every trainable tensor of m whose name contains part
// with N(0, std²) values, so that a method starting at zero (LoRA's B)
// has gradients everywhere.
func Randomize(m model.Model, seed uint64, std float64, part string) {
	be := m.Backend()
	for i, p := range trainable(m) {
		if strings.Contains(p.Name, part) {
			r := Random(be, seed+uint64(i), std, p.W.Shape()...)
			be.Copy(p.W, r)
			be.Free(r)
		}
	}
}
