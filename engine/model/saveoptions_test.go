package model

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/safetensors"
)

// roundTo returns v as dtype stores it, through the safetensors package's
// conversions (themselves checked against torch's rounding).
func roundTo(v []float32, dtype string) []float32 {
	out := make([]float32, len(v))
	for i, x := range v {
		switch dtype {
		case safetensors.BF16:
			out[i] = safetensors.BF16ToF32(safetensors.F32ToBF16(x))
		case safetensors.F16:
			out[i] = safetensors.F16ToF32(safetensors.F32ToF16(x))
		default:
			out[i] = x
		}
	}
	return out
}

// TestSaveDTypes saves a random model with each dtype choice, checks the
// stored dtypes, config.json's torch_dtype, and that the reloaded weights
// are the originals rounded to that dtype, bit for bit.
func TestSaveDTypes(t *testing.T) {
	tests := []struct {
		torchDtype, opt string
		want            string
	}{
		{"float32", "", "F32"},
		{"bfloat16", "", "BF16"},
		{"float16", "", "F16"},
		{"", "", "F32"}, // no torch_dtype: float32, as transformers assumes
		{"float32", "BF16", "BF16"},
		{"bfloat16", "f32", "F32"},
		{"bfloat16", "F16", "F16"},
		{"float16", "bf16", "BF16"},
	}
	for _, tc := range tests {
		t.Run(tc.torchDtype+"/"+tc.opt, func(t *testing.T) {
			cfg := tinyConfig(t, hfconfig.ArchLlama)
			cfg.TorchDtype = tc.torchDtype
			m, err := New(cfg, cpu.New(), 5)
			if err != nil {
				t.Fatal(err)
			}
			scramble(m, 3, 0.3)
			dir := tempDir(t, "m")
			if err := m.SaveWithOptions(dir, SaveOptions{DType: tc.opt}); err != nil {
				t.Fatal(err)
			}
			f, err := safetensors.Open(filepath.Join(dir, safetensors.SingleFile))
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range f.Names() {
				if info, _ := f.Info(n); info.DType != tc.want {
					t.Errorf("%s stored as %s, want %s", n, info.DType, tc.want)
				}
			}
			f.Close()
			back, err := Load(dir, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			if got, want := back.Config().TorchDtype, torchNames[tc.want]; got != want {
				t.Errorf("config.json torch_dtype %q, want %q", got, want)
			}
			for i, p := range m.BaseParams() {
				want := roundTo(cpu.Float32s(p.W), tc.want)
				if !equalBits(cpu.Float32s(back.BaseParams()[i].W), want) {
					t.Errorf("%s: reloaded values are not the originals rounded to %s", p.Name, tc.want)
				}
			}
			// Saving the reloaded model again (default options: its new
			// torch_dtype) writes the same bytes: the rounding is stable.
			dir2 := tempDir(t, "again")
			if err := back.Save(dir2); err != nil {
				t.Fatal(err)
			}
			for _, name := range []string{safetensors.SingleFile, hfconfig.FileName} {
				a, _ := os.ReadFile(filepath.Join(dir, name))
				b, _ := os.ReadFile(filepath.Join(dir2, name))
				if !bytes.Equal(a, b) {
					t.Errorf("%s differs when saved again", name)
				}
			}
		})
	}
}

// TestSaveDemoIsIdentical loads the shipped BF16 demo model (written by its
// own BF16 writer in internal/demo/pretrain) and saves it with the default
// options: both files must come out byte for byte as shipped.
func TestSaveDemoIsIdentical(t *testing.T) {
	src := "../../testdata/demo"
	m, err := Load(src, cpu.New())
	if err != nil {
		t.Fatal(err)
	}
	dir := tempDir(t, "demo")
	if err := m.Save(dir); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{safetensors.SingleFile, hfconfig.FileName} {
		a, err := os.ReadFile(filepath.Join(src, name))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(filepath.Join(dir, name))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: saved copy of the BF16 demo differs from the original", name)
		}
	}
}

