package lora

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/internal/methodtest"
	"github.com/gotune/gotune/methods/peft"
)

// methodConfig is a LoRA run's method_config in meta.json.
type methodConfig struct {
	R       int     `json:"lora_r"`
	Alpha   float64 `json:"lora_alpha"`
	Dropout float64 `json:"lora_dropout"`
	Targets string  `json:"lora_targets"`
	RSLoRA  bool    `json:"use_rslora"`
	DoRA    bool    `json:"use_dora"`
}

func decodeConfig(t *testing.T, s *golden.MethodSet) methodConfig {
	t.Helper()
	var mc methodConfig
	if err := json.Unmarshal(s.Meta.Run.MethodConfig, &mc); err != nil {
		t.Fatalf("%s: method_config: %v", s.Dir, err)
	}
	return mc
}

// TestGolden loads each golden run's initial PEFT adapter folder with
// Load and checks the configuration it read and the modules it wraps,
// then runs methodtest.Check: logits, loss and every gradient at the
// initial adapter, 3 steps with the run's hyper-parameters (per-step
// metrics, trained tensors, base weights unchanged), the saved folder,
// and that it loads back for inference.
func TestGolden(t *testing.T) {
	for _, s := range methodtest.Sets(t, methodtest.Root, "lora") {
		t.Run(s.Meta.Name, func(t *testing.T) {
			methodtest.Check(t, s,
				func(m model.Model, s *golden.MethodSet) (train.Saver, error) {
					a, err := Load(m, s.AdapterDir(), LoadOptions{})
					if err != nil {
						return nil, err
					}
					checkLoaded(t, s, a)
					return a, nil
				},
				func(m model.Model, dir string) error {
					_, err := Load(m, dir, LoadOptions{Frozen: true})
					return err
				})
		})
	}
}

// checkLoaded checks the configuration a loaded golden adapter reports
// and that it wraps the same modules as the run's flags would select.
func checkLoaded(t *testing.T, s *golden.MethodSet, a *Adapter) {
	t.Helper()
	mc := decodeConfig(t, s)
	c := a.Config()
	if c.R != mc.R || c.Alpha != mc.Alpha || c.RSLoRA != mc.RSLoRA || c.DoRA != mc.DoRA || c.Dropout != mc.Dropout {
		t.Errorf("loaded config %+v, the run's %+v", c, mc)
	}
	flagCfg := Config{R: mc.R, Alpha: mc.Alpha, Targets: ParseTargets(mc.Targets)}
	be := cpu.New()
	defer be.Close()
	fresh, err := model.Load(s.BaseDir(), be)
	if err != nil {
		t.Fatal(err)
	}
	wantPaths, err := TargetPaths(fresh, flagCfg)
	if err != nil {
		t.Fatal(err)
	}
	var gotPaths []string
	for _, l := range a.Layers() {
		gotPaths = append(gotPaths, l.Path)
	}
	if !slices.Equal(gotPaths, wantPaths) {
		t.Errorf("adapter wraps %v, --lora-targets %s selects %v", gotPaths, mc.Targets, wantPaths)
	}
}

// TestPeftFormat applies LoRA with each golden run's options (as the
// flags give them) and saves it: adapter_config.json must equal the one
// PEFT would write for that model and configuration (the golden folder's,
// byte for byte apart from base_model_name_or_path), and
// adapter_model.safetensors must hold the same tensor names, shapes and
// dtypes.
func TestPeftFormat(t *testing.T) {
	for _, s := range methodtest.Sets(t, methodtest.Root, "lora") {
		t.Run(s.Meta.Name, func(t *testing.T) {
			be := cpu.New()
			m, err := model.Load(s.BaseDir(), be)
			if err != nil {
				t.Fatal(err)
			}
			mc := decodeConfig(t, s)
			wantRaw, err := os.ReadFile(filepath.Join(s.AdapterDir(), peft.ConfigFile))
			if err != nil {
				t.Fatal(err)
			}
			var wantCfg map[string]any
			if err := json.Unmarshal(wantRaw, &wantCfg); err != nil {
				t.Fatal(err)
			}
			base, _ := wantCfg["base_model_name_or_path"].(string)
			a, err := Apply(m, Config{R: mc.R, Alpha: mc.Alpha, Dropout: mc.Dropout, Targets: ParseTargets(mc.Targets),
				RSLoRA: mc.RSLoRA, DoRA: mc.DoRA, Seed: 1, BaseModel: base})
			if err != nil {
				t.Fatal(err)
			}
			dir := t.TempDir()
			if err := a.Save(dir); err != nil {
				t.Fatal(err)
			}
			gotRaw, err := os.ReadFile(filepath.Join(dir, peft.ConfigFile))
			if err != nil {
				t.Fatal(err)
			}
			if string(gotRaw) != string(wantRaw) {
				t.Errorf("adapter_config.json differs from PEFT's:\n%s\nwant\n%s", gotRaw, wantRaw)
			}
			got := headerOf(t, filepath.Join(dir, peft.WeightsFile))
			want := headerOf(t, filepath.Join(s.AdapterDir(), peft.WeightsFile))
			if !slices.Equal(got, want) {
				t.Errorf("adapter_model.safetensors tensors\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
			}
		})
	}
}

// headerOf lists a safetensors file's tensors as "name dtype shape".
func headerOf(t *testing.T, path string) []string {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var out []string
	for _, n := range f.Names() {
		info, _ := f.Info(n)
		out = append(out, fmt.Sprintf("%s %s %v", n, info.DType, info.Shape))
	}
	slices.Sort(out)
	return out
}
