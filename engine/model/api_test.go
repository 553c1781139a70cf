package model

import (
	"strings"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
)

// TestModules checks module enumeration by Hugging Face path and the
// validation of replacements and hooks.
func TestModules(t *testing.T) {
	m := newTiny(t, hfconfig.ArchLlama, 1)
	var names []string
	for _, nm := range m.Modules() {
		names = append(names, nm.Name)
	}
	joined := strings.Join(names, " ")
	for _, want := range []string{"model.embed_tokens", "model.layers.0.input_layernorm", "model.layers.2.self_attn.q_proj", "model.layers.1.mlp.down_proj", "model.norm", "lm_head"} {
		if !strings.Contains(joined, want) {
			t.Errorf("module %s not listed", want)
		}
	}
	if len(names) != 1+3*9+2 {
		t.Errorf("%d modules, want %d", len(names), 1+3*9+2)
	}
	q, ok := m.Linear("model.layers.0.self_attn.q_proj")
	if !ok || q.In() != 16 || q.Out() != 16 {
		t.Fatalf("q_proj: %v %v", q, ok)
	}
	if _, ok := m.Linear("model.layers.0.input_layernorm"); ok {
		t.Error("a norm is reported as a Linear")
	}
	k, _ := m.Linear("model.layers.0.self_attn.k_proj")
	if err := m.ReplaceLinear("model.layers.0.self_attn.q_proj", k); err == nil {
		t.Error("replacing q_proj (16→16) with k_proj (16→8) succeeded")
	}
	if err := m.ReplaceLinear("model.layers.9.self_attn.q_proj", q); err == nil {
		t.Error("replacing a missing module succeeded")
	}
	if err := m.SetHook(3, SiteAttn, nil); err == nil {
		t.Error("hook on layer 3 of 3 accepted")
	}
	sp := &spy{Linear: q}
	if err := m.ReplaceLinear("model.layers.0.self_attn.q_proj", sp); err != nil {
		t.Fatal(err)
	}
	if got, _ := m.Linear("model.layers.0.self_attn.q_proj"); got != Linear(sp) {
		t.Error("replacement not visible")
	}
	for _, nm := range m.Modules() {
		if nm.Name == "model.layers.0.self_attn.q_proj" && (nm.Module != Module(sp) || nm.Layer != 0) {
			t.Error("Modules does not reflect the replacement")
		}
	}
}

// TestBadPasses checks that impossible passes are errors, not panics.
func TestBadPasses(t *testing.T) {
	gpt := newTiny(t, hfconfig.ArchGPT2, 1)
	long := randomBatch(gpt.Backend(), 1, 65, gpt.Config().VocabSize, 1)
	if _, err := gpt.ForwardBackward(long, true, 1); err == nil || !strings.Contains(err.Error(), "n_positions") {
		t.Errorf("GPT-2 past n_positions: %v", err)
	}
	be := gpt.Backend()
	bad := &engine.Batch{B: 2, T: 3, InputIDs: be.Alloc(engine.Int32, 5), Targets: be.Alloc(engine.Int32, 6)}
	if _, err := gpt.ForwardBackward(bad, true, 1); err == nil {
		t.Error("a batch with 5 ids for 2×3 tokens was accepted")
	}
	if _, err := gpt.ForwardBackward(nil, true, 1); err == nil {
		t.Error("a nil batch was accepted")
	}
	if _, err := New(nil, cpu.New(), 1); err == nil {
		t.Error("New(nil config) succeeded")
	}
	if _, err := NewWithOptions(gpt.Config(), cpu.New(), 1, Options{RopeLayout: engine.RopeInterleaved}); err == nil {
		t.Error("interleaved RoPE accepted for GPT-2")
	}
}
