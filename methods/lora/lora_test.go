package lora

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/internal/methodtest"
	"github.com/gotune/gotune/methods/peft"
)

func tinyModel(t testing.TB, arch string, seed uint64) model.Model {
	t.Helper()
	return methodtest.NewModel(t, arch, hfconfig.Sizes{VocabSize: 31, Hidden: 16, Layers: 2, Heads: 4, KVHeads: 2, Intermediate: 24, MaxPos: 32}, seed)
}

// randomize gives every adapter tensor random values (B non-zero, DoRA
// magnitudes away from the norms), so that the update matters.
func randomize(a *Adapter, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 9))
	for _, p := range a.Params() {
		host := make([]float32, p.W.Len())
		for i := range host {
			host[i] = float32(rng.NormFloat64() * 0.3)
			if strings.HasSuffix(p.Name, leafM) {
				host[i] = float32(1 + rng.Float64())
			}
		}
		p.W.Backend().Upload(p.W, host)
	}
	for _, l := range a.layers {
		l.Changed()
	}
}

var testIDs = []int32{1, 5, 9, 2, 30, 7, 3, 3, 11, 4, 0, 17}

func logitsOf(t *testing.T, m model.Model) []float32 {
	t.Helper()
	lg, err := m.Logits(nil, testIDs, 2, 6, true)
	if err != nil {
		t.Fatal(err)
	}
	return m.Backend().Download(lg)
}

// TestMergeEquivalence checks that merging gives the logits of the
// unmerged adapter (LoRA and DoRA, torch and Conv1D layouts), that
// unmerging restores the base weights, and that a merged model saved and
// loaded back computes the same.
func TestMergeEquivalence(t *testing.T) {
	for _, tc := range []struct {
		arch    string
		targets []string
		dora    bool
	}{
		{hfconfig.ArchLlama, []string{AllLinear}, false},
		{hfconfig.ArchLlama, []string{"q_proj", "down_proj"}, true},
		{hfconfig.ArchQwen2, []string{"k_proj", "v_proj", "up_proj"}, true},
		{hfconfig.ArchGPT2, []string{AllLinear}, false},
		{hfconfig.ArchGPT2, []string{"c_attn", "c_proj"}, true},
	} {
		name := tc.arch + "/" + strings.Join(tc.targets, ",")
		if tc.dora {
			name += "/dora"
		}
		t.Run(name, func(t *testing.T) {
			m := tinyModel(t, tc.arch, 3)
			plain := logitsOf(t, m)
			base := map[string][]float32{}
			for _, p := range m.BaseParams() {
				base[p.Name] = m.Backend().Download(p.W)
			}
			a, err := Apply(m, Config{R: 3, Alpha: 6, Targets: tc.targets, DoRA: tc.dora, Seed: 5})
			if err != nil {
				t.Fatal(err)
			}
			// Freshly initialised, the adapter is the identity (B = 0,
			// DoRA magnitude = the norms).
			if e := golden.RelErr(logitsOf(t, m), plain); e > 1e-6 {
				t.Errorf("fresh adapter changes the logits: rel err %.3g", e)
			}
			randomize(a, 8)
			unmerged := logitsOf(t, m)
			if golden.RelErr(unmerged, plain) < 1e-3 {
				t.Fatalf("the random adapter does not change the logits")
			}
			if err := a.Merge(); err != nil {
				t.Fatal(err)
			}
			if e := golden.RelErr(logitsOf(t, m), unmerged); e > 1e-5 {
				t.Errorf("merged logits: rel err %.3g against the unmerged adapter", e)
			}
			if err := a.Unmerge(); err != nil {
				t.Fatal(err)
			}
			if e := golden.RelErr(logitsOf(t, m), unmerged); e > 1e-5 {
				t.Errorf("unmerged again: rel err %.3g", e)
			}
			for _, p := range m.BaseParams() {
				if e := golden.RelErr(m.Backend().Download(p.W), base[p.Name]); e > 1e-5 { // float32 rounding of W + Δ − Δ
					t.Errorf("%s after merge and unmerge: rel err %.3g", p.Name, e)
				}
			}
			if err := a.MergeAndRemove(); err != nil {
				t.Fatal(err)
			}
			for _, nm := range m.Modules() {
				if _, wrapped := nm.Module.(*Linear); wrapped {
					t.Fatalf("%s is still wrapped", nm.Name)
				}
			}
			dir := t.TempDir()
			if err := m.Save(dir); err != nil {
				t.Fatal(err)
			}
			back, err := model.Load(dir, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			if e := golden.RelErr(logitsOf(t, back), unmerged); e > 1e-5 {
				t.Errorf("saved merged model: rel err %.3g against the unmerged adapter", e)
			}
		})
	}
}

// TestSaveLoadRoundTrip saves a trained-looking adapter and loads it into
// a fresh model: same logits, same tensors, same configuration.
func TestSaveLoadRoundTrip(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		t.Run(arch, func(t *testing.T) {
			m := tinyModel(t, arch, 4)
			a, err := Apply(m, Config{R: 2, Alpha: 5, Targets: []string{AllLinear}, DoRA: true, RSLoRA: true, Dropout: 0.1, Init: InitGaussian, Seed: 1})
			if err != nil {
				t.Fatal(err)
			}
			randomize(a, 2)
			want := logitsOf(t, m)
			dir := t.TempDir()
			if err := a.Save(dir); err != nil {
				t.Fatal(err)
			}
			m2 := tinyModel(t, arch, 4)
			b, err := Load(m2, dir, LoadOptions{Frozen: true})
			if err != nil {
				t.Fatal(err)
			}
			if got := b.Config(); got.R != 2 || got.Alpha != 5 || !got.DoRA || !got.RSLoRA || got.Dropout != 0.1 || got.Init != InitGaussian {
				t.Errorf("loaded config %+v", got)
			}
			if e := golden.RelErr(logitsOf(t, m2), want); e != 0 {
				t.Errorf("logits after reload: rel err %.3g", e)
			}
			for _, p := range b.Params() {
				if p.Trainable {
					t.Errorf("%s trainable after a Frozen load", p.Name)
				}
			}
			raw, _ := os.ReadFile(filepath.Join(dir, peft.ConfigFile))
			var cfg map[string]any
			if err := json.Unmarshal(raw, &cfg); err != nil {
				t.Fatal(err)
			}
			if cfg["init_lora_weights"] != "gaussian" || cfg["fan_in_fan_out"] != (arch == hfconfig.ArchGPT2) {
				t.Errorf("config: init_lora_weights %v, fan_in_fan_out %v", cfg["init_lora_weights"], cfg["fan_in_fan_out"])
			}
		})
	}
}

