package train

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/stretchr/testify/require"
)

// weightSaver saves the bigram's weights for real (the toy model's own
// Save only records the call), and keeps a random state (a counter that
// each save advances) to check that checkpoints carry it.
type weightSaver struct {
	m        *bigram
	rand     uint64
	restored bool
}

func (s *weightSaver) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	s.rand++
	table, bias := s.m.weights()
	return safetensors.Write(filepath.Join(dir, "weights.safetensors"), []safetensors.Tensor{
		{Name: "table", DType: safetensors.F32, Shape: []int{toyV, toyV}, F32: table},
		{Name: "bias", DType: safetensors.F32, Shape: []int{toyV}, F32: bias},
	}, nil)
}

func (s *weightSaver) MarshalRandState() ([]byte, error) {
	return binary.LittleEndian.AppendUint64(nil, s.rand), nil
}

func (s *weightSaver) UnmarshalRandState(b []byte) error {
	if len(b) != 8 {
		return fmt.Errorf("random state of %d bytes, want 8", len(b))
	}
	s.rand = binary.LittleEndian.Uint64(b)
	s.restored = true
	return nil
}

// loadBigram builds a bigram from the weights a weightSaver wrote.
func loadBigram(t testing.TB, dir string) *bigram {
	t.Helper()
	f, err := safetensors.Open(filepath.Join(dir, "weights.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	table, _, err := f.Float32("table")
	if err != nil {
		t.Fatal(err)
	}
	bias, _, err := f.Float32("bias")
	if err != nil {
		t.Fatal(err)
	}
	return newBigram(cpu.New(), toyV, table, bias)
}

// ckptRun is one training process of the resume tests.
type ckptRun struct {
	cfg      Config
	lc       data.LoaderConfig
	stopAt   int    // cancel after this step (0: run to the end)
	resume   string // checkpoint to resume from (its weights are loaded)
	settings []Setting
}

// run trains a bigram as r describes, in out, and returns its history,
// final weights and the saver.
func (r ckptRun) run(t testing.TB, out string) (*Result, []float32, *weightSaver, error) {
	t.Helper()
	var m *bigram
	if r.resume != "" {
		m = loadBigram(t, r.resume)
	} else {
		table, bias := toyWeights(2)
		m = newBigram(cpu.New(), toyV, table, bias)
	}
	loader, err := data.NewLoader(toyDataset(7, 1), r.lc)
	if err != nil {
		t.Fatal(err)
	}
	cfg := r.cfg
	cfg.OutDir = out
	cfg.Settings = r.settings
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	saver := &weightSaver{m: m}
	opts := Options{Saver: saver}
	if r.stopAt > 0 {
		cfg.EvalEvery = 1
		opts.Eval = func(_ context.Context, step int) (map[string]float64, error) {
			if step == r.stopAt {
				cancel()
			}
			return nil, nil
		}
	}
	tr, err := New(m, loader, cfg, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	if r.resume != "" {
		if _, err := tr.Resume(r.resume); err != nil {
			return nil, nil, nil, err
		}
	}
	res, err := tr.Run(ctx)
	if err != nil {
		t.Fatal(err)
	}
	table, bias := m.weights()
	return res, append(table, bias...), saver, nil
}

// A run stopped after a checkpoint and resumed from it takes exactly the
// steps of an uninterrupted run: same losses, learning rates, gradient
// norms and final weights, bit for bit (the CPU backend is
// deterministic), across epoch boundaries of a shuffled loader.
func TestResumeIsExact(t *testing.T) {
	tests := []struct {
		name      string
		mod       func(*Config, *data.LoaderConfig)
		saveEvery int
		stopAt    int
	}{
		{"linear, shuffled, stop at a checkpoint", func(c *Config, l *data.LoaderConfig) {
			c.Schedule, c.WarmupSteps, l.Shuffle, l.Seed = Linear, 2, true, 7
		}, 3, 3},
		{"cosine, accumulation, interrupted between checkpoints", func(c *Config, l *data.LoaderConfig) {
			c.Schedule, c.GradAccum, l.Shuffle, l.Seed = Cosine, 3, true, 9
		}, 2, 5},
		{"epoch-bound run, partial last step", func(c *Config, l *data.LoaderConfig) {
			c.Steps, c.Epochs, c.GradAccum, l.Shuffle, l.Seed = 0, 3, 2, true, 3
		}, 2, 4},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Steps = 8
			lc := data.LoaderConfig{BatchSize: 2, SeqLen: 8}
			tc.mod(&cfg, &lc)

			straight, wantW, _, err := ckptRun{cfg: cfg, lc: lc}.run(t, filepath.Join(t.TempDir(), "a"))
			if err != nil {
				t.Fatal(err)
			}
			out := filepath.Join(t.TempDir(), "b")
			cfg.SaveEvery = tc.saveEvery
			first, _, saver1, err := ckptRun{cfg: cfg, lc: lc, stopAt: tc.stopAt}.run(t, out)
			if err != nil {
				t.Fatal(err)
			}
			if !first.Interrupted || first.Steps != tc.stopAt {
				t.Fatalf("first run: interrupted %v after %d steps, want after %d", first.Interrupted, first.Steps, tc.stopAt)
			}
			// The stopped run's metrics got a line further than its
			// checkpoint, and a crash cut the next one short: both go.
			metrics := filepath.Join(out, MetricsFile)
			f, err := os.OpenFile(metrics, os.O_APPEND|os.O_WRONLY, 0)
			if err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(f, "{\"step\":%d,\"loss\":99}\n{\"step\":%d,\"lo", tc.stopAt+1, tc.stopAt+2)
			f.Close()

			ckpt, st, skipped, err := FindCheckpoint(out)
			if err != nil {
				t.Fatal(err)
			}
			if want := CheckpointDir(out, tc.stopAt); ckpt != want || st.Step != tc.stopAt || len(skipped) != 0 {
				t.Fatalf("FindCheckpoint(%s) = %s at step %d (skipped %v), want %s", out, ckpt, st.Step, skipped, want)
			}
			second, gotW, saver2, err := ckptRun{cfg: cfg, lc: lc, resume: ckpt}.run(t, out)
			if err != nil {
				t.Fatal(err)
			}
			// Each save advances the saver's random state; the second run
			// continues from the checkpoint's, and its saves are the rest
			// of the first run's (checkpoints after the stop, final save).
			want := uint64(0)
			for s := 1; s <= len(straight.History); s++ {
				if s%tc.saveEvery == 0 {
					want++
				}
			}
			want++ // the final save
			// The stopped run checkpointed at the stop, even off the period.
			if tc.stopAt%tc.saveEvery != 0 {
				want++
			}
			if !saver2.restored || saver2.rand != want {
				t.Errorf("random state: restored %v, %d saves counted, want %d (first run: %d)", saver2.restored, saver2.rand, want, saver1.rand)
			}
			got := append(slices.Clone(first.History), second.History...)
			if len(got) != len(straight.History) {
				t.Fatalf("%d + %d steps, want %d", len(first.History), len(second.History), len(straight.History))
			}
			for i, w := range straight.History {
				g := got[i]
				if g.Step != w.Step || g.Loss != w.Loss || g.LR != w.LR || g.GradNorm != w.GradNorm || g.Tokens != w.Tokens || g.Epoch != w.Epoch {
					t.Errorf("step %d: resumed %+v, straight %+v", i+1, g, w)
				}
			}
			if !slices.Equal(gotW, wantW) {
				t.Errorf("final weights differ from the uninterrupted run's")
			}
			ms, err := ReadMetrics(metrics)
			if err != nil {
				t.Fatal(err)
			}
			if len(ms) != len(straight.History) {
				t.Fatalf("metrics.jsonl has %d lines, want %d", len(ms), len(straight.History))
			}
			for i, m := range ms {
				if m.Step != i+1 || m.Loss != straight.History[i].Loss {
					t.Errorf("metrics line %d: step %d loss %v, want step %d loss %v", i+1, m.Step, m.Loss, i+1, straight.History[i].Loss)
				}
				if i > 0 && m.ElapsedS < ms[i-1].ElapsedS {
					t.Errorf("elapsed_s goes back at step %d: %v after %v", m.Step, m.ElapsedS, ms[i-1].ElapsedS)
				}
			}
		})
	}
}

// stoppedRun leaves a run of 6 steps stopped at step 3 with checkpoints
// at steps 2 and 3 in a new output folder, and returns it.
func stoppedRun(t *testing.T) (string, ckptRun) {
	t.Helper()
	cfg := baseConfig()
	cfg.Schedule = Linear
	cfg.SaveEvery = 1
	r := ckptRun{cfg: cfg, lc: data.LoaderConfig{BatchSize: 2, SeqLen: 8, Shuffle: true, Seed: 1}, stopAt: 3,
		settings: []Setting{{Name: "--seed", Value: "1"}, {Name: "--data", Value: "toy.jsonl", Harmless: true}}}
	out := filepath.Join(t.TempDir(), "out")
	if _, _, _, err := r.run(t, out); err != nil {
		t.Fatal(err)
	}
	os.RemoveAll(CheckpointDir(out, 1))
	r.stopAt = 0
	return out, r
}

func TestResumeChecksSettings(t *testing.T) {
	tests := []struct {
		name     string
		mod      func(r *ckptRun)
		wantErr  []string // substrings of the error; none: it must resume
		wantWarn string
	}{
		{"lr", func(r *ckptRun) { r.cfg.LR = 0.02 }, []string{"LR is 0.02 here but 0.05 in the checkpoint"}, ""},
		{"grad-accum and schedule", func(r *ckptRun) { r.cfg.GradAccum, r.cfg.Schedule = 2, Cosine },
			[]string{"GradAccum is 2 here but 1", "Schedule is cosine here but linear"}, ""},
		{"schedule length", func(r *ckptRun) { r.cfg.Steps = 9 }, []string{"schedule length (Steps or Epochs) is 9 here but 6"}, ""},
		{"caller setting", func(r *ckptRun) { r.settings[0].Value = "2" }, []string{"--seed is 2 here but 1"}, ""},
		{"batch size changes the data", func(r *ckptRun) { r.lc.BatchSize = 3 }, []string{"batches per epoch is 3 here but 4"}, ""},
		{"harmless log-every", func(r *ckptRun) { r.cfg.LogEvery = 5 }, nil, "LogEvery is 5 here but 0"},
		{"harmless caller setting", func(r *ckptRun) { r.settings[1].Value = "moved.jsonl" }, nil, "--data is moved.jsonl here"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			out, r := stoppedRun(t)
			tc.mod(&r)
			table, bias := toyWeights(2)
			m := newBigram(cpu.New(), toyV, table, bias)
			loader, _ := data.NewLoader(toyDataset(7, 1), r.lc)
			cfg := r.cfg
			cfg.OutDir, cfg.Settings = out, r.settings
			tr, err := New(m, loader, cfg, Options{Saver: &weightSaver{m: m}})
			if err != nil {
				t.Fatal(err)
			}
			defer tr.Close()
			ckpt := CheckpointDir(out, 3)
			info, err := tr.Resume(ckpt)
			if len(tc.wantErr) > 0 {
				if err == nil {
					t.Fatalf("resumed; want an error naming %q", tc.wantErr)
				}
				for _, w := range append(tc.wantErr, ckpt) {
					if !strings.Contains(err.Error(), w) {
						t.Errorf("error %q does not say %q", err, w)
					}
				}
				if tr.StepsDone() != 0 {
					t.Errorf("a refused resume moved the trainer to step %d", tr.StepsDone())
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if tr.StepsDone() != 3 {
				t.Errorf("resumed at step %d, want 3", tr.StepsDone())
			}
			if !slices.ContainsFunc(info.Warnings, func(s string) bool { return strings.Contains(s, tc.wantWarn) }) {
				t.Errorf("warnings %q lack %q", info.Warnings, tc.wantWarn)
			}
		})
	}
}

func TestResumeRejectsOtherParams(t *testing.T) {
	out, r := stoppedRun(t)
	table, bias := toyWeights(2)
	m := newBigram(cpu.New(), toyV, table, bias)
	m.bias.Trainable = false
	loader, _ := data.NewLoader(toyDataset(7, 1), r.lc)
	cfg := r.cfg
	cfg.OutDir, cfg.Settings = out, r.settings
	tr, err := New(m, loader, cfg, Options{Saver: &weightSaver{m: m}})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	_, err = tr.Resume(CheckpointDir(out, 3))
	if err == nil || !strings.Contains(err.Error(), "trainable in the checkpoint but not here: bias") {
		t.Errorf("error %v, want one naming bias", err)
	}
}

// A checkpoint without its state file is incomplete: resuming from it
// names it, and resuming from the output folder falls back to the
// previous complete one.
func TestIncompleteCheckpoint(t *testing.T) {
	out, _ := stoppedRun(t)
	ckpt3 := CheckpointDir(out, 3)
	if err := os.Remove(filepath.Join(ckpt3, StateFile)); err != nil {
		t.Fatal(err)
	}
	_, _, _, err := FindCheckpoint(ckpt3)
	if err == nil || !strings.Contains(err.Error(), ckpt3) || !strings.Contains(err.Error(), "incomplete") {
		t.Errorf("FindCheckpoint(%s): %v, want an incomplete-checkpoint error naming it", ckpt3, err)
	}
	ckpt, st, skipped, err := FindCheckpoint(out)
	if err != nil || ckpt != CheckpointDir(out, 2) || st.Step != 2 || len(skipped) != 1 || !strings.Contains(skipped[0], ckpt3) {
		t.Errorf("FindCheckpoint(out) = %s, %v, skipped %q; want checkpoint-2 and checkpoint-3 skipped", ckpt, err, skipped)
	}
	os.RemoveAll(CheckpointDir(out, 2))
	if _, _, _, err := FindCheckpoint(out); err == nil || !strings.Contains(err.Error(), "no complete checkpoint") {
		t.Errorf("with no complete checkpoint: %v", err)
	}
	// A damaged state file is refused too.
	if err := os.WriteFile(filepath.Join(ckpt3, StateFile), []byte(`{"format":1,"step":`), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := ReadState(ckpt3); err == nil || !strings.Contains(err.Error(), "damaged") {
		t.Errorf("truncated state: %v", err)
	}
	empty := t.TempDir()
	if _, _, _, err := FindCheckpoint(empty); !errors.Is(err, ErrNoCheckpoint) {
		t.Errorf("folder without checkpoints: %v", err)
	}
}

func TestSaveTotalLimit(t *testing.T) {
	tests := []struct {
		limit int
		want  []string
	}{
		{0, []string{"checkpoint-2", "checkpoint-4", "checkpoint-6"}},
		{2, []string{"checkpoint-4", "checkpoint-6"}},
		{1, []string{"checkpoint-6"}},
	}
	for _, tc := range tests {
		t.Run(fmt.Sprint(tc.limit), func(t *testing.T) {
			cfg := baseConfig()
			cfg.SaveEvery, cfg.SaveTotalLimit = 2, tc.limit
			out := filepath.Join(t.TempDir(), "out")
			// Leftovers of a crash: a half-written checkpoint folder.
			if err := os.MkdirAll(filepath.Join(out, ".checkpoint-4.tmp-123"), 0o755); err != nil {
				t.Fatal(err)
			}
			if _, _, _, err := (ckptRun{cfg: cfg, lc: data.LoaderConfig{BatchSize: 2, SeqLen: 8}}).run(t, out); err != nil {
				t.Fatal(err)
			}
			entries, _ := os.ReadDir(out)
			var got []string
			for _, e := range entries {
				if e.IsDir() {
					got = append(got, e.Name())
				}
			}
			if !slices.Equal(got, tc.want) {
				t.Errorf("folders %v, want %v", got, tc.want)
			}
			for _, c := range got {
				for _, f := range []string{StateFile, MomentsFile, "weights.safetensors"} {
					if _, err := os.Stat(filepath.Join(out, c, f)); err != nil {
						t.Error(err)
					}
				}
			}
		})
	}
}

func TestConfigValidateCheckpoints(t *testing.T) {
	for _, tc := range []struct {
		mod  func(*Config)
		want string
	}{
		{func(c *Config) { c.SaveEvery = -1 }, "SaveEvery must not be negative"},
		{func(c *Config) { c.SaveTotalLimit = -2 }, "SaveTotalLimit must not be negative"},
	} {
		c := baseConfig()
		tc.mod(&c)
		if err := c.Validate(); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Validate: %v, want an error naming %s", err, tc.want)
		}
	}
	c := baseConfig()
	c.SaveEvery = 2
	table, bias := toyWeights(2)
	m := newBigram(cpu.New(), toyV, table, bias)
	loader, _ := data.NewLoader(toyDataset(4, 1), data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	if _, err := New(m, loader, c, Options{}); err == nil || !strings.Contains(err.Error(), "output directory") {
		t.Errorf("checkpoints without OutDir: %v", err)
	}
}

func TestTrimMetrics(t *testing.T) {
	path := filepath.Join(t.TempDir(), MetricsFile)
	orig := "{\"step\":1,\"loss\":1}\n{\"step\":2,\"loss\":2}\n{\"step\":3,\"loss\":3}\n{\"step\":4"
	if err := os.WriteFile(path, []byte(orig), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := trimMetrics(path, 2); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	if want := "{\"step\":1,\"loss\":1}\n{\"step\":2,\"loss\":2}\n"; string(b) != want {
		t.Errorf("trimmed to %q, want %q", b, want)
	}
	if err := trimMetrics(filepath.Join(t.TempDir(), "none"), 2); err != nil {
		t.Errorf("missing file: %v", err)
	}
}

// TestCompareSettingsAbsent checks that a setting newer than a checkpoint
// matches it at the value older runs had, and only at that value.
func TestCompareSettingsAbsent(t *testing.T) {
	ckpt := []Setting{{Name: "--lr", Value: "0.1"}}
	for _, tc := range []struct {
		value string
		bad   []string
	}{
		{"false", nil},
		{"true", []string{"--packing is true here but false in the checkpoint"}},
	} {
		cur := []Setting{{Name: "--lr", Value: "0.1"}, {Name: "--packing", Value: tc.value, Absent: "false"}}
		bad, harmless := compareSettings(ckpt, cur)
		require.Equal(t, tc.bad, bad, tc.value)
		require.Empty(t, harmless)
	}
	bad, _ := compareSettings(ckpt, []Setting{{Name: "--lr", Value: "0.1"}, {Name: "--new", Value: "x"}})
	require.Equal(t, []string{"--new is x here but (not recorded) in the checkpoint"}, bad)
}
