package adapter

import (
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/internal/fieldpaths"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/internal/methodtest"
	"github.com/gotune/gotune/methods/peft"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBottleneckFiniteDifferences checks Backward against finite
// differences of Σ w⊙y on random inputs, for every activation, every
// input an adapter reads, with and without scaling: the gradients of all
// four tensors and of the inputs h (with its identity path), xn and x.
func TestBottleneckFiniteDifferences(t *testing.T) {
	const N, D, b = 5, 6, 3
	for _, act := range Activations() {
		for _, in := range []Input{InputOutput, InputOutputResidual, InputResidual, InputNormed} {
			for _, scale := range []float32{1, 2.5} {
				t.Run(fmt.Sprintf("%s/%s/s=%g", act, in, scale), func(t *testing.T) {
					be := cpu.New()
					mod := newBottleneck(be, "layer.mlp_adapter", 0, siteMLP, D, b, activations[act], scale, in)
					for i, p := range mod.Params() {
						be.Copy(p.W, methodtest.Random(be, uint64(i+1), 0.7, p.W.Shape()...))
						model.SetTrainable(p, true)
					}
					h := methodtest.Random(be, 10, 1, N, D)
					xn := methodtest.Random(be, 14, 1, N, D)
					x := methodtest.Random(be, 18, 1, N, D)
					w := methodtest.Random(be, 13, 1, N, D)
					y := be.Alloc(engine.Float32, N, D)
					f := func() float64 {
						mod.Forward(y, h, xn, x, true)
						return methodtest.Dot(be, w, y)
					}
					f()
					for i, z := range be.Download(mod.z) {
						// Finite differences are meaningless across ReLU's kink.
						if z > -0.05 && z < 0.05 {
							t.Fatalf("test inputs put z[%d] = %g next to 0; choose other seeds", i, z)
						}
					}
					dh := be.Alloc(engine.Float32, N, D)
					dxn := be.Alloc(engine.Float32, N, D)
					dx := be.Alloc(engine.Float32, N, D)
					mod.Backward(dh, dxn, dx, w, h, xn, x)
					for _, p := range mod.Params() {
						methodtest.FDCheck(t, p.Name, p.W, be.Download(p.G), f)
					}
					methodtest.FDCheck(t, "h", h, be.Download(dh), f)
					for _, g := range []struct {
						name  string
						in, d *engine.Tensor
						reads bool
					}{
						{"xn", xn, dxn, in == InputNormed},
						{"x", x, dx, in == InputResidual || in == InputOutputResidual},
					} {
						if g.reads {
							methodtest.FDCheck(t, g.name, g.in, be.Download(g.d), f)
						} else if s := be.Download(g.d); golden.RelErr(s, make([]float32, len(s))) != 0 {
							t.Errorf("an adapter reading %s wrote a gradient into d%s", in, g.name)
						}
					}
				})
			}
		}
	}
}

// TestApplyStartsAtIdentity checks that fresh adapters with the
// mam_adapter initialisation leave the model's function unchanged, freeze
// the base, and are placed per variant.
func TestApplyStartsAtIdentity(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		for _, v := range Variants {
			t.Run(arch+"/"+string(v), func(t *testing.T) {
				m := methodtest.Tiny(t, arch, 3)
				hb := methodtest.Batch(2, 5, m.Config().VocabSize, 4)
				want := methodtest.Logits(t, m, hb)
				a, err := Apply(m, Config{Variant: v, ReductionFactor: 4, Activation: "gelu", Scaling: 2, Init: InitMAM, Seed: 1})
				if err != nil {
					t.Fatal(err)
				}
				if e := golden.RelErr(methodtest.Logits(t, m, hb), want); e != 0 {
					t.Errorf("logits changed by a fresh adapter: rel err %.3g", e)
				}
				perLayer := 1
				if v == Houlsby {
					perLayer = 2
				}
				if got := len(a.Modules()); got != perLayer*m.NumLayers() {
					t.Errorf("%d adapters, want %d", got, perLayer*m.NumLayers())
				}
				for l := 0; l < m.NumLayers(); l++ {
					if (m.Hook(l, model.SiteAttn) != nil) != (v == Houlsby) || m.Hook(l, model.SiteMLP) == nil {
						t.Errorf("layer %d: hooks attn=%v mlp=%v for %s", l, m.Hook(l, model.SiteAttn) != nil, m.Hook(l, model.SiteMLP) != nil, v)
					}
				}
				own := map[*engine.Param]bool{}
				for _, p := range a.Params() {
					own[p] = true
					if !p.Trainable {
						t.Errorf("%s is frozen", p.Name)
					}
				}
				for _, p := range m.Params() {
					if !own[p] && p.Trainable {
						t.Errorf("base parameter %s is trainable", p.Name)
					}
				}
				prefix := "base_model.model.model.layers.0."
				if arch == hfconfig.ArchGPT2 {
					prefix = "base_model.model.transformer.h.0."
				}
				if n := a.Params()[0].Name; !strings.HasPrefix(n, prefix) || a.Params()[0].W.Dim(0) != 4 || a.Params()[0].W.Dim(1) != 16 {
					t.Errorf("first tensor %s %v, want %s..._adapter.down_proj.weight [4 16]", n, a.Params()[0].W.Shape(), prefix)
				}
				// One step of training moves the model off the identity.
				if _, err := methodtest.ModelLossGrad(m, hb); err != nil {
					t.Fatal(err)
				}
				up := a.Modules()[0].UpW
				if g := m.Backend().Download(up.G); golden.RelErr(g, make([]float32, len(g))) == 0 {
					t.Error("the zero up-projection got no gradient")
				}
			})
		}
	}
}

