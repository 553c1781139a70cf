package cuda

import (
	"errors"
	"math"
	"strings"
	"testing"
	"unsafe"
)

// TestBindingWithDriver exercises every wrapped driver call through the
// loaded driver (the emulator here, the real driver on a GPU machine).
func TestBindingWithDriver(t *testing.T) {
	requireDriver(t)
	v, err := DriverVersion()
	if err != nil || v <= 0 {
		t.Fatalf("DriverVersion = %d, %v", v, err)
	}
	devs, err := Devices()
	if err != nil || len(devs) == 0 {
		t.Fatalf("Devices = %v, %v", devs, err)
	}
	d := devs[0]
	if d.Name == "" || d.SMs <= 0 || d.TotalMem == 0 || d.ComputeCapability() < 80 {
		t.Errorf("implausible device 0: %+v", d)
	}
	if _, err := OpenContext(len(devs)); err == nil {
		t.Errorf("OpenContext(%d) succeeded past the last device", len(devs))
	}
	ctx, err := OpenContext(0)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.Close()
	if free, total, err := ctx.MemInfo(); err != nil || total == 0 || free > total {
		t.Errorf("MemInfo = %d, %d, %v", free, total, err)
	}
	s, err := ctx.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	defer s.Destroy()

	// Memory: sync and async copies, memsets of each width, pinned memory.
	const n = 1000
	p, err := ctx.MemAlloc(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.MemFree(p)
	q, err := ctx.MemAlloc(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	defer ctx.MemFree(q)
	src := make([]float32, n)
	for i := range src {
		src[i] = float32(i)*0.5 - 7
	}
	if err := ctx.CopyHtoD(p, unsafe.Pointer(&src[0]), 4*n); err != nil {
		t.Fatal(err)
	}
	if err := ctx.CopyDtoD(q, p, 4*n, s); err != nil {
		t.Fatal(err)
	}
	hb, err := ctx.AllocHost(4 * n)
	if err != nil {
		t.Fatal(err)
	}
	defer hb.Free()
	if err := ctx.CopyDtoHAsync(hb, 0, q, 4*n, s); err != nil {
		t.Fatal(err)
	}
	if err := s.Synchronize(); err != nil {
		t.Fatal(err)
	}
	got := unsafe.Slice((*float32)(unsafe.Pointer(&hb.Bytes()[0])), n)
	for i := range got {
		if got[i] != src[i] {
			t.Fatalf("round trip [%d] = %v, want %v", i, got[i], src[i])
		}
	}
	for _, width := range []int{1, 2, 4} {
		for _, async := range []bool{false, true} {
			var st *Stream
			if async {
				st = s
			}
			val := uint32(0xA5C3B7E1) & (1<<(8*width) - 1)
			if width == 4 {
				val = 0xA5C3B7E1
			}
			count := uint64(4 * n / width)
			if err := ctx.CopyHtoD(p, unsafe.Pointer(&src[0]), 4*n); err != nil {
				t.Fatal(err)
			}
			if err := ctx.Memset(p, width, val, count-1, st); err != nil {
				t.Fatal(err)
			}
			if err := s.Synchronize(); err != nil {
				t.Fatal(err)
			}
			raw := make([]byte, 4*n)
			if err := ctx.CopyDtoH(unsafe.Pointer(&raw[0]), p, 4*n); err != nil {
				t.Fatal(err)
			}
			for i := 0; i < int(count-1)*width; i++ {
				if raw[i] != byte(val>>(8*(i%width))) {
					t.Fatalf("memset width %d async %v: byte %d = %#x", width, async, i, raw[i])
				}
			}
			// The last element was excluded: it still holds the copy.
			last := raw[4*n-width:]
			want := unsafe.Slice((*byte)(unsafe.Pointer(&src[0])), 4*n)[4*n-width:]
			if string(last) != string(want) {
				t.Fatalf("memset width %d wrote past its count", width)
			}
		}
	}
	if err := ctx.Memset(p, 3, 0, 1, nil); err == nil {
		t.Errorf("Memset width 3 accepted")
	}
	if err := ctx.CopyHtoDAsync(p, hb, 4*n-4, 8, s); err == nil {
		t.Errorf("a host-buffer range past its end was accepted")
	}

	// Events time a stretch of the stream.
	e0, err := ctx.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer e0.Destroy()
	e1, err := ctx.NewEvent()
	if err != nil {
		t.Fatal(err)
	}
	defer e1.Destroy()
	if err := e0.Record(s); err != nil {
		t.Fatal(err)
	}
	if err := ctx.CopyDtoD(q, p, 4*n, s); err != nil {
		t.Fatal(err)
	}
	if err := e1.Record(s); err != nil {
		t.Fatal(err)
	}
	if err := e1.Synchronize(); err != nil {
		t.Fatal(err)
	}
	if ms, err := ElapsedMs(e0, e1); err != nil || ms < 0 || math.IsNaN(float64(ms)) {
		t.Errorf("ElapsedMs = %v, %v", ms, err)
	}
	// A second stream ordered after an event of the first (the NCCL
	// stream of data-parallel training waits so for the gradients).
	side, err := ctx.NewStream()
	if err != nil {
		t.Fatal(err)
	}
	defer side.Destroy()
	if err := side.WaitEvent(e1); err != nil {
		t.Fatal(err)
	}
	if err := side.Synchronize(); err != nil {
		t.Fatal(err)
	}

	// Modules, functions, attributes and a launch.
	mod, err := ctx.LoadModule(testImage())
	if err != nil {
		t.Fatal(err)
	}
	defer mod.Unload()
	_, err = mod.Function("gt_no_such_kernel")
	var ce *Error
	if !errors.As(err, &ce) || ce.Call != "cuModuleGetFunction" || ce.Name != "CUDA_ERROR_NOT_FOUND" {
		t.Errorf("missing kernel error = %v", err)
	} else if !strings.Contains(err.Error(), "gt_no_such_kernel") {
		t.Errorf("error %q does not name the kernel", err)
	}
	fill, err := mod.Function("gt_fill")
	if err != nil {
		t.Fatal(err)
	}
	attrs, err := fill.Attributes()
	if err != nil || attrs.MaxThreadsPerBlock < 256 {
		t.Errorf("gt_fill attributes %+v, %v", attrs, err)
	}
	if err := fill.SetMaxDynamicShared(64 << 10); err != nil {
		t.Errorf("SetMaxDynamicShared: %v", err)
	}
	if a, err := fill.Attributes(); err != nil || a.MaxDynamicShared != 64<<10 {
		t.Errorf("after SetMaxDynamicShared(64 KB): %+v, %v", a, err)
	}
	if err := fill.Launch(Dim3{3, 1, 1}, Dim3{64, 1, 1}, 0, s, p, 0, n-1, float32(2.25)); err != nil {
		t.Fatal(err)
	}
	if err := s.Synchronize(); err != nil {
		t.Fatal(err)
	}
	if err := ctx.CopyDtoH(unsafe.Pointer(&got[0]), p, 4*n); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n-1; i++ {
		if got[i] != 2.25 {
			t.Fatalf("gt_fill [%d] = %v", i, got[i])
		}
	}
	// A launch with a wrong grid is an error naming the call and kernel.
	err = fill.Launch(Dim3{1, 1, 1}, Dim3{2048, 1, 1}, 0, s, p, 0, n, float32(1))
	if !errors.As(err, &ce) || ce.Call != "cuLaunchKernel" || !strings.Contains(err.Error(), "gt_fill") {
		t.Errorf("oversized block: error %v", err)
	}
	if err := fill.Launch(Dim3{0, 1, 1}, Dim3{1, 1, 1}, 0, s); err == nil {
		t.Errorf("empty grid accepted")
	}
	if err := ctx.Synchronize(); err != nil {
		t.Errorf("cuCtxSynchronize: %v", err)
	}
}
