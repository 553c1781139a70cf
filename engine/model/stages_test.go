package model

import (
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
)

// stageSpy checks the promises of engine.StagedBackward while a backward
// pass runs: at BeforeStage(s) no gradient whose span starts at s or
// later has been written yet (all are still zero), and at AfterStage(s)
// it copies the gradients whose span ends at s, which must equal the
// gradients at the end of the pass.
type stageSpy struct {
	t      *testing.T
	be     engine.Backend
	spans  map[*engine.Param]engine.GradSpan
	events []string
	early  map[*engine.Param][]float32 // gradient copied when its last stage ended
}

func (s *stageSpy) BeforeStage(st int) {
	s.events = append(s.events, fmt.Sprintf("before %d", st))
	for p, sp := range s.spans {
		if sp.First < st {
			continue
		}
		for _, g := range s.be.Download(p.G) {
			if g != 0 {
				s.t.Errorf("%s (stages %d..%d) was written before stage %d began", p.Name, sp.First, sp.Last, st)
				break
			}
		}
	}
}

func (s *stageSpy) AfterStage(st int) {
	s.events = append(s.events, fmt.Sprintf("after %d", st))
	for p, sp := range s.spans {
		if sp.Last == st {
			s.early[p] = s.be.Download(p.G)
		}
	}
}

// TestGradStages runs backward passes with a stage observer: every stage
// is announced once, in order; every trainable parameter has a span; no
// gradient is written before its first stage; and each is final when its
// last stage ends. Cases cover a tied LM head (GPT-2), gradient
// checkpointing, a pass that stops above the lower layers, a prefix
// and hook whose parameters live outside the layers' modules, and the
// fused projections and output norms of Phi-3 and GLM-4 (their golden
// checkpoints).
func TestGradStages(t *testing.T) {
	cases := []struct {
		name    string
		arch    string
		install func(m Model)
	}{
		{"llama full", hfconfig.ArchLlama, func(Model) {}},
		{"gpt2 tied, checkpointing", hfconfig.ArchGPT2, func(m Model) { m.(*GPT2).SetGradCheckpoint(true) }},
		{"lora on the top layer only", hfconfig.ArchLlama, func(m Model) {
			freeze(m, func(string) bool { return true })
			v, _ := m.Linear("model.layers.2.self_attn.v_proj")
			require.NoError(t, m.ReplaceLinear("model.layers.2.self_attn.v_proj", newTestLoRA(m.Backend(), v, 2, 5)))
		}},
		{"prefix and hook", hfconfig.ArchLlama, func(m Model) {
			freeze(m, func(string) bool { return true })
			require.NoError(t, m.SetPrefix(newTestPrefix(m, 2, 3)))
			require.NoError(t, m.SetHook(1, SiteMLP, newTestHook(m.Backend(), m.Config().Hidden, 4)))
		}},
		{"phi3 fused, checkpointing", "phi3", func(m Model) { m.(*Llama).SetGradCheckpoint(true) }},
		{"glm4 sandwich norms", "glm4", func(Model) {}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := stagesModel(t, c.arch)
			c.install(m)
			sb := m.(engine.StagedBackward)
			n, spans := sb.GradSpans()
			assert.Equal(t, m.Config().Layers+2, n, "head, one stage per layer, input")
			trainable := 0
			for _, p := range m.Params() {
				if p.Trainable {
					trainable++
					sp, ok := spans[p]
					if assert.True(t, ok, "%s has no span", p.Name) {
						assert.True(t, 0 <= sp.First && sp.First <= sp.Last && sp.Last < n, "%s: span %v", p.Name, sp)
					}
				}
			}
			assert.Len(t, spans, trainable)

			bt := randomBatch(m.Backend(), 2, 6, m.Config().VocabSize, 7)
			_, err := m.ForwardBackward(bt, true, 1) // allocates the gradients
			require.NoError(t, err)
			zeroGrads(m)
			spy := &stageSpy{t: t, be: m.Backend(), spans: spans, early: map[*engine.Param][]float32{}}
			sb.ObserveBackward(spy)
			_, err = m.ForwardBackward(bt, true, 1)
			require.NoError(t, err)
			sb.ObserveBackward(nil)

			var want []string
			for s := range n {
				want = append(want, fmt.Sprintf("before %d", s), fmt.Sprintf("after %d", s))
			}
			assert.Equal(t, want, spy.events)
			for p, early := range spy.early {
				assert.Equal(t, early, m.Backend().Download(p.G), "%s changed after its last stage %d", p.Name, spans[p].Last)
			}
			assert.Len(t, spy.early, trainable)
			if c.arch == hfconfig.ArchGPT2 {
				wte, _ := m.Param("transformer.wte.weight")
				assert.Equal(t, engine.GradSpan{First: 0, Last: n - 1}, spans[wte], "the tied embedding is written at the head and at the input")
			}
		})
	}
}

// stagesModel is the tiny model of arch, or the golden checkpoint of that
// name (phi3, glm4) with scrambled weights.
func stagesModel(t *testing.T, arch string) Model {
	if arch != "phi3" && arch != "glm4" {
		return newTiny(t, arch, 41)
	}
	m, err := Load(filepath.Join(goldenRoot, arch), cpu.New())
	require.NoError(t, err)
	scramble(m, 42, 0.3)
	return m
}