// TestEndToEndGradients checks the adapters' gradients inside a whole
// model against finite differences of the loss, including the
// contributions that pass through later layers.
func TestEndToEndGradients(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		for _, v := range Variants {
			t.Run(arch+"/"+string(v), func(t *testing.T) {
				m := methodtest.Tiny(t, arch, 5)
				a, err := Apply(m, Config{Variant: v, ReductionFactor: 4, Activation: "tanh", Scaling: 1.5, Seed: 2})
				if err != nil {
					t.Fatal(err)
				}
				for i, p := range a.Params() {
					m.Backend().Copy(p.W, methodtest.Random(m.Backend(), uint64(20+i), 0.5, p.W.Shape()...))
				}
				hb := methodtest.Batch(2, 5, m.Config().VocabSize, 6)
				methodtest.CheckModelGradients(t, m, hb, a.Params())
			})
		}
	}
}

// TestTargetLayers checks --adapter-layers: only those layers get
// adapters, and the list is saved as target_layers.
func TestTargetLayers(t *testing.T) {
	m := methodtest.Tiny(t, hfconfig.ArchLlama, 1)
	a, err := Apply(m, Config{Variant: Pfeiffer, ReductionFactor: 2, Activation: "relu", Scaling: 1, Layers: []int{1}})
	if err != nil {
		t.Fatal(err)
	}
	if m.Hook(0, model.SiteMLP) != nil || m.Hook(1, model.SiteMLP) == nil {
		t.Error("adapters not only on layer 1")
	}
	if got := a.PeftConfig().TargetLayers; len(got) != 1 || got[0] != 1 {
		t.Errorf("target_layers %v, want [1]", got)
	}
	if got := a.PeftConfig().BottleneckSize; got != 8 {
		t.Errorf("bottleneck_size %d, want 16/2", got)
	}
}

// TestBadConfig checks the errors for invalid hyper-parameters.
func TestBadConfig(t *testing.T) {
	ok := Config{Variant: Houlsby, ReductionFactor: 4, Activation: "relu", Scaling: 1}
	tests := []struct {
		name string
		edit func(c *Config)
		want string
	}{
		{"variant", func(c *Config) { c.Variant = "serial" }, `Variant "serial": unknown adapter variant`},
		{"bottleneck", func(c *Config) { c.BottleneckSize = -1 }, "BottleneckSize must not be negative, got -1"},
		{"reduction", func(c *Config) { c.ReductionFactor = -1 }, "ReductionFactor must be at least 1"},
		{"activation", func(c *Config) { c.Activation = "softplus" }, `Activation "softplus": unknown adapter activation (want gelu, relu, silu, swish, tanh)`},
		{"init", func(c *Config) { c.Init = "xavier" }, `Init "xavier": unknown adapter initialisation (want bert, mam_adapter or houlsby)`},
		{"scaling", func(c *Config) { c.Scaling = math.NaN() }, "Scaling must be a non-zero number"},
		{"layer range", func(c *Config) { c.Layers = []int{0, 2} }, "Layers names layer 2, which does not exist: the model has 2 layers (0..1)"},
		{"negative layer", func(c *Config) { c.Layers = []int{-1} }, "layer -1, which does not exist"},
		{"duplicate layer", func(c *Config) { c.Layers = []int{1, 1} }, "Layers lists layer 1 twice"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := methodtest.Tiny(t, hfconfig.ArchLlama, 1)
			c := ok
			tc.edit(&c)
			_, err := Apply(m, c)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			fieldpaths.RequireFieldError(t, err, Config{})
			for l := 0; l < m.NumLayers(); l++ {
				if m.Hook(l, model.SiteAttn) != nil || m.Hook(l, model.SiteMLP) != nil {
					t.Errorf("layer %d has a hook after a failed Apply", l)
				}
			}
		})
	}
}

