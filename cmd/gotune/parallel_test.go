package main

import (
	"bufio"
	"bytes"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
)

// emuParallelEnv returns the environment of a data-parallel run on the
// emulator: its libcuda with four devices and its libnccl.so.2 beside it.
func emuParallelEnv(t *testing.T) []string {
	t.Helper()
	lib := cudaDriver(t)
	nccl := filepath.Join(filepath.Dir(lib), "libnccl.so.2")
	if _, err := os.Stat(nccl); err != nil {
		t.Fatalf("the emulated NCCL %s is missing (make emu builds it): %v", nccl, err)
	}
	return []string{"GOTUNE_LIBCUDA=" + lib, "GOTUNE_LIBNCCL=" + nccl, "GOTUNE_EMU_DEVICES=4"}
}

// ddpTrainArgs is a small full fine-tuning run of the tiny model: 3
// steps of a global batch of 8 sequences, split by rows over the ranks.
func ddpTrainArgs(out string, extra ...string) []string {
	return append([]string{"train", "--model", "../../testdata/tiny/llama", "--data", "../../testdata/tiny/data.jsonl",
		"--steps", "3", "--batch-size", "8", "--seq-len", "32", "--lr", "3e-3", "--max-grad-norm", "1",
		"--weight-decay", "0.01", "--precision", "fp32", "--log-every", "1", "--out", out}, extra...)
}

// TestDataParallelMatchesOneProcess trains the same global batches with
// 1, 2 and 4 emulated GPUs (ZeRO 0, 1, and 2 with gradient accumulation;
// buckets reduced during backward on NCCL's stream) and compares every
// step's loss and the final weights; then resumes the 2-rank run's first
// checkpoint with 4 ranks under ZeRO-2 and compares again. (Few runs of
// few steps: the emulator is slow.)
func TestDataParallelMatchesOneProcess(t *testing.T) {
	env := emuParallelEnv(t)
	dir := t.TempDir()
	ref := filepath.Join(dir, "ref")
	r := runGotuneEnv(t, env, ddpTrainArgs(ref, "--device", "cuda")...)
	require.Equal(t, 0, r.code, r.stderr)

	cases := []struct {
		name  string
		nproc string
		extra []string
	}{
		{"2 ranks with checkpoints", "2", []string{"--save-every", "1"}},
		{"4 ranks ZeRO-1", "4", []string{"--zero", "1"}},
		// The same 8 rows as two micro-batches of 4: ZeRO-2 then
		// reduce-scatters the second in place and adds it.
		{"2 ranks ZeRO-2 accumulating", "2", []string{"--zero", "2", "--batch-size", "4", "--grad-accum", "2"}},
	}
	outs := map[string]string{}
	for _, c := range cases {
		out := filepath.Join(dir, strings.ReplaceAll(c.name, " ", "_"))
		outs[c.name] = out
		args := append([]string{"launch", "--nproc-per-node", c.nproc, "--"}, ddpTrainArgs(out, c.extra...)...)
		r := runGotuneEnv(t, env, args...)
		require.Equal(t, 0, r.code, "%s: %s", c.name, r.stderr)
		assert.Contains(t, r.stdout, "data parallel: rank 0 of "+c.nproc, c.name)
		assertSameRun(t, ref, out, c.name)
		_, err := os.Stat(filepath.Join(out, "config.yaml"))
		assert.NoError(t, err, "rank 0 writes the run's folder")
	}

	// Resume the 2-rank run from its step-1 checkpoint with 4 ranks and
	// ZeRO-2 (which also checks ZeRO-2 against one process).
	out := outs["2 ranks with checkpoints"]
	for _, step := range []string{"checkpoint-2", "checkpoint-3"} {
		require.NoError(t, os.RemoveAll(filepath.Join(out, step)))
	}
	args := append([]string{"launch", "--nproc-per-node", "4", "--"},
		ddpTrainArgs(out, "--zero", "2", "--save-every", "1", "--resume", out)...)
	r = runGotuneEnv(t, env, args...)
	require.Equal(t, 0, r.code, r.stderr)
	assert.Contains(t, r.stdout, "resuming from")
	assertSameRun(t, ref, out, "resumed with 4 ranks, ZeRO-2")
}

