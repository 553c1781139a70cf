package model

import (
	"strings"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
)

// spy wraps a Linear and records how its Backward is called.
type spy struct {
	Linear
	calls, withDX int
}

func (s *spy) Backward(dx, dy, x *engine.Tensor) {
	s.calls++
	if dx != nil {
		s.withDX++
	}
	s.Linear.Backward(dx, dy, x)
}

func freeze(m Model, match func(name string) bool) {
	for _, p := range m.Params() {
		if match(p.Name) {
			SetTrainable(p, false)
		}
	}
}

// TestFrozenLowerLayers checks that freezing the embeddings and the lower
// layers leaves the upper parameters' gradients unchanged, allocates no
// gradient for frozen parameters, keeps no activations below the lowest
// trainable layer and computes no input gradient for it.
func TestFrozenLowerLayers(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		t.Run(arch, func(t *testing.T) {
			full := newTiny(t, arch, 21)
			bt := randomBatch(full.Backend(), 2, 6, full.Config().VocabSize, 2)
			if _, err := full.ForwardBackward(bt, true, 0.5); err != nil {
				t.Fatal(err)
			}
			want := map[string][]float32{}
			for _, p := range full.Params() {
				want[p.Name] = gradOf(p)
			}

			m := newTiny(t, arch, 21)
			lower := func(n string) bool {
				return strings.Contains(n, "embed_tokens") || strings.Contains(n, ".wte.") || strings.Contains(n, ".wpe.") ||
					strings.Contains(n, "layers.0.") || strings.Contains(n, "layers.1.") ||
					strings.Contains(n, ".h.0.") || strings.Contains(n, ".h.1.") ||
					// the lowest trainable layer's own input norm too, so
					// that nothing needs the gradient of its projections' input
					strings.Contains(n, "layers.2.input_layernorm") || strings.Contains(n, ".h.2.ln_1")
			}
			freeze(m, lower)
			// Spy on the lowest trainable layer's first projections.
			first := "model.layers.2.self_attn.q_proj"
			if arch == hfconfig.ArchGPT2 {
				first = "transformer.h.2.attn.c_attn"
			}
			base, _ := m.Linear(first)
			sp := &spy{Linear: base}
			if err := m.ReplaceLinear(first, sp); err != nil {
				t.Fatal(err)
			}
			if _, err := m.ForwardBackward(bt, true, 0.5); err != nil {
				t.Fatal(err)
			}
			for _, p := range m.Params() {
				if lower(p.Name) {
					if p.G != nil || p.Trainable {
						t.Errorf("frozen %s has a gradient buffer or is trainable", p.Name)
					}
					continue
				}
				got := gradOf(p)
				if got == nil {
					t.Errorf("%s: no gradient", p.Name)
					continue
				}
				for i := range got {
					if got[i] != want[p.Name][i] {
						t.Errorf("%s[%d]: %v with frozen lower layers, %v without", p.Name, i, got[i], want[p.Name][i])
						break
					}
				}
			}
			if sp.calls != 1 || sp.withDX != 0 {
				t.Errorf("%s: backward called %d times, %d with an input gradient; want once, without", first, sp.calls, sp.withDX)
			}
			s := m.(interface{ core() *Transformer }).core().trainActs
			distinct := map[*layerActs]bool{}
			for _, a := range s.layers {
				distinct[a] = true
			}
			if s.key.lowLayer != 2 || len(distinct) != 3 {
				t.Errorf("lowest kept layer %d, %d activation sets for 3 layers; want 2 and 3 (two shared scratch sets below)", s.key.lowLayer, len(distinct))
			}
		})
	}
}

