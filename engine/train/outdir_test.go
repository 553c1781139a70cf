package train

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestPreviousRunLeftovers: a folder holding only what a run writes before
// its first step (the resolved config, an empty metrics.jsonl) is no
// previous run; next to a real result the same files are listed.
func TestPreviousRunLeftovers(t *testing.T) {
	dir := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.yaml"), []byte("steps: 1\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, MetricsFile), nil, 0o644))
	prev, err := PreviousRun(dir, "config.yaml")
	require.NoError(t, err)
	assert.Empty(t, prev)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "loss.png"), []byte("png"), 0o644))
	prev, err = PreviousRun(dir, "config.yaml")
	require.NoError(t, err)
	assert.Equal(t, []string{"config.yaml", "loss.png"}, prev)
}
