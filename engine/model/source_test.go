package model

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/safetensors"
)

// savedTiny saves a scrambled tiny model of arch as dtype and returns the
// folder, the checkpoint's values by parameter name and the parameters'
// total float32 size in bytes.
func savedTiny(t *testing.T, arch, dtype string) (string, map[string][]float32, uint64) {
	t.Helper()
	m := newTiny(t, arch, 7)
	dir := filepath.Join(t.TempDir(), "ckpt")
	require.NoError(t, m.SaveWithOptions(dir, SaveOptions{DType: dtype}))
	set, err := safetensors.OpenDir(dir)
	require.NoError(t, err)
	defer set.Close()
	want := map[string][]float32{}
	var bytes uint64
	for _, p := range m.BaseParams() {
		name := p.Name
		if _, ok := set.Info(name); !ok && arch == hfconfig.ArchGPT2 {
			name = strings.TrimPrefix(name, "transformer.")
		}
		v, _, err := set.Float32(name)
		require.NoError(t, err, p.Name)
		want[p.Name] = v
		bytes += 4 * uint64(len(v))
	}
	return dir, want, bytes
}

// loadBF16 loads dir with bfloat16 storage on a fresh CPU backend.
func loadBF16(t *testing.T, dir string) (Model, *cpu.Backend) {
	t.Helper()
	be := cpu.New()
	m, err := LoadWithOptions(dir, be, Options{Storage: engine.BFloat16})
	require.NoError(t, err)
	return m, be
}

// notBF16 counts the values that bfloat16 cannot hold exactly, so that
// the exactness checks below could fail.
func notBF16(vs map[string][]float32) int {
	n := 0
	for _, v := range vs {
		for _, x := range v {
			if roundBF16(x) != x {
				n++
			}
		}
	}
	return n
}

// TestLoadBF16PeakBelowFloat32 loads a float32 checkpoint with bfloat16
// storage, freezes all but the last layer's MLP (a Freeze or adapter
// run) and applies the bf16 policy: the memory peak stays below the
// float32 size of the model, which the float32 load reaches.
func TestLoadBF16PeakBelowFloat32(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		t.Run(arch, func(t *testing.T) {
			dir, _, f32Bytes := savedTiny(t, arch, "F32")
			peak := func(opt Options) uint64 {
				be := cpu.New()
				m, err := LoadWithOptions(dir, be, opt)
				require.NoError(t, err)
				for _, p := range m.BaseParams() {
					SetTrainable(p, strings.Contains(p.Name, ".2.mlp."))
				}
				require.NoError(t, transformerOf(m).SetPrecision(engine.PrecisionBF16))
				return be.MemoryStats().Peak
			}
			bf16, f32 := peak(Options{Storage: engine.BFloat16}), peak(Options{})
			t.Logf("float32 model %d bytes; peak %d loading into bfloat16, %d into float32", f32Bytes, bf16, f32)
			assert.Less(t, bf16, f32Bytes)
			assert.GreaterOrEqual(t, f32, f32Bytes)
		})
	}
}

// TestLoadBF16MastersExact loads F32 and F16 checkpoints with bfloat16
// storage and applies the bf16 policy with every parameter trainable
// (full fine-tuning): the float32 masters are the checkpoint's values bit
// for bit, not up-cast bfloat16 copies; the fp32 policy restores every
// parameter exactly; BF16 checkpoints up-cast exactly.
func TestLoadBF16MastersExact(t *testing.T) {
	for _, arch := range []string{hfconfig.ArchLlama, hfconfig.ArchGPT2} {
		for _, dtype := range []string{"F32", "F16", "BF16"} {
			for _, prec := range []engine.Precision{engine.PrecisionBF16, engine.PrecisionFP32} {
				t.Run(arch+"/"+dtype+"/"+prec.String(), func(t *testing.T) {
					dir, want, _ := savedTiny(t, arch, dtype)
					if dtype != "BF16" {
						require.Positive(t, notBF16(want))
					}
					m, _ := loadBF16(t, dir)
					for _, p := range m.BaseParams() {
						require.Equal(t, engine.BFloat16, p.W.DType(), p.Name)
					}
					require.NoError(t, transformerOf(m).SetPrecision(prec))
					for _, p := range m.BaseParams() {
						require.Equal(t, engine.Float32, p.W.DType(), p.Name)
						assert.True(t, equalBits(cpu.Float32s(p.W), want[p.Name]), "%s: master differs from the checkpoint", p.Name)
					}
					assert.Nil(t, transformerOf(m).src, "the checkpoint stays open")
				})
			}
		}
	}
}

// TestSaveFrozenBF16FromSource saves a bf16-policy model loaded from an
// F32 checkpoint with one trainable layer: untouched frozen tensors are
// written bit-identical to the checkpoint, a trained one and a frozen one
// changed in place keep their new values.
func TestSaveFrozenBF16FromSource(t *testing.T) {
	dir, want, _ := savedTiny(t, hfconfig.ArchLlama, "F32")
	require.Positive(t, notBF16(want))
	m, be := loadBF16(t, dir)
	const trained, changed = "model.layers.2.mlp.up_proj.weight", "model.layers.0.mlp.up_proj.weight"
	for _, p := range m.BaseParams() {
		SetTrainable(p, p.Name == trained)
	}
	require.NoError(t, transformerOf(m).SetPrecision(engine.PrecisionBF16))
	newVals := map[string][]float32{}
	for _, p := range m.BaseParams() {
		switch p.Name {
		case trained:
			require.Equal(t, engine.Float32, p.W.DType())
			be.Scale(p.W, 1.5)
		case changed:
			require.Equal(t, engine.BFloat16, p.W.DType())
			be.Scale(p.W, 2)
		default:
			continue
		}
		newVals[p.Name] = be.Download(p.W)
	}
	for name, v := range newVals {
		want[name] = v
	}
	assertSaved(t, m, "F32", want)
}

// assertSaved saves m as dtype and checks every tensor against want.
func assertSaved(t *testing.T, m Model, dtype string, want map[string][]float32) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "out")
	require.NoError(t, m.SaveWithOptions(out, SaveOptions{DType: dtype}))
	set, err := safetensors.OpenDir(out)
	require.NoError(t, err)
	defer set.Close()
	for name, w := range want {
		got, _, err := set.Float32(name)
		require.NoError(t, err)
		assert.True(t, equalBits(got, w), "%s: saved values differ", name)
	}
}

// TestSaveBF16SourceGone checks that the checkpoint's values stay
// readable after its folder is removed (a rotated-away checkpoint).
func TestSaveBF16SourceGone(t *testing.T) {
	dir, want, _ := savedTiny(t, hfconfig.ArchLlama, "F16")
	m, _ := loadBF16(t, dir)
	for _, p := range m.BaseParams() {
		SetTrainable(p, false)
	}
	require.NoError(t, transformerOf(m).SetPrecision(engine.PrecisionBF16))
	require.NoError(t, os.RemoveAll(dir))
	assertSaved(t, m, "F16", want)
}

// transformerOf returns the Transformer behind a loaded model.
func transformerOf(m Model) *Transformer {
	switch v := m.(type) {
	case *Llama:
		return v.Transformer
	case *GPT2:
		return v.Transformer
	}
	return nil
}
