package train

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
)

// FuzzCheckpoint feeds an arbitrary trainer_state.json and
// trainer_state.safetensors to FindCheckpoint and Resume (with the
// checkpoint's other files real): an error or a resumed trainer, never a
// panic. Seeds: a real checkpoint's two files, and each damaged.
func FuzzCheckpoint(f *testing.F) {
	out := f.TempDir()
	run := ckptRun{cfg: baseConfig(), lc: data.LoaderConfig{BatchSize: 2, SeqLen: 8}}
	run.cfg.SaveEvery = 3
	run.run(f, out)
	ckpt := CheckpointDir(out, 3)
	state, err1 := os.ReadFile(filepath.Join(ckpt, StateFile))
	moments, err2 := os.ReadFile(filepath.Join(ckpt, MomentsFile))
	weights, err3 := os.ReadFile(filepath.Join(ckpt, "weights.safetensors"))
	if err1 != nil || err2 != nil || err3 != nil {
		f.Fatal(err1, err2, err3)
	}
	f.Add(state, moments)
	f.Add(state[:len(state)/2], moments)
	f.Add(state, moments[:len(moments)-7])
	f.Add(append([]byte(`{"step": 1000000000, `), state[1:]...), moments)
	f.Fuzz(func(t *testing.T, state, moments []byte) {
		dir := CheckpointDir(t.TempDir(), 3)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for name, b := range map[string][]byte{StateFile: state, MomentsFile: moments, "weights.safetensors": weights} {
			if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		if _, _, _, err := FindCheckpoint(filepath.Dir(dir)); err != nil {
			return
		}
		table, bias := toyWeights(2)
		m := newBigram(cpu.New(), toyV, table, bias)
		loader, err := data.NewLoader(toyDataset(7, 1), run.lc)
		if err != nil {
			t.Fatal(err)
		}
		cfg := run.cfg
		cfg.OutDir = t.TempDir()
		tr, err := New(m, loader, cfg, Options{Saver: m})
		if err != nil {
			t.Fatal(err)
		}
		defer tr.Close()
		tr.Resume(dir)
	})
}
