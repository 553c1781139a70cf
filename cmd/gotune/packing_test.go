package main

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/train"
)

const tinyData = "../../testdata/tiny/data.jsonl"

// readTinyData returns the pre-tokenized examples of testdata/tiny.
func readTinyData(t *testing.T) (ids, labels [][]int32) {
	t.Helper()
	f, err := os.Open(tinyData)
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec struct {
			InputIDs []int32 `json:"input_ids"`
			Labels   []int32 `json:"labels"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &rec))
		if rec.Labels == nil {
			rec.Labels = rec.InputIDs
		}
		ids, labels = append(ids, rec.InputIDs), append(labels, rec.Labels)
	}
	return ids, labels
}

// data show --json --packing prints each packed sequence: its examples end
// to end (truncated to --seq-len), positions restarting at 0, one segment
// id per example, and labels whose left shift never crosses an example.
func TestDataShowPacked(t *testing.T) {
	const seqLen = 40
	ids, labels := readTinyData(t)
	status, stdout, stderr := gotuneIn("data", "show", "--data", tinyData, "--json", "--packing", "--seq-len", "40")
	require.Equal(t, 0, status, stderr)
	seen := map[int]bool{}
	lines := strings.Split(strings.TrimSpace(stdout), "\n")
	for _, l := range lines {
		var s packedLine
		require.NoError(t, json.Unmarshal([]byte(l), &s), l)
		require.LessOrEqual(t, len(s.InputIDs), seqLen)
		for _, v := range [][]int32{s.Labels, s.PositionIDs, s.SegmentIDs} {
			require.Len(t, v, len(s.InputIDs))
		}
		at := 0
		for j, ex := range s.Examples {
			require.False(t, seen[ex], "example %d packed twice", ex)
			seen[ex] = true
			n := min(len(ids[ex]), seqLen)
			assert.Equal(t, ids[ex][:n], s.InputIDs[at:at+n])
			assert.Equal(t, int32(-100), s.Labels[at], "an example's first token is not predicted from the one before")
			assert.Equal(t, labels[ex][1:n], s.Labels[at+1:at+n])
			for k := 0; k < n; k++ {
				assert.Equal(t, int32(k), s.PositionIDs[at+k])
				assert.Equal(t, int32(j), s.SegmentIDs[at+k])
			}
			at += n
		}
		require.Equal(t, len(s.InputIDs), at)
	}
	assert.Len(t, seen, len(ids))
	assert.Less(t, len(lines), len(ids))

	status, stdout, stderr = gotuneIn("data", "show", "--data", tinyData, "--packing", "--seq-len", "40", "--batch-size", "8", "--n", "1")
	require.Equal(t, 0, status, stderr)
	assert.Contains(t, stdout, "packed 64 examples into ")
	assert.Contains(t, stdout, "unpacked: 8 batches of 8 per epoch")
	assert.Contains(t, stdout, "=== sequence 0:")
	assert.NotContains(t, stdout, "=== sequence 1:")
}

// train --packing trains the packed sequences: fewer steps per epoch, the
// setting recorded; methods with virtual tokens refuse it.
func TestTrainPacked(t *testing.T) {
	out := filepath.Join(t.TempDir(), "out")
	r := runGotune(t, "train", "--model", "../../testdata/tiny/llama", "--data", tinyData, "--epochs", "1", "--method", "lora",
		"--batch-size", "8", "--seq-len", "48", "--device", "cpu", "--out", out, "--packing")
	require.Equal(t, 0, r.code, "%s%s", r.stdout, r.stderr)
	assert.Contains(t, r.stdout, "packed 64 examples into ")
	ms, err := train.ReadMetrics(filepath.Join(out, train.MetricsFile))
	require.NoError(t, err)
	assert.Less(t, len(ms), 8, "64 examples unpacked are 8 batches of 8")
	assert.Equal(t, 1.0, ms[len(ms)-1].Epoch)
	assert.Contains(t, mustRead(t, filepath.Join(out, configFileName)), "packing: true")

	for _, method := range []string{"prompt", "ptuning"} {
		r := runGotune(t, "train", "--model", "../../testdata/tiny/llama", "--data", tinyData, "--method", method, "--packing", "--out", filepath.Join(t.TempDir(), "o"))
		assert.Equal(t, exitError, r.code)
		first, _, _ := strings.Cut(r.stderr, "\n")
		assert.Contains(t, first, "--packing cannot be used with --method "+method+": its virtual tokens sit in front of each sequence")
	}
}
