package train

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
)

// failingSaver saves like weightSaver unless fail says the save into dir
// must fail as a full disk does.
type failingSaver struct {
	weightSaver
	fail func(dir string) bool
}

func (s *failingSaver) Save(dir string) error {
	if s.fail(dir) {
		return &os.PathError{Op: "write", Path: filepath.Join(dir, "weights.safetensors"), Err: syscall.ENOSPC}
	}
	return s.weightSaver.Save(dir)
}

// isCheckpointTemp reports whether dir is a checkpoint being assembled.
func isCheckpointTemp(dir string) bool { return strings.Contains(filepath.Base(dir), tmpPrefix) }

// safetyRun trains 4 steps with checkpoints every 2 into out, with a
// saver whose saves fail where fail says.
func safetyRun(t *testing.T, out string, fail func(dir string) bool) (*Result, *failingSaver, error) {
	t.Helper()
	table, bias := toyWeights(2)
	m := newBigram(cpu.New(), toyV, table, bias)
	loader, err := data.NewLoader(toyDataset(8, 1), data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	require.NoError(t, err)
	cfg := baseConfig()
	cfg.Steps, cfg.OutDir, cfg.SaveEvery = 4, out, 2
	s := &failingSaver{weightSaver: weightSaver{m: m}, fail: fail}
	tr, err := New(m, loader, cfg, Options{Saver: s})
	require.NoError(t, err)
	defer tr.Close()
	res, err := tr.Run(context.Background())
	return res, s, err
}

// Why: "a failed last checkpoint skips a final save that would have fit".
// The checkpoint of the last step fails (disk full); the run still saves
// its result, leaves no half-written checkpoint behind and reports the
// failure.
func TestFailedCheckpointKeepsTheFinalSave(t *testing.T) {
	out := t.TempDir()
	res, _, err := safetyRun(t, out, func(dir string) bool {
		return isCheckpointTemp(dir) && strings.Contains(filepath.Base(dir), "-4.tmp-")
	})
	require.NoError(t, err)
	require.Len(t, res.CheckpointErrors, 1)
	assert.ErrorIs(t, res.CheckpointErrors[0], syscall.ENOSPC)
	assert.FileExists(t, filepath.Join(out, "weights.safetensors"), "the final save was skipped")
	assert.FileExists(t, filepath.Join(CheckpointDir(out, 2), StateFile))
	assert.NoDirExists(t, CheckpointDir(out, 4))
	entries, err := os.ReadDir(out)
	require.NoError(t, err)
	for _, e := range entries {
		assert.False(t, strings.Contains(e.Name(), ".tmp-"), "leftover temporary %s", e.Name())
	}
}

// Why: "the disk filling up during the final save loses the whole run's
// weights". The final save fails: the error says so, and names the
// newest complete checkpoint, which is kept, and how to resume from it.
func TestFailedFinalSaveNamesTheCheckpoint(t *testing.T) {
	out := t.TempDir()
	_, _, err := safetyRun(t, out, func(dir string) bool { return dir == out })
	require.Error(t, err)
	assert.ErrorIs(t, err, syscall.ENOSPC)
	ckpt := CheckpointDir(out, 4)
	assert.Contains(t, err.Error(), "the newest complete checkpoint, "+ckpt+" (step 4 of 4), is kept")
	assert.Contains(t, err.Error(), "rerun with Resume "+out)
	_, st, _, ferr := FindCheckpoint(out)
	require.NoError(t, ferr)
	assert.Equal(t, 4, st.Step)
}

// Leftover temporaries of a killed run (an atomic write's temp file, a
// checkpoint being assembled) are removed when the next run starts.
func TestRunRemovesLeftoverTemps(t *testing.T) {
	out := t.TempDir()
	stale := []string{".weights.safetensors.tmp-123", ".metrics.jsonl.tmp-9", tmpPrefix + "2.tmp-77"}
	for _, name := range stale[:2] {
		require.NoError(t, os.WriteFile(filepath.Join(out, name), []byte("half"), 0o644))
	}
	require.NoError(t, os.Mkdir(filepath.Join(out, stale[2]), 0o755))
	_, _, err := safetyRun(t, out, func(string) bool { return false })
	require.NoError(t, err)
	for _, name := range stale {
		assert.NoFileExists(t, filepath.Join(out, name))
		assert.NoDirExists(t, filepath.Join(out, name))
	}
}

// Why: "checkpoints carry no checksums: flipped bytes resume silently".
// A flipped byte in any file of the newest checkpoint (its weights, its
// moments, its state) makes FindCheckpoint fall back to the previous good
// one, saying why; naming the damaged checkpoint itself is an error, and
// so is Resume from it.
func TestDamagedCheckpointIsNotResumed(t *testing.T) {
	for _, file := range []string{"weights.safetensors", MomentsFile, StateFile} {
		t.Run(file, func(t *testing.T) {
			out := t.TempDir()
			_, _, err := safetyRun(t, out, func(string) bool { return false })
			require.NoError(t, err)
			path := filepath.Join(CheckpointDir(out, 4), file)
			b, err := os.ReadFile(path)
			require.NoError(t, err)
			at := len(b) - 20 // inside the data (or the JSON's last values)
			if file == StateFile {
				at = strings.Index(string(b), `"step": 4`) + len(`"step": `)
				b[at] = '3'
			} else {
				b[at] ^= 0x40
			}
			require.NoError(t, os.WriteFile(path, b, 0o644))

			ckpt, st, skipped, err := FindCheckpoint(out)
			require.NoError(t, err)
			assert.Equal(t, CheckpointDir(out, 2), ckpt)
			assert.Equal(t, 2, st.Step)
			require.Len(t, skipped, 1)
			assert.Contains(t, skipped[0], "is damaged")

			_, _, _, err = FindCheckpoint(CheckpointDir(out, 4))
			require.Error(t, err)
			assert.Contains(t, err.Error(), "is damaged")
		})
	}
}

// A checkpoint missing a file, or holding one it did not record, is not
// resumed either.
func TestVerifyCheckpointFileSet(t *testing.T) {
	out := t.TempDir()
	_, _, err := safetyRun(t, out, func(string) bool { return false })
	require.NoError(t, err)
	dir := CheckpointDir(out, 4)
	st, err := ReadState(dir)
	require.NoError(t, err)
	require.NoError(t, VerifyCheckpoint(dir, st))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "extra.bin"), []byte("x"), 0o644))
	assert.ErrorContains(t, VerifyCheckpoint(dir, st), "extra.bin is not one of the files")
	require.NoError(t, os.Remove(filepath.Join(dir, "extra.bin")))
	require.NoError(t, os.Remove(filepath.Join(dir, "weights.safetensors")))
	assert.ErrorContains(t, VerifyCheckpoint(dir, st), "weights.safetensors is missing")
}