// TestOnlyMethodTrainable freezes the whole base model and trains one
// method's parameters: their gradients match finite differences, nothing
// else gets a gradient buffer, and (for a LoRA on one v_proj) the frozen
// q/k projections of that layer and everything below are never
// backpropagated.
func TestOnlyMethodTrainable(t *testing.T) {
	cases := []struct {
		name, arch string
		install    func(m Model) []*engine.Param
		spies      []string // linears whose backward must not run
	}{
		{"lora-v_proj", hfconfig.ArchLlama, func(m Model) []*engine.Param {
			v, _ := m.Linear("model.layers.1.self_attn.v_proj")
			lora := newTestLoRA(m.Backend(), v, 2, 5)
			m.ReplaceLinear("model.layers.1.self_attn.v_proj", lora)
			return []*engine.Param{lora.a, lora.b}
		}, []string{"model.layers.1.self_attn.q_proj", "model.layers.1.self_attn.k_proj", "model.layers.0.mlp.down_proj"}},
		{"prefix", hfconfig.ArchLlama, func(m Model) []*engine.Param {
			p := newTestPrefix(m, 2, 3)
			m.SetPrefix(p)
			return []*engine.Param{p.e}
		}, []string{"model.layers.0.self_attn.q_proj"}},
		{"local-prefix", hfconfig.ArchGPT2, func(m Model) []*engine.Param {
			p := newTestPrefix(m, 2, 3)
			p.only = map[int]bool{1: true, 2: true}
			m.SetPrefix(p)
			return []*engine.Param{p.e}
		}, []string{"transformer.h.1.attn.c_attn", "transformer.h.0.mlp.c_fc"}},
		{"prompt", hfconfig.ArchGPT2, func(m Model) []*engine.Param {
			p := &testPrompt{e: newParam(m.Backend(), "prompt", 1, 0.5, 2, m.Config().Hidden)}
			m.SetPrompt(p)
			return []*engine.Param{p.e}
		}, nil},
		{"mlp-hook", hfconfig.ArchLlama, func(m Model) []*engine.Param {
			h := newTestHook(m.Backend(), m.Config().Hidden, 4)
			m.SetHook(1, SiteMLP, h)
			return h.Params()
		}, []string{"model.layers.1.self_attn.o_proj", "model.layers.1.mlp.gate_proj"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			m := newTiny(t, c.arch, 31)
			freeze(m, func(string) bool { return true })
			trained := c.install(m)
			spies := map[string]*spy{}
			for _, n := range c.spies {
				l, _ := m.Linear(n)
				spies[n] = &spy{Linear: l}
				m.ReplaceLinear(n, spies[n])
			}
			bt := randomBatch(m.Backend(), 2, 5, m.Config().VocabSize, 4)
			if _, err := m.ForwardBackward(bt, true, 1); err != nil {
				t.Fatal(err)
			}
			for n, s := range spies {
				if s.calls != 0 {
					t.Errorf("%s: backward ran %d times", n, s.calls)
				}
			}
			isTrained := map[*engine.Param]bool{}
			for _, p := range trained {
				isTrained[p] = true
			}
			for _, p := range m.Params() {
				if (p.G != nil) != isTrained[p] {
					t.Errorf("%s: gradient buffer %v", p.Name, p.G != nil)
				}
			}
			for _, p := range trained {
				fdCheck(t, m, bt, p, gradOf(p))
			}
		})
	}
}

// TestExtensionGradients checks by finite differences the gradients that
// flow through every extension point at once: virtual tokens, a prefix,
// sub-layer hooks and a replaced projection, on top of the base model.
func TestExtensionGradients(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		t.Run(arch, func(t *testing.T) {
			m := newTiny(t, arch, 41)
			be := m.Backend()
			D := m.Config().Hidden
			m.SetPrompt(&testPrompt{e: newParam(be, "prompt", 1, 0.5, 2, D)})
			pre := newTestPrefix(m, 3, 2)
			m.SetPrefix(pre)
			hookA, hookM := newTestHook(be, D, 3), newTestHook(be, D, 7)
			m.SetHook(1, SiteAttn, hookA)
			m.SetHook(0, SiteMLP, hookM)
			name := "model.layers.2.self_attn.q_proj"
			if arch == hfconfig.ArchGPT2 {
				name = "transformer.h.2.attn.c_attn"
			}
			base, _ := m.Linear(name)
			lora := newTestLoRA(be, base, 2, 11)
			m.ReplaceLinear(name, lora)

			bt := randomBatch(be, 2, 5, m.Config().VocabSize, 6)
			if _, err := m.ForwardBackward(bt, true, 1); err != nil {
				t.Fatal(err)
			}
			check := []*engine.Param{m.Prompt().Params()[0], pre.e, lora.a, lora.b}
			check = append(check, hookA.Params()...)
			check = append(check, hookM.Params()...)
			check = append(check, m.BaseParams()[0], m.BaseParams()[len(m.BaseParams())-1])
			grads := map[*engine.Param][]float32{}
			for _, p := range check {
				grads[p] = gradOf(p)
			}
			for _, p := range check {
				fdCheck(t, m, bt, p, grads[p])
			}
		})
	}
}