// TestInit checks PEFT's initialisations: B zero, A within kaiming's
// bound 1/sqrt(in) (and spread over it) or with gaussian's std 1/r, DoRA
// magnitudes equal to the row norms of W₀.
func TestInit(t *testing.T) {
	m := tinyModel(t, hfconfig.ArchLlama, 1)
	a, err := Apply(m, Config{R: 4, Alpha: 8, Targets: []string{"q_proj"}, DoRA: true, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	be := m.Backend()
	l := a.Layers()[0]
	bound := 1 / 4.0 // in = 16
	var maxAbs float64
	for _, v := range be.Download(l.A.W) {
		maxAbs = max(maxAbs, float64(abs32(v)))
	}
	if maxAbs > bound || maxAbs < 0.8*bound {
		t.Errorf("kaiming A: max |a| %.4f, bound %.4f", maxAbs, bound)
	}
	for _, v := range be.Download(l.B.W) {
		if v != 0 {
			t.Fatalf("B is not zero")
		}
	}
	w := be.Download(l.dense.Weight.W)
	mag := be.Download(l.M.W)
	for j := 0; j < l.out; j++ {
		var ss float64
		for i := 0; i < l.in; i++ {
			ss += float64(w[j*l.in+i]) * float64(w[j*l.in+i])
		}
		if d := float64(mag[j])*float64(mag[j]) - ss; d*d > 1e-10*ss*ss {
			t.Errorf("magnitude %d: %.6g, ‖W₀ row‖ %.6g", j, mag[j], ss)
		}
	}

	m = tinyModel(t, hfconfig.ArchLlama, 1)
	a, err = Apply(m, Config{R: 4, Alpha: 8, Targets: []string{AllLinear}, Init: InitGaussian, Seed: 2})
	if err != nil {
		t.Fatal(err)
	}
	var s2 float64
	n := 0
	for _, l := range a.Layers() {
		for _, v := range be.Download(l.A.W) {
			s2 += float64(v) * float64(v)
			n++
		}
	}
	if std := s2 / float64(n); std < 0.25*0.25*0.8 || std > 0.25*0.25*1.2 { // variance 1/r² = 1/16
		t.Errorf("gaussian A: variance %.4f over %d values, want 1/r² = 0.0625", std, n)
	}
}

func abs32(v float32) float32 {
	if v < 0 {
		return -v
	}
	return v
}

// TestLoadErrors breaks an adapter folder in each way a user can and
// checks that Load says what is wrong, naming the tensor or key, and
// leaves the model as it was.
func TestLoadErrors(t *testing.T) {
	m0 := tinyModel(t, hfconfig.ArchLlama, 6)
	a, err := Apply(m0, Config{R: 2, Alpha: 4, Targets: []string{"q_proj", "v_proj"}, DoRA: true, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	good := t.TempDir()
	if err := a.Save(good); err != nil {
		t.Fatal(err)
	}
	qA := key("model.layers.0.self_attn.q_proj", leafA)
	vM := key("model.layers.1.self_attn.v_proj", leafM)
	editConfig := func(dir string, f func(map[string]any)) {
		raw, _ := os.ReadFile(filepath.Join(good, peft.ConfigFile))
		var c map[string]any
		json.Unmarshal(raw, &c)
		f(c)
		out, _ := json.Marshal(c)
		os.WriteFile(filepath.Join(dir, peft.ConfigFile), out, 0o644)
	}
	editWeights := func(dir string, f func([]safetensors.Tensor) []safetensors.Tensor) {
		file, err := safetensors.Open(filepath.Join(good, peft.WeightsFile))
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		var ts []safetensors.Tensor
		for _, n := range file.Names() {
			d, sh, _ := file.Float32(n)
			ts = append(ts, safetensors.Tensor{Name: n, DType: "F32", Shape: sh, F32: d})
		}
		if err := safetensors.Write(filepath.Join(dir, peft.WeightsFile), f(ts), nil); err != nil {
			t.Fatal(err)
		}
	}
	copyFile := func(dir, name string) {
		raw, _ := os.ReadFile(filepath.Join(good, name))
		os.WriteFile(filepath.Join(dir, name), raw, 0o644)
	}
	for _, tc := range []struct {
		name  string
		setup func(dir string)
		want  string
	}{
		{"no config", func(dir string) { copyFile(dir, peft.WeightsFile) }, "adapter_config.json is missing"},
		{"no weights", func(dir string) { copyFile(dir, peft.ConfigFile) }, "adapter_model.safetensors are missing"},
		{"other method", func(dir string) {
			editConfig(dir, func(c map[string]any) { c["peft_type"] = "PREFIX_TUNING" })
			copyFile(dir, peft.WeightsFile)
		}, `peft_type is "PREFIX_TUNING", expected "LORA"`},
		{"unknown target", func(dir string) {
			editConfig(dir, func(c map[string]any) { c["target_modules"] = []string{"q_proj", "qkv_proj"} })
			copyFile(dir, peft.WeightsFile)
		}, `target module(s) "qkv_proj" match no module`},
		{"target not linear", func(dir string) {
			editConfig(dir, func(c map[string]any) { c["target_modules"] = []string{"input_layernorm"} })
			copyFile(dir, peft.WeightsFile)
		}, "LoRA wraps linear layers only"},
		{"wrong rank", func(dir string) {
			editConfig(dir, func(c map[string]any) { c["r"] = 3 })
			copyFile(dir, peft.WeightsFile)
		}, `tensor "` + qA + `" has shape [2 16], expected [3 16]`},
		{"bad r", func(dir string) {
			editConfig(dir, func(c map[string]any) { c["r"] = 0 })
			copyFile(dir, peft.WeightsFile)
		}, "must be at least 1"},
		{"unsupported rank_pattern", func(dir string) {
			editConfig(dir, func(c map[string]any) { c["rank_pattern"] = map[string]int{"q_proj": 4} })
			copyFile(dir, peft.WeightsFile)
		}, "rank_pattern"},
		{"wrong type", func(dir string) {
			editConfig(dir, func(c map[string]any) { c["lora_alpha"] = "four" })
			copyFile(dir, peft.WeightsFile)
		}, `key "lora_alpha"`},
		{"missing tensor", func(dir string) {
			copyFile(dir, peft.ConfigFile)
			editWeights(dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				var out []safetensors.Tensor
				for _, x := range ts {
					if x.Name != vM {
						out = append(out, x)
					}
				}
				return out
			})
		}, `tensor "` + vM + `" is missing`},
		{"extra tensor", func(dir string) {
			copyFile(dir, peft.ConfigFile)
			editWeights(dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				return append(ts, safetensors.Tensor{Name: key("model.layers.0.mlp.up_proj", leafA), DType: "F32", Shape: []int{2, 16}, F32: make([]float32, 32)})
			})
		}, `unexpected tensor(s) "base_model.model.model.layers.0.mlp.up_proj.lora_A.weight"`},
		{"transposed tensor", func(dir string) {
			copyFile(dir, peft.ConfigFile)
			editWeights(dir, func(ts []safetensors.Tensor) []safetensors.Tensor {
				for i := range ts {
					if ts[i].Name == qA {
						ts[i].Shape = []int{16, 2}
					}
				}
				return ts
			})
		}, `tensor "` + qA + `" has shape [16 2], expected [2 16]`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			tc.setup(dir)
			m := tinyModel(t, hfconfig.ArchLlama, 6)
			want := logitsOf(t, m)
			_, err := Load(m, dir, LoadOptions{})
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			for _, nm := range m.Modules() {
				if _, wrapped := nm.Module.(*Linear); wrapped {
					t.Errorf("%s left wrapped after a failed load", nm.Name)
				}
			}
			for _, p := range m.Params() {
				if !p.Trainable {
					t.Errorf("%s left frozen after a failed load", p.Name)
				}
			}
			if e := golden.RelErr(logitsOf(t, m), want); e != 0 {
				t.Errorf("logits changed by a failed load")
			}
		})
	}
	// The unmodified folder loads (the cases above fail for their reason).
	if _, err := Load(tinyModel(t, hfconfig.ArchLlama, 6), good, LoadOptions{}); err != nil {
		t.Fatal(err)
	}
}

// TestApplyErrors covers bad options.
func TestApplyErrors(t *testing.T) {
	for _, tc := range []struct {
		arch string
		cfg  Config
		want string
	}{
		{hfconfig.ArchLlama, Config{R: 0, Alpha: 1, Targets: []string{"q_proj"}}, "R must be at least 1"},
		{hfconfig.ArchLlama, Config{R: 2, Alpha: 1, Dropout: 1, Targets: []string{"q_proj"}}, "Dropout must be in [0, 1)"},
		{hfconfig.ArchLlama, Config{R: 2, Alpha: 1, Targets: []string{"c_attn"}}, `target module(s) "c_attn" match no module of this LlamaForCausalLM model (its linear layers: down_proj, gate_proj, k_proj, o_proj, q_proj, up_proj, v_proj)`},
		{hfconfig.ArchGPT2, Config{R: 2, Alpha: 1, Targets: []string{"q_proj", "c_fc"}}, `"q_proj" match no module`},
		{hfconfig.ArchLlama, Config{R: 2, Alpha: 1, Targets: []string{AllLinear, "q_proj"}}, "cannot be combined"},
		{hfconfig.ArchLlama, Config{R: 2, Alpha: 1, Targets: []string{"q_proj"}, Init: "orthogonal"}, "Init must be kaiming or gaussian"},
		{hfconfig.ArchLlama, Config{R: 2, Alpha: 1, Targets: []string{"embed_tokens"}}, "LoRA wraps linear layers only"},
	} {
		if _, err := Apply(tinyModel(t, tc.arch, 1), tc.cfg); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: error %v, want one containing %q", tc.cfg, err, tc.want)
		}
	}
	m := tinyModel(t, hfconfig.ArchLlama, 1)
	if _, err := Apply(m, Config{R: 2, Alpha: 1, Targets: []string{"q_proj"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := Apply(m, Config{R: 2, Alpha: 1, Targets: []string{"q_proj"}}); err == nil || !strings.Contains(err.Error(), "already has a LoRA adapter") {
		t.Errorf("second adapter on q_proj: %v", err)
	}
}

// TestParamSummaryCounts checks the numbers the "trainable params" line
// reports against counts from the shapes: all parameters are the base
// model's plus the adapter's; trainable ones the adapter's alone.
func TestParamSummaryCounts(t *testing.T) {
	m := tinyModel(t, hfconfig.ArchQwen2, 1) // tied embeddings: counted once
	var baseN int
	for _, p := range m.BaseParams() {
		baseN += p.W.Len()
	}
	if _, err := Apply(m, Config{R: 2, Alpha: 4, Targets: []string{"q_proj", "down_proj"}, DoRA: true}); err != nil {
		t.Fatal(err)
	}
	// Per layer: q_proj 16→16: A 2·16, B 16·2, M 16; down_proj 24→16: A 2·24, B 16·2, M 16.
	wantTrainable := 2 * ((32 + 32 + 16) + (48 + 32 + 16))
	var tr, all int
	for _, p := range m.Params() {
		all += p.W.Len()
		if p.Trainable {
			tr += p.W.Len()
		}
	}
	if tr != wantTrainable || all != baseN+wantTrainable {
		t.Errorf("trainable %d, all %d; want %d and %d", tr, all, wantTrainable, baseN+wantTrainable)
	}
}