// A resumed run must match the base model's fingerprint that the
// checkpoint recorded (the caller records it as a Setting).
func TestResumeRefusesAnotherBaseModel(t *testing.T) {
	out := t.TempDir()
	run := ckptRun{cfg: baseConfig(), lc: data.LoaderConfig{BatchSize: 2, SeqLen: 8},
		settings: []Setting{{Name: "base model", Value: "sha256:aaaa"}}}
	run.cfg.SaveEvery = 2
	_, _, _, err := run.run(t, out)
	require.NoError(t, err)
	run.resume = CheckpointDir(out, 2)
	run.settings = []Setting{{Name: "base model", Value: "sha256:bbbb"}}
	_, _, _, err = run.run(t, t.TempDir())
	require.Error(t, err)
	assert.Contains(t, err.Error(), "base model is sha256:bbbb here but sha256:aaaa in the checkpoint")
}

func TestDiskNeed(t *testing.T) {
	table, bias := toyWeights(2)
	m := newBigram(cpu.New(), toyV, table, bias)
	loader, err := data.NewLoader(toyDataset(8, 1), data.LoaderConfig{BatchSize: 2, SeqLen: 8})
	require.NoError(t, err)
	moments := int64(2 * 4 * (toyV*toyV + toyV))
	for _, tc := range []struct {
		name              string
		steps, every, lim int
		want              DiskNeed
	}{
		{"no checkpoints", 10, 0, 0, DiskNeed{Final: 1000}},
		{"all kept", 10, 3, 0, DiskNeed{Final: 1000, Checkpoint: 500 + moments, Checkpoints: 3}},
		{"limit plus the one being written", 10, 2, 2, DiskNeed{Final: 1000, Checkpoint: 500 + moments, Checkpoints: 3}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := baseConfig()
			cfg.Steps, cfg.SaveEvery, cfg.SaveTotalLimit, cfg.OutDir = tc.steps, tc.every, tc.lim, t.TempDir()
			tr, err := New(m, loader, cfg, Options{Saver: m})
			require.NoError(t, err)
			defer tr.Close()
			need := tr.DiskNeed(1000, 500)
			assert.Equal(t, tc.want, need)
			_, err = CheckDisk(cfg.OutDir, DiskNeed{Final: 1 << 62})
			assert.ErrorContains(t, err, "but the run needs at least")
			assert.False(t, errors.Is(err, os.ErrNotExist))
		})
	}
}

// A folder is a previous run when it holds anything but the lock file,
// temporaries and the empty metrics.jsonl of a run that failed before
// its first step (rerunning that must not need --overwrite).
func TestPreviousRun(t *testing.T) {
	dir := t.TempDir()
	got, err := PreviousRun(filepath.Join(dir, "missing"))
	require.NoError(t, err)
	assert.Empty(t, got)
	for _, name := range []string{".gotune.lock", MetricsFile, ".x.tmp-1"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o644))
	}
	got, err = PreviousRun(dir)
	require.NoError(t, err)
	assert.Empty(t, got)
	require.NoError(t, os.WriteFile(filepath.Join(dir, MetricsFile), []byte("{}\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "notes.txt"), nil, 0o644))
	got, err = PreviousRun(dir)
	require.NoError(t, err)
	assert.Equal(t, []string{MetricsFile, "notes.txt"}, got)
}
