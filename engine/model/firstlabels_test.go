package model

import (
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/internal/golden"
)

// withFirstLabels uploads first labels into a batch and adds the counted
// ones to Counted.
func withFirstLabels(be engine.Backend, bt *engine.Batch, first []int32) *engine.Batch {
	bt.FirstLabels = be.Alloc(engine.Int32, len(first))
	be.UploadInt32(bt.FirstLabels, first)
	for _, y := range first {
		if y >= 0 {
			bt.Counted++
		}
	}
	return bt
}

// TestFirstLabelScoredAfterPrompt checks PEFT's prompt-tuning loss: with
// virtual embeddings equal to some tokens' embeddings, scoring FirstLabels
// against the last virtual token gives the loss of the plain model on the
// longer sequence whose first real token's label is not masked; and the
// gradient of the virtual tokens, with that term, matches finite
// differences.
func TestFirstLabelScoredAfterPrompt(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		t.Run(arch, func(t *testing.T) {
			const Pv, T = 3, 5
			m := newTiny(t, arch, 6)
			tr := m.(interface{ core() *Transformer }).core()
			D, V := m.Config().Hidden, m.Config().VocabSize
			ids := seqs(2, Pv+T, V, 8)
			copy(ids[1][:Pv], ids[0][:Pv])
			labels := make([][]int32, 2)
			for b := range ids {
				for i, id := range ids[b] {
					if i < Pv || (b == 1 && i == Pv+2) {
						id = -100
					}
					labels[b] = append(labels[b], id)
				}
			}
			if m.(engine.FirstLabelScorer).ScoresFirstLabels() {
				t.Fatal("ScoresFirstLabels is true without a prompt")
			}
			wantLoss := lossAt(t, m, makeBatch(tr.be, ids, labels))

			emb := cpu.Float32s(tr.embed.Weight.W)
			table := make([]float32, Pv*D)
			for i, id := range ids[0][:Pv] {
				copy(table[i*D:], emb[int(id)*D:(int(id)+1)*D])
			}
			pr := &testPrompt{e: newParam(tr.be, "prompt", 1, 1, Pv, D)}
			tr.be.Upload(pr.e.W, table)
			if err := m.SetPrompt(pr); err != nil {
				t.Fatal(err)
			}
			if !m.(engine.FirstLabelScorer).ScoresFirstLabels() {
				t.Fatal("ScoresFirstLabels is false with a prompt")
			}
			real := [][]int32{ids[0][Pv:], ids[1][Pv:]}
			realLabels := [][]int32{labels[0][Pv:], labels[1][Pv:]}
			first := []int32{realLabels[0][0], realLabels[1][0]}
			bt := withFirstLabels(tr.be, makeBatch(tr.be, real, realLabels), first)
			gotLoss := lossAt(t, m, bt)
			if e := golden.RelErr([]float32{float32(gotLoss)}, []float32{float32(wantLoss)}); e > 1e-5 {
				t.Errorf("loss with first labels %v, the plain model on the whole sequence %v", gotLoss, wantLoss)
			}
			without := lossAt(t, m, makeBatch(tr.be, real, realLabels))
			if e := golden.RelErr([]float32{float32(without)}, []float32{float32(wantLoss)}); e < 1e-3 {
				t.Errorf("loss without first labels %v equals the loss with them: the test cannot tell them apart", without)
			}

			// Freeze the base so only the prompt trains; its gradient must
			// include the first-label term. (A random prompt: the copied
			// embeddings sit where the loss curves too much for float32
			// finite differences.)
			for _, p := range m.BaseParams() {
				SetTrainable(p, false)
			}
			pr = &testPrompt{e: newParam(tr.be, "prompt", 2, 1, Pv, D)}
			if err := m.SetPrompt(pr); err != nil {
				t.Fatal(err)
			}
			zeroGrads(m)
			if _, err := m.ForwardBackward(bt, true, 1); err != nil {
				t.Fatal(err)
			}
			fdCheck(t, m, bt, pr.e, gradOf(pr.e))
		})
	}
}

// TestFirstLabelsChecked rejects first labels of the wrong size and
// ignores them without a prompt.
func TestFirstLabelsChecked(t *testing.T) {
	m := newTiny(t, hfconfig.ArchLlama, 2)
	be := m.Backend()
	bt := randomBatch(be, 2, 4, m.Config().VocabSize, 3)
	plain := lossAt(t, m, bt)
	withFirstLabels(be, bt, []int32{5, 6})
	bt.Counted -= 2 // the model has no prompt: nothing more is scored
	if got := lossAt(t, m, bt); got != plain {
		t.Errorf("first labels changed the loss of a model without a prompt: %v, want %v", got, plain)
	}
	bt.FirstLabels = be.Alloc(engine.Int32, 3)
	if _, err := m.ForwardBackward(bt, false, 1); err == nil {
		t.Error("3 first labels for 2 sequences accepted")
	}
}
