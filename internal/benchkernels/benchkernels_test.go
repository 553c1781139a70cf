package benchkernels

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/gotune/gotune/cuda"
	"github.com/gotune/gotune/internal/benchutil"
)

// TestMain runs the GPU code path on the emulator when it is built.
func TestMain(m *testing.M) {
	benchutil.UseEmulator("../..")
	os.Exit(m.Run())
}

var allOps = []string{"gemm", "lora_fwd", "lora_bwd", "adapter_fwd", "adapter_bwd", "attn_fwd", "attn_fwdbwd", "attn_fwd_window", "attn_fwdbwd_window"}

func TestCPUTable(t *testing.T) {
	var out, log bytes.Buffer
	err := Run(context.Background(), []string{"--device", "cpu", "--quick", "--repeats", "2", "--warmup", "0"}, &out, &log)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	s := out.String()
	for _, want := range append([]string{"device:  CPU", "median ms", "TFLOP/s", "floor ms"}, allOps...) {
		if !strings.Contains(s, want) {
			t.Errorf("table lacks %q:\n%s", want, s)
		}
	}
	if strings.Contains(s, "cublas ") {
		t.Errorf("the CPU run lists cuBLAS results:\n%s", s)
	}
}

func TestCPUJSON(t *testing.T) {
	var out, log bytes.Buffer
	err := Run(context.Background(), []string{"--device=cpu", "--quick", "--json", "--repeats=1", "--warmup=0",
		"--peak-f32-tflops=1", "--bandwidth=50"}, &out, &log)
	if err != nil {
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	var rep Report
	if err := json.Unmarshal(out.Bytes(), &rep); err != nil {
		t.Fatalf("output is not JSON: %v\n%s", err, out.String())
	}
	seen := map[string]bool{}
	for _, r := range rep.Results {
		seen[r.Op] = true
		if !(r.MedianMs > 0) || r.FLOPs <= 0 || r.Bytes <= 0 || r.Repeats != 1 {
			t.Errorf("implausible result %+v", r)
		}
		// With both peaks given every operation has a floor, and the
		// fraction reached is floor/median by definition.
		if r.FloorMs <= 0 || r.Bound == "" {
			t.Errorf("%s: no floor with peaks given: %+v", r.Op, r)
		} else if d := r.OfFloor - r.FloorMs/r.MedianMs; d > 1e-12 || d < -1e-12 {
			t.Errorf("%s: of_floor %v != floor/median %v", r.Op, r.OfFloor, r.FloorMs/r.MedianMs)
		}
	}
	for _, op := range allOps {
		if !seen[op] {
			t.Errorf("no %s result", op)
		}
	}
}

// TestEmulatorRun runs the GPU code path (events, the CUDA backend, the
// cuBLAS probe) on the CPU emulator when it is built.
func TestEmulatorRun(t *testing.T) {
	if ok, reason := cuda.Available(); !ok {
		t.Skipf("no CUDA driver or emulator: %s", reason)
	}
	var out, log bytes.Buffer
	err := Run(context.Background(), []string{"--device", "cuda", "--quick", "--repeats", "1", "--warmup", "0"}, &out, &log)
	if err != nil {
		if strings.Contains(err.Error(), "kernel image") {
			t.Skipf("no embedded kernel image yet: %v", err)
		}
		t.Fatalf("Run: %v\n%s", err, log.String())
	}
	s := out.String()
	if !strings.Contains(s, "cuda:0") {
		t.Errorf("the report does not name the CUDA backend:\n%s", s)
	}
	for _, op := range allOps {
		if !strings.Contains(s, op) {
			t.Errorf("no %s row:\n%s", op, s)
		}
	}
}

func TestBadArguments(t *testing.T) {
	for _, args := range [][]string{{"--device", "tpu"}, {"--repeats", "-1"}, {"extra"}, {"--nope"}} {
		var out, log bytes.Buffer
		if err := Run(context.Background(), args, &out, &log); err == nil {
			t.Errorf("Run(%q) succeeded", args)
		} else if strings.Contains(err.Error(), "\n") || strings.Contains(log.String(), "-repeats") {
			// One line of error; the flag list only for --help.
			t.Errorf("Run(%q): error %q, log %q", args, err, log.String())
		}
	}
	var out, log bytes.Buffer
	if err := Run(context.Background(), []string{"--help"}, &out, &log); err != nil || !strings.Contains(out.String(), "bench kernels") || !strings.Contains(out.String(), "-repeats") {
		t.Errorf("--help: %v, %q", err, out.String())
	}
}

// TestFromEnvironment runs the benchmark with the flags in
// GOTUNE_BENCH_ARGS, printing to stdout, and is skipped otherwise. It lets
// scripts/gpu-check.sh run the benchmark from this package's prebuilt test
// binary on a machine without Go when no gotune binary was carried.
func TestFromEnvironment(t *testing.T) {
	args, ok := os.LookupEnv("GOTUNE_BENCH_ARGS")
	if !ok {
		t.Skip("GOTUNE_BENCH_ARGS is not set")
	}
	if err := Run(context.Background(), strings.Fields(args), os.Stdout, os.Stderr); err != nil {
		t.Fatal(err)
	}
}
