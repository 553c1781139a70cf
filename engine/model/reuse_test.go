package model

import (
	"testing"

	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/internal/golden"
)

// TestStepsReuseBuffersAndAccumulate checks the CausalLM contract across
// calls: a second backward pass accumulates into G (micro-batches add up),
// gradScale scales, activation buffers are allocated once per shape, and a
// forward-only evaluation of the same shape reuses the training buffers.
func TestStepsReuseBuffersAndAccumulate(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchQwen2, hfconfig.ArchGPT2} {
		t.Run(arch, func(t *testing.T) {
			m := newTiny(t, arch, 12)
			tr := m.(interface{ core() *Transformer }).core()
			bt := randomBatch(m.Backend(), 2, 6, m.Config().VocabSize, 3)
			l1, err := m.ForwardBackward(bt, true, 0.25)
			if err != nil {
				t.Fatal(err)
			}
			first := tr.trainActs
			once := map[string][]float32{}
			for _, p := range m.Params() {
				once[p.Name] = gradOf(p)
			}
			l2, err := m.ForwardBackward(bt, true, 0.5)
			if err != nil {
				t.Fatal(err)
			}
			if l1 != l2 {
				t.Errorf("loss changed between identical passes: %v, %v", l1, l2)
			}
			if tr.trainActs != first {
				t.Error("a second pass of the same shape reallocated its buffers")
			}
			for _, p := range m.Params() {
				want := once[p.Name]
				scaled := make([]float32, len(want))
				for i, v := range want {
					scaled[i] = 3 * v // 0.25 + 0.5 = 3 × 0.25
				}
				if e := golden.RelErr(gradOf(p), scaled); e > 1e-6 {
					t.Errorf("%s: accumulated gradient off by %.3g", p.Name, e)
				}
			}
			l3, err := m.ForwardBackward(bt, false, 1)
			if err != nil {
				t.Fatal(err)
			}
			if l3 != l1 || tr.last != first {
				t.Errorf("evaluation: loss %v (want %v), reused training buffers %v", l3, l1, tr.last == first)
			}
			zeroGrads(m)
		})
	}
}
