package main

import (
	"context"
	"fmt"
	"os"
	"strconv"
	"time"

	"github.com/gotune/gotune/cuda"
	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/dist"
	"github.com/gotune/gotune/engine/train"
)

// zeroHelp documents --zero.
const zeroHelp = "ZeRO `stage` of a data-parallel run (torchrun, Slurm, Open MPI or gotune launch): 0 replicates the AdamW state on every GPU, 1 shards it across GPUs, 2 also shards the reduced gradients"

// Environment knobs of a data-parallel run (seconds).
const (
	envRendezvousTimeout = "GOTUNE_RENDEZVOUS_TIMEOUT_S"
	envAbortGrace        = "GOTUNE_ABORT_GRACE_S"
	defaultRendezvousS   = 300
	defaultAbortGraceS   = 30
)

// parallelRun is this process's part of a data-parallel `gotune train`:
// nil (every method a no-op) when the environment names one process.
type parallelRun struct {
	env     dist.Env
	zero    int
	group   *dist.Group
	comm    *cuda.NCCLComm
	tempOut string // a follower's private --out, removed at the end
}

// prepareParallel reads the rank settings from the environment. For a
// multi-process run it pins --device to the local rank's GPU and gives
// every rank but 0 a private, temporary --out: rank 0 alone writes the
// run's folder.
func prepareParallel(f *trainFlags) (*parallelRun, error) {
	penv, err := dist.FromEnv(os.Getenv)
	if err != nil {
		return nil, &usageError{msg: err.Error()}
	}
	if !penv.Distributed() {
		if f.zero != 0 {
			return nil, &usageError{msg: "--zero needs a data-parallel run (started by torchrun, srun, mpirun or gotune launch)"}
		}
		return nil, nil
	}
	if err := (&train.Parallel{Zero: f.zero}).Validate(); err != nil {
		return nil, fieldUsageError(err, func(field string) string { return "Parallel." + field }, optionFlags)
	}
	switch f.device {
	case "auto", "cuda":
		f.device = fmt.Sprintf("cuda:%d", penv.LocalRank)
	case "cpu":
		return nil, &usageError{msg: fmt.Sprintf("data-parallel training (%s, %d processes) runs on CUDA devices, not --device cpu", penv.Source, penv.WorldSize)}
	}
	p := &parallelRun{env: penv, zero: f.zero}
	if penv.Rank != 0 {
		if p.tempOut, err = os.MkdirTemp("", fmt.Sprintf("gotune-rank%d-", penv.Rank)); err != nil {
			return nil, err
		}
		f.out = p.tempOut
	}
	return p, nil
}

// join meets the other ranks (TCP rendezvous at MASTER_ADDR:MASTER_PORT),
// builds the NCCL communicator on be and starts the watchdog that aborts
// it when another rank dies or fails.
func (p *parallelRun) join(ctx context.Context, be engine.Backend, e *env) error {
	if p == nil {
		return nil
	}
	cb, ok := be.(*cuda.Backend)
	if !ok {
		return fmt.Errorf("data-parallel training needs the CUDA backend, got %s", be.Name())
	}
	timeout := envSeconds(envRendezvousTimeout, defaultRendezvousS)
	g, err := dist.Rendezvous(ctx, p.env, timeout, func() ([]byte, error) {
		id, err := cuda.NewNCCLUniqueID()
		return id[:], err
	})
	if err != nil {
		return fmt.Errorf("rank %d of %d (%s): %w", p.env.Rank, p.env.WorldSize, p.env.Source, err)
	}
	p.group = g
	var id cuda.NCCLUniqueID
	copy(id[:], g.ID())
	if p.comm, err = cuda.NewNCCLComm(cb, id, p.env.Rank, p.env.WorldSize); err != nil {
		return p.fail(err)
	}
	fmt.Fprintf(e.Stdout, "data parallel: rank %d of %d on %s (%s, NCCL %s, ZeRO stage %d)\n",
		p.env.Rank, p.env.WorldSize, be.Name(), p.env.Source, cuda.NCCLLibraryPath(), p.zero)
	go p.watch(e)
	return nil
}

// watch aborts the communicator when another rank dies or fails, so a
// collective waiting for it returns; if this process is still running
// after the grace period (a device that does not come back), it exits.
func (p *parallelRun) watch(e *env) {
	<-p.group.Failed()
	p.comm.Abort()
	time.Sleep(envSeconds(envAbortGrace, defaultAbortGraceS))
	fmt.Fprintf(e.Stderr, "gotune: rank %d: %v; exiting\n", p.env.Rank, p.group.Err())
	os.Exit(1)
}

// options returns the trainer's data-parallel settings (nil for one process).
func (p *parallelRun) options() *train.Parallel {
	if p == nil {
		return nil
	}
	return &train.Parallel{Comm: p.comm, Zero: p.zero}
}

// fail names the failed peer in err when the watchdog saw one (the
// collective's own error then only says it was cut short).
func (p *parallelRun) fail(err error) error {
	if p.group != nil {
		if cause := p.group.Err(); cause != nil {
			err = fmt.Errorf("%v (rank %d stopped: %w)", cause, p.env.Rank, err)
		}
	}
	return err
}

// end closes the run's communicator and tells the other ranks how this
// one ended; it returns err, naming a failed peer when there was one.
func (p *parallelRun) end(err error) error {
	if p == nil || p.group == nil {
		return err
	}
	if err != nil {
		err = p.fail(err)
		p.group.Fail(err)
		if p.comm != nil {
			p.comm.Abort()
		}
		return err
	}
	if p.comm != nil {
		if cerr := p.comm.Close(); cerr != nil {
			err = cerr
		}
	}
	p.group.Close()
	return err
}

// removeTempOut removes a follower's private --out.
func (p *parallelRun) removeTempOut() {
	if p != nil && p.tempOut != "" {
		os.RemoveAll(p.tempOut)
	}
}

// envSeconds reads a duration in seconds from the environment.
func envSeconds(name string, def float64) time.Duration {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		def = v
	}
	return time.Duration(def * float64(time.Second))
}
