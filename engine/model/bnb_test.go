package model

import (
	"maps"
	"math"
	"os"
	"path/filepath"
	"runtime/debug"
	"slices"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/quant"
	"github.com/gotune/gotune/engine/safetensors"
)

// quantLayers returns the quantized projections of m by name, as host
// copies.
func quantLayers(t *testing.T, be engine.Backend, m Model) map[string]*quant.Quantized {
	t.Helper()
	out := map[string]*quant.Quantized{}
	for _, nm := range m.(interface{ Modules() []NamedModule }).Modules() {
		if qd, ok := nm.Module.(*QuantDense); ok {
			out[nm.Name] = quant.Download(be, qd.W, qd.Format)
		}
	}
	return out
}

// TestLoadBitsandbytes loads llama-gqa as transformers saves it with
// bitsandbytes 4-bit weights (testdata/golden/qlora.py writes the files
// in bitsandbytes' layout) and checks every projection holds exactly
// what gotune's own quantization of the unquantized checkpoint holds:
// codes, absmax (or its codes, scales and offset) and code books.
func TestLoadBitsandbytes(t *testing.T) {
	for _, c := range []struct {
		dir    string
		format quant.Format
		double bool
	}{{"qlora-bnb-nf4", quant.NF4, true}, {"qlora-bnb-fp4", quant.FP4, false}} {
		t.Run(c.dir, func(t *testing.T) {
			be := cpu.New()
			got, err := Load(filepath.Join(goldenRoot, c.dir), be)
			require.NoError(t, err)
			st := be.MemoryStats()
			assert.Equal(t, st.InUse, st.Peak, "loading allocated float storage for quantized weights")
			want, err := Load(filepath.Join(goldenRoot, "llama-gqa"), be)
			require.NoError(t, err)
			_, err = want.(interface {
				Quantize(quant.Options) (QuantStats, error)
			}).Quantize(quant.Options{Format: c.format, DoubleQuant: c.double})
			require.NoError(t, err)
			g, w := quantLayers(t, be, got), quantLayers(t, be, want)
			require.Len(t, w, 14)
			require.Equal(t, len(w), len(g))
			for name, wq := range w {
				require.Contains(t, g, name)
				assert.Equal(t, wq, g[name], name)
				assert.Equal(t, c.double, g[name].Nested(), name)
			}
		})
	}
}

