package fsutil

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Why: "two runs on one folder corrupt each other (no lock)". A second
// lock on a locked folder fails naming the holder; after Release the
// folder can be locked again and no lock file is left.
func TestLockDir(t *testing.T) {
	dir := t.TempDir()
	l, err := LockDir(dir)
	require.NoError(t, err)
	_, err = LockDir(dir)
	require.Error(t, err)
	assert.Contains(t, err.Error(), fmt.Sprintf("in use by another gotune run (process %d holds", os.Getpid()))
	require.NoError(t, l.Release())
	assert.NoFileExists(t, filepath.Join(dir, LockFile))
	l2, err := LockDir(dir)
	require.NoError(t, err)
	require.NoError(t, l2.Release())
	assert.NoError(t, (*Lock)(nil).Release())
}

func TestMoveAside(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "out")
	require.NoError(t, os.MkdirAll(filepath.Join(dir, "checkpoint-2"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "metrics.jsonl"), []byte("old\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, LockFile), nil, 0o644))
	require.NoError(t, os.Mkdir(dir+".old-1", 0o755)) // taken: the next number is used

	aside, err := MoveAside(dir, LockFile)
	require.NoError(t, err)
	assert.Equal(t, dir+".old-2", aside)
	b, err := os.ReadFile(filepath.Join(aside, "metrics.jsonl"))
	require.NoError(t, err)
	assert.Equal(t, "old\n", string(b))
	assert.DirExists(t, filepath.Join(aside, "checkpoint-2"))
	left, err := os.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, left, 1)
	assert.Equal(t, LockFile, left[0].Name())
}

func TestRemoveTemps(t *testing.T) {
	dir := t.TempDir()
	for _, name := range []string{".model.safetensors.tmp-42", "model.safetensors", ".hidden", "a.tmp-1"} {
		require.NoError(t, os.WriteFile(filepath.Join(dir, name), nil, 0o644))
	}
	require.NoError(t, os.Mkdir(filepath.Join(dir, ".checkpoint-3.tmp-9"), 0o755))
	removed, err := RemoveTemps(dir)
	require.NoError(t, err)
	assert.ElementsMatch(t, []string{".model.safetensors.tmp-42", ".checkpoint-3.tmp-9"}, removed)
	for _, kept := range []string{"model.safetensors", ".hidden", "a.tmp-1"} {
		assert.FileExists(t, filepath.Join(dir, kept))
	}
}

func TestFreeBytes(t *testing.T) {
	free, err := FreeBytes(t.TempDir())
	require.NoError(t, err)
	assert.Positive(t, free)
	_, err = FreeBytes(filepath.Join(t.TempDir(), "missing"))
	assert.Error(t, err)
}
