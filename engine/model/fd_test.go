package model

import (
	"testing"

	"github.com/gotune/gotune/engine/hfconfig"
)

// TestFiniteDifferences checks the backward pass of whole tiny models of
// each architecture against finite differences of the loss, on a few
// entries of every parameter.
func TestFiniteDifferences(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchQwen2, hfconfig.ArchGPT2} {
		t.Run(arch, func(t *testing.T) {
			m := newTiny(t, arch, 3)
			bt := randomBatch(m.Backend(), 2, 6, m.Config().VocabSize, 1)
			if _, err := m.ForwardBackward(bt, true, 1); err != nil {
				t.Fatal(err)
			}
			grads := map[string][]float32{}
			for _, p := range m.Params() {
				grads[p.Name] = gradOf(p)
			}
			for _, p := range m.Params() {
				fdCheck(t, m, bt, p, grads[p.Name])
			}
		})
	}
}
