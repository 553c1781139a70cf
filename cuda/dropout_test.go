package cuda

import (
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/internal/golden"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestBaseDropoutMatchesCPU trains one pass of a GPT-2 with every
// base-model dropout on this backend and on the CPU: the same masks, so
// the same loss and gradients, with the sub-layer and embedding dropout
// in gt_dropout (attention dropout takes the host fallback until the
// attention kernels take dropout).
func TestBaseDropoutMatchesCPU(t *testing.T) {
	b := testBackend(t)
	cfg, err := hfconfig.NewGPT2(hfconfig.Sizes{VocabSize: 64, Hidden: 32, Layers: 2, Heads: 4, MaxPos: 32})
	require.NoError(t, err)
	cfg.AttentionDropout, cfg.ResidDropout, cfg.EmbdDropout = 0.2, 0.15, 0.1
	ids := make([]int32, 2*7)
	for i := range ids {
		ids[i] = int32(i*37+5) % 64
	}
	run := func(be engine.Backend) (float64, map[string][]float32) {
		m, err := model.New(cfg, be, 3)
		require.NoError(t, err)
		for _, p := range m.Params() {
			model.SetTrainable(p, true)
		}
		m.SetDropoutSeed(11)
		m.SetTrainingPass(engine.TrainingPass{Step: 2, Micro: 1})
		in, tg := be.Alloc(engine.Int32, len(ids)), be.Alloc(engine.Int32, len(ids))
		be.UploadInt32(in, ids)
		be.UploadInt32(tg, append(ids[1:], -100))
		loss, err := m.ForwardBackward(&engine.Batch{B: 2, T: 7, InputIDs: in, Targets: tg, Counted: len(ids) - 1}, true, 1)
		require.NoError(t, err)
		grads := map[string][]float32{}
		for _, p := range m.Params() {
			grads[p.Name] = be.Download(p.G)
		}
		return loss, grads
	}
	before := b.Stats()["Dropout"]
	gl, gg := run(b)
	cl, cg := run(cpu.New())
	assert.Less(t, golden.RelErr([]float32{float32(gl)}, []float32{float32(cl)}), 1e-5)
	for name, want := range cg {
		assert.Less(t, golden.RelErr(gg[name], want), 1e-4, name)
	}
	assert.Positive(t, b.Stats()["Dropout"].Native-before.Native, "gt_dropout ran")
	assert.Zero(t, b.Stats()["Dropout"].Fallback-before.Fallback)
}