// TestConfigFileMatchesReference writes adapter_config.json for the
// golden sets' configurations and compares it byte for byte with the
// reference folders' (written by the Python generator).
func TestConfigFileMatchesReference(t *testing.T) {
	for _, set := range methodtest.Sets(t, methodtest.Root, "adapter") {
		t.Run(set.Meta.Name, func(t *testing.T) {
			cfg, err := ReadConfig(set.AdapterDir())
			if err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(set.BaseDir(), cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			cfg.BottleneckSize = 0 // derived from the reduction factor again
			a, err := Apply(m, cfg)
			if err != nil {
				t.Fatal(err)
			}
			methodtest.CheckConfigFile(t, set, a.PeftConfig())
		})
	}
}

// TestLoadErrors checks that broken adapter folders are rejected with a
// message naming the problem, leaving the model as it was.
func TestLoadErrors(t *testing.T) {
	src := methodtest.Sets(t, methodtest.Root, "adapter")[0]
	if src.Meta.Name != "adapter-houlsby" {
		t.Fatalf("first adapter set is %s", src.Meta.Name)
	}
	cfgBytes, err := os.ReadFile(filepath.Join(src.AdapterDir(), peft.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	w, err := peft.ReadWeights(src.AdapterDir())
	if err != nil {
		t.Fatal(err)
	}
	type tensors map[string]peft.Tensor
	all := func() tensors {
		out := tensors{}
		for _, n := range w.Names() {
			data, _ := w.Take(n, shapeOf(t, src, n)...)
			out[n] = peft.Tensor{Shape: shapeOf(t, src, n), Data: data}
		}
		return out
	}
	const down0 = "base_model.model.model.layers.0.attn_adapter.down_proj.weight"
	tests := []struct {
		name   string
		config string
		edit   func(ts tensors)
		want   string
	}{
		{"missing tensor", "", func(ts tensors) { delete(ts, down0) }, `tensor "` + down0 + `" is missing`},
		{"wrong shape", "", func(ts tensors) { ts[down0] = peft.Tensor{Shape: []int{8, 31}, Data: make([]float32, 8*31)} }, "has shape [8 31], expected [8 32]"},
		{"extra tensor", "", func(ts tensors) {
			ts["base_model.model.model.layers.5.mlp_adapter.up_proj.bias"] = peft.Tensor{Shape: []int{2}, Data: []float32{1, 2}}
		}, "unexpected tensor(s)"},
		{"peft type", strings.Replace(string(cfgBytes), `"BOTTLENECK"`, `"LORA"`, 1), nil, `peft_type is "LORA", expected "BOTTLENECK"`},
		{"variant", strings.Replace(string(cfgBytes), `"houlsby"`, `"sequential"`, 1), nil, `Variant "sequential": unknown adapter variant`},
		{"layer", strings.Replace(string(cfgBytes), `"target_layers": null`, `"target_layers": [7]`, 1), nil, "Layers names layer 7, which does not exist"},
		{"bottleneck", strings.Replace(string(cfgBytes), `"bottleneck_size": 8`, `"bottleneck_size": 0`, 1), nil, "bottleneck_size must be positive"},
		{"structure", strings.Replace(string(cfgBytes), `"mh_adapter": true`, `"mh_adapter": false`, 1), nil, `mh_adapter is false, but adapter_variant "houlsby" means true`},
		{"adapterhub name", strings.Replace(string(cfgBytes), `"double_seq_bn"`, `"seq_bn"`, 1), nil, `adapterhub_config is "seq_bn", but adapter_variant "houlsby" means "double_seq_bn"`},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			cfg := string(cfgBytes)
			if tc.config != "" {
				cfg = tc.config
			}
			if err := os.WriteFile(filepath.Join(dir, peft.ConfigFile), []byte(cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			ts := all()
			if tc.edit != nil {
				tc.edit(ts)
			}
			var list []safetensors.Tensor
			for n, x := range ts {
				list = append(list, safetensors.Tensor{Name: n, DType: safetensors.F32, Shape: x.Shape, F32: x.Data})
			}
			if err := safetensors.Write(filepath.Join(dir, peft.WeightsFile), list, nil); err != nil {
				t.Fatal(err)
			}
			m, err := model.Load(src.BaseDir(), cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			_, err = Load(m, dir, LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			for l := 0; l < m.NumLayers(); l++ {
				if m.Hook(l, model.SiteAttn) != nil || m.Hook(l, model.SiteMLP) != nil {
					t.Errorf("layer %d has a hook after a failed Load", l)
				}
			}
			for _, p := range m.Params() {
				if !p.Trainable {
					t.Errorf("%s was frozen by a failed Load", p.Name)
					break
				}
			}
		})
	}
}

// shapeOf returns a tensor's shape from the set's meta.json.
func shapeOf(t *testing.T, set *golden.MethodSet, name string) []int {
	for _, p := range set.Meta.Run.Trainable {
		if p.Name == name {
			return p.Shape
		}
	}
	t.Fatalf("%s: no tensor %s", set.Meta.Name, name)
	return nil
}

// TestInitialisations checks AdapterHub's init_weights: bert draws both
// weights from N(0, 0.02²), houlsby from N(0, 0.01²) cut at ±0.02,
// mam_adapter draws the down-projection from U(±1/sqrt(hidden)) and zeroes
// the up-projection; biases start at zero. Each variant's default is
// AdapterHub's.
func TestInitialisations(t *testing.T) {
	for _, tc := range []struct {
		init           Init
		downStd, upStd float64
		bound          float64 // largest |w| allowed; 0: none
		downBound      float64
	}{
		{InitBert, 0.02, 0.02, 0, 0},
		{InitHoulsby, 0.0088, 0.0088, 0.02, 0.02}, // std of N(0, 0.01²) truncated at 2σ
		{InitMAM, 1 / math.Sqrt(3*16), 0, 0, 1 / math.Sqrt(16)},
	} {
		t.Run(string(tc.init), func(t *testing.T) {
			m := methodtest.Tiny(t, hfconfig.ArchLlama, 1)
			a, err := Apply(m, Config{Variant: Houlsby, BottleneckSize: 16, Init: tc.init, Seed: 3})
			require.NoError(t, err)
			require.Equal(t, 16, m.Config().Hidden, "the test assumes the tiny model's width")
			var down, up []float32
			for _, mod := range a.Modules() {
				down = append(down, m.Backend().Download(mod.DownW.W)...)
				up = append(up, m.Backend().Download(mod.UpW.W)...)
				for _, p := range []*engine.Param{mod.DownB, mod.UpB} {
					for _, v := range m.Backend().Download(p.W) {
						require.Zero(t, v, "%s starts non-zero", p.Name)
					}
				}
			}
			assert.InDelta(t, tc.downStd, stdDev(down), 0.1*tc.downStd+1e-9, "down-projection std")
			assert.InDelta(t, tc.upStd, stdDev(up), 0.1*tc.upStd+1e-9, "up-projection std")
			for _, lim := range []struct {
				vals  []float32
				bound float64
			}{{down, tc.downBound}, {up, tc.bound}} {
				for _, v := range lim.vals {
					if lim.bound > 0 && math.Abs(float64(v)) > lim.bound {
						t.Fatalf("weight %g beyond ±%g", v, lim.bound)
					}
				}
			}
		})
	}
	for v, want := range map[Variant]Config{
		Houlsby:        {Variant: Houlsby, ReductionFactor: 16, Activation: "swish", Scaling: 1, Init: InitBert},
		Pfeiffer:       {Variant: Pfeiffer, ReductionFactor: 16, Activation: "relu", Scaling: 1, Init: InitBert},
		Parallel:       {Variant: Parallel, ReductionFactor: 2, Activation: "relu", Scaling: 4, Init: InitMAM},
		Series:         {Variant: Series, ReductionFactor: 16, Activation: "relu", Scaling: 1, Init: InitMAM},
		ParallelNormed: {Variant: ParallelNormed, ReductionFactor: 16, Activation: "relu", Scaling: 1, Init: InitMAM},
	} {
		assert.Equal(t, want, Config{Variant: v}.WithDefaults(), "defaults of %s", v)
	}
}

// stdDev returns the root mean square of v.
func stdDev(v []float32) float64 {
	s := 0.0
	for _, x := range v {
		s += float64(x) * float64(x)
	}
	return math.Sqrt(s / float64(len(v)))
}

// TestFormerFolders checks that a folder written before adapter_input was
// recorded keeps computing what it was trained as: its "pfeiffer" is
// read as Series and its "parallel" as ParallelNormed.
func TestFormerFolders(t *testing.T) {
	for _, tc := range []struct {
		file string
		want Variant
	}{{"pfeiffer", Series}, {"parallel", ParallelNormed}, {"houlsby", Houlsby}} {
		dir := t.TempDir()
		cfg := `{"adapter_variant": "` + tc.file + `", "base_model_name_or_path": null, "bottleneck_size": 4,
  "inference_mode": true, "non_linearity": "relu", "peft_type": "BOTTLENECK", "reduction_factor": 16,
  "scaling": 1.0, "target_layers": null, "task_type": "CAUSAL_LM"}`
		require.NoError(t, os.WriteFile(filepath.Join(dir, peft.ConfigFile), []byte(cfg), 0o644))
		c, err := ReadConfig(dir)
		require.NoError(t, err)
		assert.Equal(t, tc.want, c.Variant, "former %q", tc.file)
	}
}