// TestSaveSharded forces small shards: the folder holds an index and
// several shards that reload to the same weights and logits, and saving
// unsharded into the same folder afterwards removes them.
func TestSaveSharded(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		t.Run(arch, func(t *testing.T) {
			m := newTiny(t, arch, 4)
			scramble(m, 9, 0.3)
			cfg := m.Config()
			ids := seqs(2, 7, cfg.VocabSize, 3)
			want := logitsCopy(t, m, nil, flat(ids), 2, 7, true)
			dir := tempDir(t, "m")
			if err := m.SaveWithOptions(dir, SaveOptions{MaxShardBytes: 2000}); err != nil {
				t.Fatal(err)
			}
			var shards []string
			entries, _ := os.ReadDir(dir)
			for _, e := range entries {
				if strings.HasPrefix(e.Name(), "model-") {
					shards = append(shards, e.Name())
				}
			}
			if len(shards) < 3 {
				t.Fatalf("%d shards (%v), want several", len(shards), shards)
			}
			if _, err := os.Stat(filepath.Join(dir, safetensors.IndexFile)); err != nil {
				t.Fatal(err)
			}
			if _, err := os.Stat(filepath.Join(dir, safetensors.SingleFile)); err == nil {
				t.Error("model.safetensors written as well as shards")
			}
			back, err := Load(dir, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			if got := logitsCopy(t, back, nil, flat(ids), 2, 7, true); !equalBits(got, want) {
				t.Error("logits of the sharded checkpoint differ")
			}
			if err := back.Save(dir); err != nil {
				t.Fatal(err)
			}
			entries, _ = os.ReadDir(dir)
			var names []string
			for _, e := range entries {
				names = append(names, e.Name())
			}
			if !slices.Equal(names, []string{hfconfig.FileName, safetensors.SingleFile}) {
				t.Errorf("after an unsharded save the folder holds %v", names)
			}
			again, err := Load(dir, cpu.New())
			if err != nil {
				t.Fatal(err)
			}
			if got := logitsCopy(t, again, nil, flat(ids), 2, 7, true); !equalBits(got, want) {
				t.Error("logits after re-saving unsharded differ")
			}
		})
	}
}

// TestSaveOptionErrors checks bad options and values too large for the
// stored dtype, which must fail before anything is written.
func TestSaveOptionErrors(t *testing.T) {
	tests := []struct {
		name  string
		opts  SaveOptions
		value float32 // written into model.norm.weight[0] when non-zero
		want  string  // "" = saves fine
	}{
		{"F64", SaveOptions{DType: "F64"}, 0, `unsupported save dtype "F64"`},
		{"negative shard size", SaveOptions{MaxShardBytes: -1}, 0, "must be positive"},
		{"F16 overflow", SaveOptions{DType: "F16"}, 65520, `"model.norm.weight": element 0 = 65520 is too large for F16`},
		{"F16 negative overflow", SaveOptions{DType: "F16"}, -1e6, "too large for F16"},
		{"F16 largest", SaveOptions{DType: "F16"}, 65519, ""}, // rounds down to 65504
		{"BF16 holds it", SaveOptions{DType: "BF16"}, 1e6, ""},
		{"BF16 overflow", SaveOptions{DType: "BF16"}, 3.3962e38, "too large for BF16"},
		{"BF16 largest", SaveOptions{DType: "BF16"}, 3.3961e38, ""}, // rounds down to 0x7f7f
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			m := newTiny(t, hfconfig.ArchLlama, 2)
			if tc.value != 0 {
				p, _ := m.Param("model.norm.weight")
				host := cpu.Float32s(p.W)
				host[0] = tc.value
				m.Backend().Upload(p.W, host)
			}
			dir := tempDir(t, "m")
			err := m.SaveWithOptions(dir, tc.opts)
			if tc.want == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want %q", err, tc.want)
			}
			if _, err := os.Stat(filepath.Join(dir, safetensors.SingleFile)); err == nil {
				t.Error("weights written despite the error")
			}
		})
	}
}