// assertSameRun compares two runs' losses and final weights.
func assertSameRun(t *testing.T, refDir, dir, what string) {
	t.Helper()
	want, err := train.ReadMetrics(filepath.Join(refDir, train.MetricsFile))
	require.NoError(t, err)
	got, err := train.ReadMetrics(filepath.Join(dir, train.MetricsFile))
	require.NoError(t, err, what)
	require.Len(t, got, len(want), what)
	for i := range want {
		assert.InDelta(t, want[i].Loss, got[i].Loss, 1e-5, "%s: loss of step %d", what, i+1)
		assert.InDelta(t, want[i].GradNorm, got[i].GradNorm, 1e-4, "%s: grad norm of step %d", what, i+1)
		assert.Equal(t, want[i].Tokens, got[i].Tokens, "%s: tokens of step %d", what, i+1)
	}
	a, err := safetensors.OpenDir(refDir)
	require.NoError(t, err)
	defer a.Close()
	b, err := safetensors.OpenDir(dir)
	require.NoError(t, err, what)
	defer b.Close()
	require.Equal(t, a.Names(), b.Names(), what)
	worst, at := 0.0, ""
	for _, name := range a.Names() {
		x, _, err := a.Float32(name)
		require.NoError(t, err)
		y, _, err := b.Float32(name)
		require.NoError(t, err)
		require.Len(t, y, len(x), name)
		for i := range x {
			if d := math.Abs(float64(x[i] - y[i])); d > worst {
				worst, at = d, name
			}
		}
	}
	assert.Less(t, worst, 2e-5, "%s: largest weight difference %g in %s", what, worst, at)
}

// TestDataParallelKilledRank kills one of two ranks mid-run, rank 1 and
// then rank 0 (which leads the rendezvous): the other must end within a
// timeout, non-zero, with a one-line message naming the dead rank.
func TestDataParallelKilledRank(t *testing.T) {
	env := emuParallelEnv(t)
	bin := gotuneBinary(t)
	for _, victim := range []int{1, 0} {
		t.Run(fmt.Sprintf("rank %d killed", victim), func(t *testing.T) {
			port, err := freeLoopbackPort()
			require.NoError(t, err)
			out := filepath.Join(t.TempDir(), "run")
			start := func(rank int) (*exec.Cmd, *bytes.Buffer, *bufio.Scanner) {
				c := exec.Command(bin, ddpTrainArgs(out, "--steps", "200")...)
				c.Env = append(os.Environ(), env...)
				c.Env = append(c.Env, "RANK="+strconv.Itoa(rank), "WORLD_SIZE=2", "LOCAL_RANK="+strconv.Itoa(rank),
					"MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port))
				var stderr bytes.Buffer
				c.Stderr = &stderr
				so, err := c.StdoutPipe()
				require.NoError(t, err)
				require.NoError(t, c.Start())
				return c, &stderr, bufio.NewScanner(so)
			}
			procs := make([]*exec.Cmd, 2)
			stderrs := make([]*bytes.Buffer, 2)
			outs := make([]*bufio.Scanner, 2)
			for r := range procs {
				procs[r], stderrs[r], outs[r] = start(r)
				defer procs[r].Process.Kill()
			}
			survivor := 1 - victim
			go func() {
				for outs[survivor].Scan() {
				}
			}()
			for outs[victim].Scan() { // wait until training runs
				if strings.HasPrefix(outs[victim].Text(), "step ") && strings.Contains(outs[victim].Text(), "loss") {
					break
				}
			}
			go func() {
				for outs[victim].Scan() {
				}
			}()
			require.NoError(t, procs[victim].Process.Signal(syscall.SIGKILL))
			go func() { _ = procs[victim].Wait() }()
			done := make(chan error, 1)
			go func() { done <- procs[survivor].Wait() }()
			select {
			case err := <-done:
				msg := strings.TrimSpace(stderrs[survivor].String())
				require.Error(t, err, "rank %d must fail when rank %d dies", survivor, victim)
				assert.Contains(t, msg, fmt.Sprintf("rank %d", victim), "the message names the dead rank")
				assert.Equal(t, 1, strings.Count(msg, "\n")+1, "one line: %s", msg)
			case <-time.After(90 * time.Second):
				t.Fatalf("rank %d still runs 90 s after rank %d was killed", survivor, victim)
			}
		})
	}
}

// TestDataParallelRendezvousTimeout starts rank 0 of 2 alone: it must
// give up after GOTUNE_RENDEZVOUS_TIMEOUT_S with one line naming the
// rank that never came, not hang.
func TestDataParallelRendezvousTimeout(t *testing.T) {
	env := emuParallelEnv(t)
	port, err := freeLoopbackPort()
	require.NoError(t, err)
	env = append(env, "RANK=0", "WORLD_SIZE=2", "LOCAL_RANK=0", "MASTER_ADDR=127.0.0.1",
		"MASTER_PORT="+strconv.Itoa(port), envRendezvousTimeout+"=1")
	start := time.Now()
	r := runGotuneEnv(t, env, ddpTrainArgs(filepath.Join(t.TempDir(), "run"))...)
	assert.NotEqual(t, 0, r.code)
	msg := strings.TrimSpace(r.stderr)
	assert.Contains(t, msg, "rank 1 never connected")
	assert.Contains(t, msg, "rank 0 of 2")
	assert.Equal(t, 1, strings.Count(msg, "\n")+1, "one line: %s", msg)
	assert.Less(t, time.Since(start), 60*time.Second)
}
