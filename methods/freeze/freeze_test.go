package freeze

import (
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/fielderr"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/internal/fieldpaths"
	"github.com/gotune/gotune/methods/internal/methodtest"
)

func tiny(t testing.TB, arch string, layers int) model.Model {
	t.Helper()
	return methodtest.NewModel(t, arch, hfconfig.Sizes{VocabSize: 29, Hidden: 16, Layers: layers, Heads: 4, KVHeads: 2, Intermediate: 24, MaxPos: 32}, 5)
}

// TestSelection checks which parameters each option combination trains,
// against lists written out from the module names of each architecture.
func TestSelection(t *testing.T) {
	llamaLayer := func(i int, mods ...string) []string {
		all := map[string][]string{
			"self_attn":                {"self_attn.q_proj.weight", "self_attn.k_proj.weight", "self_attn.v_proj.weight", "self_attn.o_proj.weight"},
			"mlp":                      {"mlp.gate_proj.weight", "mlp.up_proj.weight", "mlp.down_proj.weight"},
			"input_layernorm":          {"input_layernorm.weight"},
			"post_attention_layernorm": {"post_attention_layernorm.weight"},
			"self_attn.q_proj":         {"self_attn.q_proj.weight"},
		}
		var out []string
		for _, m := range mods {
			for _, n := range all[m] {
				out = append(out, "model.layers."+string(rune('0'+i))+"."+n)
			}
		}
		return out
	}
	everything := []string{"self_attn", "mlp", "input_layernorm", "post_attention_layernorm"}
	cat := func(lists ...[]string) []string {
		var out []string
		for _, l := range lists {
			out = append(out, l...)
		}
		return out
	}
	for _, tc := range []struct {
		name string
		arch string
		cfg  Config
		want []string
	}{
		{"last layer, all", hfconfig.ArchLlama, Config{TrainableLayers: 1, Modules: []string{"all"}},
			llamaLayer(3, everything...)},
		{"last two, mlp", hfconfig.ArchLlama, Config{TrainableLayers: 2, Modules: []string{"mlp"}},
			cat(llamaLayer(2, "mlp"), llamaLayer(3, "mlp"))},
		{"first, attention and norm extras", hfconfig.ArchLlama, Config{TrainableLayers: -1, Modules: []string{"self_attn"}, Extra: []string{"norm", "embed_tokens", "lm_head"}},
			cat([]string{"model.embed_tokens.weight"}, llamaLayer(0, "self_attn"), []string{"model.norm.weight", "lm_head.weight"})},
		{"dotted sub-module", hfconfig.ArchLlama, Config{TrainableLayers: 1, Modules: []string{"self_attn.q_proj", "mlp"}},
			llamaLayer(3, "self_attn.q_proj", "mlp")},
		{"extras only", hfconfig.ArchLlama, Config{TrainableLayers: 0, Modules: []string{"all"}, Extra: []string{"norm"}},
			[]string{"model.norm.weight"}},
		{"qwen2 biases come with their module", hfconfig.ArchQwen2, Config{TrainableLayers: 1, Modules: []string{"self_attn.k_proj"}},
			[]string{"model.layers.3.self_attn.k_proj.weight", "model.layers.3.self_attn.k_proj.bias"}},
		{"gpt2 attention and final norm", hfconfig.ArchGPT2, Config{TrainableLayers: 1, Modules: []string{"attn"}, Extra: []string{"ln_f", "wpe"}},
			[]string{"transformer.wpe.weight", "transformer.h.3.attn.c_attn.weight", "transformer.h.3.attn.c_attn.bias",
				"transformer.h.3.attn.c_proj.weight", "transformer.h.3.attn.c_proj.bias", "transformer.ln_f.weight", "transformer.ln_f.bias"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := tiny(t, tc.arch, 4)
			got, err := Apply(m, tc.cfg)
			if err != nil {
				t.Fatal(err)
			}
			var trainable []string
			for _, p := range m.Params() {
				if p.Trainable {
					trainable = append(trainable, p.Name)
				}
			}
			if !slices.Equal(got, trainable) {
				t.Errorf("Apply returned %v, the trainable parameters are %v", got, trainable)
			}
			want := append([]string(nil), tc.want...)
			slices.Sort(want)
			slices.Sort(trainable)
			if !slices.Equal(trainable, want) {
				t.Errorf("trainable\n%v\nwant\n%v", trainable, want)
			}
		})
	}
}

