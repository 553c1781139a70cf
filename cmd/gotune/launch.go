package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"sync"
	"syscall"
	"time"
)

func init() {
	register(&command{
		Name:    "launch",
		Summary: "run a command as N data-parallel processes on this machine (as torchrun does)",
		Run:     runLaunch,
	})
}

const launchDescription = `Starts --nproc-per-node copies of "gotune <command> ..." with the
environment torchrun sets (RANK, WORLD_SIZE, LOCAL_RANK, LOCAL_WORLD_SIZE,
MASTER_ADDR=127.0.0.1, MASTER_PORT = a free port), one per GPU. The ranks
meet over TCP on the loopback interface only. Output of rank 0 passes
through; other ranks' lines are prefixed with [rank N]. When a rank fails,
the others end on their own (naming it); any still running after
--grace are killed. The launcher fails when any rank does.

  gotune launch --nproc-per-node 4 -- train --model M --data D --out runs/ddp --zero 1`

// launchGrace is how long the other ranks get to end after one failed.
const launchGrace = 60 * time.Second

func runLaunch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet("launch", "gotune launch --nproc-per-node N -- COMMAND [flags]", launchDescription)
	nproc := fs.Int("nproc-per-node", 1, "number of processes (GPUs) to start")
	port := fs.Int("master-port", 0, "rendezvous `port` on 127.0.0.1 (0: a free one)")
	grace := fs.Duration("grace", launchGrace, "how long the other ranks may take to end after one failed before they are killed")
	own, rest := args, []string(nil)
	if i := slices.Index(args, "--"); i >= 0 {
		own, rest = args[:i], args[i+1:]
	}
	if err := parseFlags(fs, own, e); err != nil {
		if errors.Is(err, errHelp) {
			return nil
		}
		return err
	}
	switch {
	case *nproc < 1:
		return &usageError{msg: fmt.Sprintf("--nproc-per-node must be at least 1, got %d", *nproc)}
	case len(rest) == 0:
		return &usageError{msg: "launch needs -- and the command to run, e.g. gotune launch --nproc-per-node 2 -- train ..."}
	case *port < 0 || *port > 65535:
		return &usageError{msg: fmt.Sprintf("--master-port %d is not a TCP port", *port)}
	}
	if *port == 0 {
		p, err := freeLoopbackPort()
		if err != nil {
			return err
		}
		*port = p
	}
	self, err := os.Executable()
	if err != nil {
		return fmt.Errorf("launch: finding the gotune binary: %w", err)
	}
	return launchRanks(ctx, e, self, rest, *nproc, *port, *grace)
}

// freeLoopbackPort asks the kernel for a free TCP port on 127.0.0.1.
func freeLoopbackPort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("launch: finding a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}

// rankExit is how one rank ended.
type rankExit struct {
	rank int
	err  error
}

// launchRanks runs n ranks of bin args and waits for them.
func launchRanks(ctx context.Context, e *env, bin string, args []string, n, port int, grace time.Duration) error {
	cmds := make([]*exec.Cmd, n)
	done := make(chan rankExit, n)
	var outMu sync.Mutex
	for r := 0; r < n; r++ {
		c := exec.Command(bin, args...)
		c.Env = append(os.Environ(),
			"RANK="+strconv.Itoa(r), "WORLD_SIZE="+strconv.Itoa(n),
			"LOCAL_RANK="+strconv.Itoa(r), "LOCAL_WORLD_SIZE="+strconv.Itoa(n),
			"MASTER_ADDR=127.0.0.1", "MASTER_PORT="+strconv.Itoa(port))
		var wg sync.WaitGroup
		c.Stdout = rankWriter(e.Stdout, r, &outMu, &wg)
		c.Stderr = rankWriter(e.Stderr, r, &outMu, &wg)
		if err := c.Start(); err != nil {
			for _, s := range cmds[:r] {
				_ = s.Process.Kill()
			}
			return fmt.Errorf("launch: starting rank %d: %w", r, err)
		}
		cmds[r] = c
		go func(r int, c *exec.Cmd) {
			err := c.Wait()
			closeRankWriters(c)
			wg.Wait()
			done <- rankExit{r, err}
		}(r, c)
	}
	var first *rankExit
	var deadline <-chan time.Time
	interrupted := false
	for left := n; left > 0; {
		select {
		case x := <-done:
			left--
			if x.err != nil && first == nil {
				first = &x
				fmt.Fprintf(e.Stderr, "gotune launch: rank %d failed (%v); waiting up to %v for the other ranks to end\n", x.rank, x.err, grace)
				deadline = time.After(grace)
			}
		case <-deadline:
			for r, c := range cmds {
				if c.ProcessState == nil {
					fmt.Fprintf(e.Stderr, "gotune launch: killing rank %d, still running %v after rank %d failed\n", r, grace, first.rank)
					_ = c.Process.Kill()
				}
			}
			deadline = nil
		case <-ctx.Done():
			if !interrupted { // every rank finishes its step and saves, together
				interrupted = true
				for _, c := range cmds {
					_ = c.Process.Signal(syscall.SIGINT)
				}
			}
		}
	}
	if first != nil {
		return fmt.Errorf("launch: rank %d of %d failed (%v)", first.rank, n, first.err)
	}
	if interrupted {
		return errInterrupted
	}
	return nil
}

// rankWriter returns a pipe whose lines go to w, prefixed with the rank
// for every rank but 0.
func rankWriter(w io.Writer, rank int, mu *sync.Mutex, wg *sync.WaitGroup) io.Writer {
	pr, pw := io.Pipe()
	wg.Add(1)
	go func() {
		defer wg.Done()
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			mu.Lock()
			if rank == 0 {
				fmt.Fprintln(w, sc.Text())
			} else {
				fmt.Fprintf(w, "[rank %d] %s\n", rank, sc.Text())
			}
			mu.Unlock()
		}
		_, _ = io.Copy(io.Discard, pr)
	}()
	return pw
}

// closeRankWriters ends the pipes of a finished rank, so their readers
// drain and stop.
func closeRankWriters(c *exec.Cmd) {
	for _, w := range []io.Writer{c.Stdout, c.Stderr} {
		if pw, ok := w.(*io.PipeWriter); ok {
			pw.Close()
		}
	}
}
