package prefix

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/internal/fieldpaths"
	"github.com/gotune/gotune/methods/internal/methodtest"
	"github.com/gotune/gotune/methods/peft"
	"github.com/gotune/gotune/methods/prompt"
)

// TestEndToEndGradients checks the prefix tensors' gradients through a
// whole model against finite differences of the loss: global and local
// prefixes, with and without projection, GQA LLaMA and GPT-2.
func TestEndToEndGradients(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		for _, tc := range []struct {
			layers []int
			proj   bool
		}{{nil, false}, {[]int{1}, false}, {nil, true}, {[]int{1, 0}, true}} {
			t.Run(fmt.Sprintf("%s/layers=%v/projection=%v", arch, tc.layers, tc.proj), func(t *testing.T) {
				m := methodtest.Tiny(t, arch, 3)
				a, err := Apply(m, Config{NumVirtualTokens: 2, Layers: tc.layers, Projection: tc.proj, EncoderHidden: 5, Seed: 7})
				if err != nil {
					t.Fatal(err)
				}
				hb := methodtest.Batch(2, 4, m.Config().VocabSize, 8)
				methodtest.CheckModelGradients(t, m, hb, a.Params())
			})
		}
	}
}

// TestLayout checks the table's geometry: width layers·2·kv_heads·
// head_dim, layer j's keys in block 2j and values in block 2j+1 (PEFT's
// view of [P, L·2, kv_heads, head_dim]), and no prefix on other layers.
func TestLayout(t *testing.T) {
	m := methodtest.Tiny(t, hfconfig.ArchLlama, 1)
	a, err := Apply(m, Config{NumVirtualTokens: 3, Layers: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	kvd := m.Config().KVHeads * m.Config().HeadDim
	if got := a.Params()[0].W.Shape(); !slices.Equal(got, []int{3, 2 * kvd}) {
		t.Errorf("table %v, want [3 %d]", got, 2*kvd)
	}
	if _, _, ok := a.KV(0); ok {
		t.Error("layer 0 has a prefix")
	}
	k, v, ok := a.KV(1)
	if !ok || k.Off != 0 || v.Off != kvd || k.Stride != 2*kvd || v.Stride != 2*kvd {
		t.Errorf("layer 1: keys %+v values %+v", k, v)
	}
	pc := a.PeftConfig()
	if pc.TokenDim != kvd || pc.NumAttentionHeads != m.Config().KVHeads || pc.EncoderHiddenSize != kvd || !slices.Equal(pc.PrefixLayers, []int{1}) {
		t.Errorf("config %+v", pc)
	}
}

// TestConfigFilesMatchReference writes adapter_config.json for the golden
// sets' configurations and compares it byte for byte with the reference
// folders'.
func TestConfigFilesMatchReference(t *testing.T) {
	for _, set := range methodtest.Sets(t, methodtest.Root, "prefix") {
		t.Run(set.Meta.Name, func(t *testing.T) {
			m, err := model.Load(set.BaseDir(), cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			c, err := ReadConfig(set.AdapterDir(), m)
			if err != nil {
				t.Fatal(err)
			}
			a, err := Apply(m, c)
			if err != nil {
				t.Fatal(err)
			}
			methodtest.CheckConfigFile(t, set, a.PeftConfig())
		})
	}
}

// TestResumeProjection saves a projected prefix and loads it back for
// training: the encoder tensors come back exactly and PEFT's
// prompt_embeddings is the projection's output.
func TestResumeProjection(t *testing.T) {
	m := methodtest.Tiny(t, hfconfig.ArchGPT2, 2)
	a, err := Apply(m, Config{NumVirtualTokens: 2, Projection: true, EncoderHidden: 6, Seed: 3})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	if err := a.Save(dir); err != nil {
		t.Fatal(err)
	}
	m2 := methodtest.Tiny(t, hfconfig.ArchGPT2, 2)
	b, err := Load(m2, dir, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	methodtest.CheckRestored(t, a.Params(), b.Params())
	saved := methodtest.SavedTensor(t, dir, prompt.EmbeddingsName, 2, 2*2*m.Config().Hidden)
	if !slices.Equal(saved, m.Backend().Download(a.Table())) {
		t.Error("prompt_embeddings is not the projection's output")
	}
	if _, err := os.Stat(filepath.Join(dir, EncoderFile)); err != nil {
		t.Error(err)
	}
}

// TestBadInputs checks invalid options.
func TestBadInputs(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{NumVirtualTokens: 0}, "NumVirtualTokens must be positive, got 0"},
		{Config{NumVirtualTokens: 2, Layers: []int{0, 2}}, "Layers names layer 2, which does not exist: the model has 2 layers (0..1)"},
		{Config{NumVirtualTokens: 2, Layers: []int{-1}}, "layer -1, which does not exist"},
		{Config{NumVirtualTokens: 2, Layers: []int{1, 1}}, "Layers lists layer 1 twice"},
		{Config{NumVirtualTokens: 2, Layers: []int{}}, "Layers is empty"},
		{Config{NumVirtualTokens: 2, EncoderHidden: -1}, "EncoderHidden must not be negative, got -1"},
		{Config{NumVirtualTokens: 1000}, "NumVirtualTokens 1000 is more than the model's"},
	} {
		m := methodtest.Tiny(t, hfconfig.ArchLlama, 1)
		_, err := Apply(m, tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want %q", tc.cfg, err, tc.want)
		}
		fieldpaths.RequireFieldError(t, err, Config{})
		if m.Prefix() != nil {
			t.Error("a failed Apply left a prefix installed")
		}
		for _, p := range m.Params() {
			if !p.Trainable {
				t.Fatalf("%s frozen by a failed Apply", p.Name)
			}
		}
	}
	m := methodtest.Tiny(t, hfconfig.ArchGPT2, 1)
	if _, err := Apply(m, Config{NumVirtualTokens: 2}); err != nil {
		t.Fatal(err)
	}
	hb := methodtest.Batch(1, 63, m.Config().VocabSize, 1)
	if _, err := methodtest.ModelLossGrad(m, hb); err == nil || !strings.Contains(err.Error(), "exceed n_positions 64") {
		t.Errorf("2 prefix positions + 63 tokens on a 64-position GPT-2: %v", err)
	}
}

// TestLoadErrors checks broken adapter folders.
func TestLoadErrors(t *testing.T) {
	var proj, global string
	var base string
	for _, s := range methodtest.Sets(t, methodtest.Root, "prefix") {
		switch s.Meta.Name {
		case "prefix-projection":
			proj, base = s.AdapterDir(), s.BaseDir()
		case "prefix":
			global = s.AdapterDir()
		}
	}
	copyDir := func(t *testing.T, src, skip string) string {
		dir := t.TempDir()
		for _, f := range []string{peft.ConfigFile, peft.WeightsFile, EncoderFile} {
			b, err := os.ReadFile(filepath.Join(src, f))
			if err != nil || f == skip {
				continue
			}
			os.WriteFile(filepath.Join(dir, f), b, 0o644)
		}
		return dir
	}
	load := func(t *testing.T, dir string, frozen bool) error {
		m, err := model.Load(base, cpu.New())
		if err != nil {
			t.Fatal(err)
		}
		_, err = Load(m, dir, LoadOptions{Frozen: frozen})
		if err != nil && m.Prefix() != nil {
			t.Error("a failed Load left a prefix installed")
		}
		return err
	}
	for _, tc := range []struct {
		name, src, skip, from, to string
		frozen                    bool
		want                      string
	}{
		{"no encoder file", proj, EncoderFile, "", "", false, "prompt_encoder.safetensors, which gotune writes beside it, is missing"},
		{"no encoder file, inference", proj, EncoderFile, "", "", true, ""},
		{"GQA as hidden", global, "", `"token_dim": 16`, `"token_dim": 32`, true, "token_dim 32 with 2 attention heads, but this model's keys and values are 16 wide in 2 heads"},
		{"layers", global, "", `"num_layers": 2`, `"num_layers": 3`, true, "num_layers is 3, but the model has 2 layers"},
		{"local layer range", global, "", `"prefix_projection": false`, `"prefix_projection": false, "prefix_layers": [0, 5]`, true, "adapter_config.json: prefix: Layers names layer 5, which does not exist"},
		{"local width", global, "", `"prefix_projection": false`, `"prefix_projection": false, "prefix_layers": [1]`, true, `"prompt_embeddings" has shape [3 64], expected [3 32]`},
		{"virtual tokens", global, "", `"num_virtual_tokens": 3`, `"num_virtual_tokens": 0`, true, "num_virtual_tokens must be positive"},
		{"peft type", global, "", `"PREFIX_TUNING"`, `"P_TUNING"`, true, `peft_type is "P_TUNING", expected "PREFIX_TUNING"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, tc.src, tc.skip)
			if tc.from != "" {
				methodtest.EditConfig(t, dir, tc.from, tc.to)
			}
			err := load(t, dir, tc.frozen)
			if tc.want == "" {
				if err != nil {
					t.Errorf("error %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("error %v, want %q", err, tc.want)
			}
		})
	}
}