func TestErrors(t *testing.T) {
	for _, tc := range []struct {
		name, arch string
		cfg        Config
		want       string
	}{
		{"too many layers", hfconfig.ArchLlama, Config{TrainableLayers: 5, Modules: []string{"all"}}, "TrainableLayers is 5, but the model has 4 layers"},
		{"too many first layers", hfconfig.ArchLlama, Config{TrainableLayers: -5, Modules: []string{"all"}}, "model has 4 layers"},
		{"unknown module", hfconfig.ArchLlama, Config{TrainableLayers: 1, Modules: []string{"attn"}}, `Modules "attn": no such module in the layers (they have: input_layernorm, mlp, post_attention_layernorm, self_attn)`},
		{"gpt2 llama name", hfconfig.ArchGPT2, Config{TrainableLayers: 1, Modules: []string{"self_attn"}}, `"self_attn": no such module`},
		{"all mixed", hfconfig.ArchLlama, Config{TrainableLayers: 1, Modules: []string{"all", "mlp"}}, "cannot be combined"},
		{"no modules", hfconfig.ArchLlama, Config{TrainableLayers: 1}, "names no module"},
		{"unknown extra", hfconfig.ArchLlama, Config{TrainableLayers: 1, Modules: []string{"all"}, Extra: []string{"ln_f"}}, `Extra "ln_f": no such module outside the layers (there are: embed_tokens, lm_head, norm)`},
		{"tied lm_head", hfconfig.ArchGPT2, Config{TrainableLayers: 1, Modules: []string{"all"}, Extra: []string{"lm_head"}}, "tied to the token embedding in this model; name the embedding (wte)"},
		{"nothing", hfconfig.ArchLlama, Config{TrainableLayers: 0, Modules: []string{"all"}}, "TrainableLayers is 0 and Extra names no module: nothing to train"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Apply(tiny(t, tc.arch, 4), tc.cfg)
			fe, ok := fielderr.As(err)
			require.True(t, ok, "want a *fielderr.Error, got %v", err)
			assert.Contains(t, fe.Error(), tc.want)
			for _, f := range fe.Fields() {
				assert.True(t, fieldpaths.Has(Config{}, f), "%s is not a field of Config", f)
			}
		})
	}
}

// spy records how a Linear's Backward is called.
type spy struct {
	model.Linear
	calls, withDX int
}

func (s *spy) Backward(dx, dy, x *engine.Tensor) {
	s.calls++
	if dx != nil {
		s.withDX++
	}
	s.Linear.Backward(dx, dy, x)
}

// TestBackwardStops checks that with only the last layer's MLP trainable
// the backward pass computes the MLP's weight gradients, no gradient for
// its input, and nothing at all in the layers below.
func TestBackwardStops(t *testing.T) {
	m := tiny(t, hfconfig.ArchLlama, 4)
	if _, err := Apply(m, Config{TrainableLayers: 1, Modules: []string{"mlp"}}); err != nil {
		t.Fatal(err)
	}
	spies := map[string]*spy{}
	for _, name := range []string{"model.layers.3.mlp.gate_proj", "model.layers.3.mlp.down_proj", "model.layers.3.self_attn.o_proj", "model.layers.2.mlp.down_proj"} {
		l, _ := m.Linear(name)
		spies[name] = &spy{Linear: l}
		if err := m.ReplaceLinear(name, spies[name]); err != nil {
			t.Fatal(err)
		}
	}
	be := m.Backend()
	ids := be.Alloc(engine.Int32, 2*5)
	tg := be.Alloc(engine.Int32, 2*5)
	be.UploadInt32(ids, []int32{1, 2, 3, 4, 5, 6, 7, 8, 9, 10})
	be.UploadInt32(tg, []int32{2, 3, 4, 5, -100, 7, 8, 9, 10, -100})
	if _, err := m.ForwardBackward(&engine.Batch{B: 2, T: 5, InputIDs: ids, Targets: tg, Counted: 8}, true, 0.125); err != nil {
		t.Fatal(err)
	}
	for name, want := range map[string][2]int{
		"model.layers.3.mlp.gate_proj":    {1, 0}, // weight gradient only
		"model.layers.3.mlp.down_proj":    {1, 1}, // its input gradient feeds gate/up
		"model.layers.3.self_attn.o_proj": {0, 0},
		"model.layers.2.mlp.down_proj":    {0, 0},
	} {
		if s := spies[name]; s.calls != want[0] || s.withDX != want[1] {
			t.Errorf("%s: %d backward calls (%d with dx), want %d (%d)", name, s.calls, s.withDX, want[0], want[1])
		}
	}
	for _, p := range m.Params() {
		if p.Trainable != strings.HasPrefix(p.Name, "model.layers.3.mlp.") {
			t.Errorf("%s: trainable %v", p.Name, p.Trainable)
		}
		if p.Trainable && (p.G == nil || allZero(be.Download(p.G))) {
			t.Errorf("%s: no gradient", p.Name)
		}
	}
}

func allZero(v []float32) bool {
	for _, x := range v {
		if x != 0 {
			return false
		}
	}
	return true
}
