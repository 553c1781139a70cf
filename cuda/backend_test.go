package cuda

import (
	"errors"
	"fmt"
	"math"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/backendtest"
)

// TestConformance runs the engine's backend conformance suite against the
// CUDA backend (on the emulator here: smaller shapes).
func TestConformance(t *testing.T) {
	b := testBackend(t)
	before := b.Stats() // the backend is shared with the other tests
	backendtest.Run(t, b, backendtest.Options{Short: onEmulator() || testing.Short(), Seed: 5})
	t.Logf("operations that used the host fallback: %s", b.StatsSummary())
	// Every attention case of the suite, options included, has a kernel.
	requireAttnNative(t, b, before)
}

func TestAllocatorReuseAndZeroFill(t *testing.T) {
	b := testBackend(t)
	// Fresh emulator memory is 0xFF (NaN); Alloc must still return zeros,
	// including for a block that held data before (reuse from the cache).
	x := b.Alloc(engine.Float32, 1000)
	b.Fill(x, 3)
	b.Free(x)
	before := b.MemoryInUse()
	for i := 0; i < 20; i++ {
		y := b.Alloc(engine.Float32, 1000)
		for j, v := range b.Download(y) {
			if v != 0 {
				t.Fatalf("iteration %d: Alloc element %d = %v, want 0", i, j, v)
			}
		}
		b.Free(y)
	}
	if after := b.MemoryInUse(); after != before {
		t.Errorf("alloc/free of one size grew device memory from %d to %d bytes", before, after)
	}
	// Odd bfloat16 counts are zeroed too (a 16-bit memset).
	z := b.Alloc(engine.BFloat16, 3, 3)
	for _, v := range b.Download(z) {
		if v != 0 {
			t.Fatalf("bf16 Alloc not zero: %v", v)
		}
	}
	// Freeing twice and using a freed tensor: the first is harmless, the
	// second a clear panic.
	b.Free(z)
	b.Free(z)
	func() {
		defer func() {
			if r := recover(); r == nil || !strings.Contains(fmt.Sprint(r), "freed") {
				t.Errorf("use after Free: recover() = %v", r)
			}
		}()
		b.Fill(z, 1)
	}()
}

// TestGarbageCollectedTensors checks that tensors dropped without Free
// give their device memory back to the allocator.
func TestGarbageCollectedTensors(t *testing.T) {
	b := testBackend(t)
	const n = 1 << 18
	b.Free(b.Alloc(engine.Float32, n)) // make sure one block of the class exists
	before := b.MemoryInUse()
	for i := 0; i < 30; i++ {
		_ = b.Alloc(engine.Float32, n) // never freed
		runtime.GC()
	}
	// Without cleanups this would hold 30 blocks; with them, a few at most.
	// Cleanups run on their own goroutine some time after a collection, so
	// wait (up to a generous bound) for them to catch up.
	grown := uint64(0)
	for try := 0; try < 200; try++ {
		if grown = (b.MemoryInUse() - before) / (4 * n); grown <= 10 {
			break
		}
		runtime.GC()
		time.Sleep(10 * time.Millisecond)
	}
	if grown > 10 {
		t.Errorf("%d unreachable tensors still hold device memory", grown)
	}
}

// TestErrorsAreRecorded checks the asynchronous error contract: a failed
// driver call is kept, later operations are skipped, Download returns
// NaN, and Synchronize reports (and clears) the first error.
func TestErrorsAreRecorded(t *testing.T) {
	b := testBackend(t)
	huge := b.Alloc(engine.Float32, 1<<40, 1<<8) // 1 PiB: out of memory
	b.Fill(huge, 1)
	small := b.Alloc(engine.Float32, 4)
	got := b.Download(small)
	if !math.IsNaN(float64(got[0])) {
		t.Errorf("Download after an error = %v, want NaN", got)
	}
	err := b.Synchronize()
	var oom *engine.OutOfMemoryError
	if !errors.As(err, &oom) || !IsOutOfMemory(err) || oom.Requested != 1<<50 || !strings.Contains(oom.Err.Error(), "cuMemAlloc_v2") {
		t.Fatalf("Synchronize = %v, want an engine.OutOfMemoryError for 1 PiB wrapping the driver's cuMemAlloc_v2 error", err)
	}
	if want := "out of device memory allocating 1073741824.0 MiB ("; !strings.Contains(err.Error(), want) {
		t.Errorf("Synchronize = %q, want it to contain %q", err, want)
	}
	if err := b.Synchronize(); err != nil {
		t.Fatalf("the error was not cleared: %v", err)
	}
	// The backend works again.
	ok := b.Alloc(engine.Float32, 4)
	b.Fill(ok, 2)
	if v := b.Download(ok); v[3] != 2 {
		t.Errorf("after recovery: %v", v)
	}
}

func TestStatsAndFallback(t *testing.T) {
	b := testBackend(t)
	before := b.Stats()
	x := b.Alloc(engine.Float32, 2, 3)
	b.Upload(x, []float32{1, 2, 3, 4, 5, 6})
	b.Scale(x, 2)
	// Int32 CopyBlock has no kernel: it takes the host path, which must
	// honour offsets and leave the rest of the storage alone.
	ids := b.Alloc(engine.Int32, 8)
	b.UploadInt32(ids, []int32{1, 2, 3, 4, 5, 6, 7, 8})
	b.CopyBlock(ids, 5, 0, ids, 0, 0, 1, 3, true)
	if got := b.DownloadInt32(ids); fmt.Sprint(got) != "[1 2 3 4 5 7 9 11]" {
		t.Errorf("Int32 CopyBlock (host fallback) = %v", got)
	}
	after := b.Stats()
	if after["Scale"].Native != before["Scale"].Native+1 {
		t.Errorf("Scale native count %d -> %d", before["Scale"].Native, after["Scale"].Native)
	}
	if after["CopyBlock"].Fallback != before["CopyBlock"].Fallback+1 {
		t.Errorf("CopyBlock fallback count %d -> %d", before["CopyBlock"].Fallback, after["CopyBlock"].Fallback)
	}
	if !strings.Contains(b.StatsSummary(), "CopyBlock×") {
		t.Errorf("StatsSummary %q does not list the fallback", b.StatsSummary())
	}
	if v := b.Download(x); v[5] != 12 {
		t.Errorf("Scale: %v", v)
	}
}

func TestSelectBackendWithDriver(t *testing.T) {
	requireDriver(t)
	if len(kernelImage()) == 0 {
		t.Skip("no embedded kernel image")
	}
	for _, dev := range []string{"auto", "cuda", "cuda:0"} {
		be, note, err := SelectBackend(dev)
		if err != nil {
			t.Fatalf("SelectBackend(%q): %v", dev, err)
		}
		if _, ok := be.(*Backend); !ok || !strings.Contains(note, "GPU") {
			t.Errorf("SelectBackend(%q) = %s (%q), want the GPU", dev, be.Name(), note)
		}
		if err := be.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	}
	if _, _, err := SelectBackend("cuda:7"); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Errorf("SelectBackend(cuda:7) error = %v", err)
	}
}