// TestLoadBitsandbytesRefuses checks the one-line errors for quantized
// checkpoints gotune does not read and for damaged bitsandbytes states.
func TestLoadBitsandbytesRefuses(t *testing.T) {
	src := filepath.Join(goldenRoot, "qlora-bnb-nf4")
	cfg, err := os.ReadFile(filepath.Join(src, "config.json"))
	require.NoError(t, err)
	for _, c := range []struct{ name, from, to, want string }{
		{"gptq", `"quant_method": "bitsandbytes"`, `"quant_method": "gptq"`, `"quantization_config.quant_method": "gptq" checkpoints are not supported`},
		{"int8", `"load_in_8bit": false`, `"load_in_8bit": true`, `"quantization_config.load_in_8bit": bitsandbytes LLM.int8`},
		{"type", `"bnb_4bit_quant_type": "nf4"`, `"bnb_4bit_quant_type": "fp4"`, `quant_type "nf4", but config.json's bnb_4bit_quant_type is "fp4"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			require.True(t, strings.Contains(string(cfg), c.from), c.from)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), []byte(strings.Replace(string(cfg), c.from, c.to, 1)), 0o644))
			require.NoError(t, os.Symlink(filepath.Join(mustAbs(t, src), "model.safetensors"), filepath.Join(dir, "model.safetensors")))
			_, err := Load(dir, cpu.New())
			require.Error(t, err)
			assert.Contains(t, err.Error(), c.want)
			assert.NotContains(t, err.Error(), "\n")
		})
	}
}

func mustAbs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	require.NoError(t, err)
	return a
}

// TestLoadQuantizes loads llama-gqa with Options.Quantize (each
// projection quantized as it is read) and checks the projections equal
// Transformer.Quantize's after a plain load, and, through the backend's
// MemoryReporter, that the load's peak is what the loaded model holds:
// no float copy of a quantized projection was ever allocated, where
// loading then quantizing peaks at the whole float32 model.
func TestLoadQuantizes(t *testing.T) {
	for _, storage := range []engine.DType{engine.Float32, engine.BFloat16} {
		t.Run(storage.String(), func(t *testing.T) { checkLoadQuantizes(t, storage) })
	}
	_, err := LoadWithOptions(filepath.Join(goldenRoot, "qlora-bnb-nf4"), cpu.New(), Options{Quantize: quant.Options{Format: quant.NF4}})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "cannot quantize to nf4: the checkpoint is already quantized")
}

// checkLoadQuantizes is TestLoadQuantizes with parameters stored in
// storage (under bfloat16 both quantize the bfloat16-rounded weights).
func checkLoadQuantizes(t *testing.T, storage engine.DType) {
	dir := filepath.Join(goldenRoot, "llama-gqa")
	o := quant.Options{Format: quant.NF4, DoubleQuant: true}
	atLoad := cpu.New()
	got, err := LoadWithOptions(dir, atLoad, Options{Quantize: o, Storage: storage})
	require.NoError(t, err)
	loadStats := atLoad.MemoryStats()

	after := cpu.New()
	want, err := LoadWithOptions(dir, after, Options{Storage: storage})
	require.NoError(t, err)
	_, err = want.(interface {
		Quantize(quant.Options) (QuantStats, error)
	}).Quantize(o)
	require.NoError(t, err)
	afterStats := after.MemoryStats()

	g, w := quantLayers(t, atLoad, got), quantLayers(t, after, want)
	require.Len(t, w, 14)
	assert.Equal(t, w, g)
	t.Logf("peak while loading: %d bytes quantizing at load, %d loading then quantizing (in use after: %d, %d)",
		loadStats.Peak, afterStats.Peak, loadStats.InUse, afterStats.InUse)
	assert.Equal(t, afterStats.InUse, loadStats.InUse)
	assert.Equal(t, loadStats.InUse, loadStats.Peak, "quantizing at load allocated more than the loaded model")
	assert.Greater(t, afterStats.Peak, loadStats.Peak)
}

// TestDequantizeBitsandbytesSaves dequantizes a bitsandbytes checkpoint
// and saves it: the config no longer carries quantization_config (the
// weights are float), and the saved folder loads back as a float model
// with the dequantized weights.
func TestDequantizeBitsandbytesSaves(t *testing.T) {
	be := cpu.New()
	m, err := Load(filepath.Join(goldenRoot, "qlora-bnb-nf4"), be)
	require.NoError(t, err)
	require.NotNil(t, m.Config().Quantization)
	m.(interface{ Dequantize() }).Dequantize()
	assert.Nil(t, m.Config().Quantization)
	out := tempDir(t, "dequantized")
	require.NoError(t, m.Save(out))
	raw, err := os.ReadFile(filepath.Join(out, "config.json"))
	require.NoError(t, err)
	assert.NotContains(t, string(raw), "quantization_config")
	back, err := Load(out, be)
	require.NoError(t, err)
	assert.Nil(t, back.Config().Quantization)
	for _, p := range m.BaseParams() {
		q, ok := back.Param(p.Name)
		require.True(t, ok, p.Name)
		assert.Equal(t, be.Download(p.W), be.Download(q.W), p.Name)
	}
}

// TestFailedQuantizedLoadFrees loads llama-gqa quantized (NF4) from host
// tensors with one damaged tensor: a late projection (its quantization
// fails after the earlier ones were uploaded) or the final norm (the
// float fill fails after every projection was quantized). The failed
// load must free every tensor it allocated, quantized ones included:
// with the garbage collector off (which would otherwise release them
// some time later), the backend's MemoryReporter is back to zero.
func TestFailedQuantizedLoadFrees(t *testing.T) {
	dir := filepath.Join(goldenRoot, "llama-gqa")
	cfg, err := hfconfig.Load(dir)
	require.NoError(t, err)
	set, err := safetensors.OpenDir(dir)
	require.NoError(t, err)
	defer set.Close()
	host := map[string]HostTensor{}
	for _, n := range set.Names() {
		data, shape, err := set.Float32(n)
		require.NoError(t, err)
		host[n] = HostTensor{Shape: shape, Data: data}
	}
	defer debug.SetGCPercent(debug.SetGCPercent(-1))
	for _, damaged := range []string{"model.layers.1.mlp.down_proj.weight", "model.norm.weight"} {
		t.Run(damaged, func(t *testing.T) {
			w := maps.Clone(host)
			bad := slices.Clone(w[damaged].Data)
			bad[3] = float32(math.NaN())
			w[damaged] = HostTensor{Shape: w[damaged].Shape, Data: bad}
			be := cpu.New()
			_, err := FromWeights(cfg, be, w, Options{Quantize: quant.Options{Format: quant.NF4, DoubleQuant: true}})
			require.Error(t, err)
			assert.Contains(t, err.Error(), damaged)
			st := be.MemoryStats()
			assert.Greater(t, st.Peak, uint64(0), "the load got as far as allocating")
			assert.Zero(t, st.InUse, "bytes still allocated after the failed load")
		})
	}
}
