package cuda

import (
	"errors"
	"math"
	"os"
	"os/exec"
	"strings"
	"testing"
	"unsafe"
)

// TestNoDriver runs this test binary again with the driver path pointing
// at a file that does not exist, and checks that the package reports the
// GPU as unavailable with a clean error instead of crashing, that --device
// auto falls back to the CPU and that --device cuda fails clearly. A child
// process is needed because the driver is loaded once per process.
func TestNoDriver(t *testing.T) {
	if os.Getenv("GOTUNE_CUDA_TEST_CHILD") == "nodriver" {
		t.Skip("running as the child")
	}
	cmd := exec.Command(os.Args[0], "-test.run=^TestNoDriverChild$", "-test.v")
	cmd.Env = append(os.Environ(), "GOTUNE_CUDA_TEST_CHILD=nodriver", EnvLibrary+"=/nonexistent/libcuda-missing.so.1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("child failed: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "--- PASS: TestNoDriverChild") {
		t.Fatalf("child did not run the check:\n%s", out)
	}
}

// TestNoDriverChild is the body of TestNoDriver (it only runs as the child).
func TestNoDriverChild(t *testing.T) {
	if os.Getenv("GOTUNE_CUDA_TEST_CHILD") != "nodriver" {
		t.Skip("only runs as TestNoDriver's child process")
	}
	ok, reason := Available()
	if ok {
		t.Fatalf("Available() = true with a missing driver library")
	}
	if !strings.Contains(reason, "libcuda-missing.so.1") {
		t.Errorf("reason %q does not name the library", reason)
	}
	if err := Init(); err == nil || !strings.Contains(err.Error(), "cannot load the CUDA driver") {
		t.Errorf("Init() = %v, want a load error", err)
	}
	if _, err := DeviceCount(); err == nil {
		t.Errorf("DeviceCount succeeded without a driver")
	}
	if _, err := NewBackend(Options{}); err == nil {
		t.Errorf("NewBackend succeeded without a driver")
	}
	be, note, err := SelectBackend("auto")
	if err != nil || be == nil || be.Name() != "cpu" {
		t.Fatalf("SelectBackend(auto) = %v, %q, %v; want the CPU backend", be, note, err)
	}
	if !strings.Contains(note, "CPU") || !strings.Contains(note, "no usable GPU") {
		t.Errorf("auto note %q does not say it fell back to the CPU and why", note)
	}
	if _, _, err := SelectBackend("cuda"); err == nil || !strings.Contains(err.Error(), "no usable GPU") {
		t.Errorf("SelectBackend(cuda) error = %v, want 'no usable GPU'", err)
	}
}

func TestSelectBackendArguments(t *testing.T) {
	for _, tc := range []struct {
		device string
		ok     bool
	}{
		{"cpu", true},
		{"tpu", false},
		{"cuda:x", false},
		{"cuda:1x", false},
	} {
		be, _, err := SelectBackend(tc.device)
		if (err == nil) != tc.ok {
			t.Errorf("SelectBackend(%q) error = %v, want ok=%v", tc.device, err, tc.ok)
		}
		if err == nil && be.Name() != "cpu" {
			t.Errorf("SelectBackend(%q) = %s", tc.device, be.Name())
		}
	}
}

func TestArgBufferLayout(t *testing.T) {
	var ab argBuffer
	for _, a := range []any{int32(-2), DevicePtr(0x1122334455667788), float32(1.5), int(7), uint64(9)} {
		if err := ab.add(a); err != nil {
			t.Fatal(err)
		}
	}
	wantOffs := []int32{0, 8, 16, 20, 24} // pointers and 64-bit values 8-aligned
	for i, o := range wantOffs {
		if ab.offs[i] != o {
			t.Fatalf("offsets %v, want %v", ab.offs, wantOffs)
		}
	}
	if v := *(*int32)(unsafe.Pointer(&ab.buf[0])); v != -2 {
		t.Errorf("int32 = %d", v)
	}
	if v := *(*uint64)(unsafe.Pointer(&ab.buf[8])); v != 0x1122334455667788 {
		t.Errorf("pointer = %#x", v)
	}
	if v := *(*float32)(unsafe.Pointer(&ab.buf[16])); v != 1.5 {
		t.Errorf("float = %v", v)
	}
	if err := ab.add(int(1) << 40); err == nil {
		t.Errorf("an int beyond 32 bits was accepted")
	}
	if err := ab.add("x"); err == nil {
		t.Errorf("a string parameter was accepted")
	}
}

func TestSizeClass(t *testing.T) {
	for _, n := range []uint64{0, 1, 511, 512, 513, 1 << 20, 1<<20 + 1, 3 << 20, 1<<30 - 1, 1 << 30, 5<<30 + 7} {
		c := sizeClass(n)
		if c < n || c < 1 {
			t.Errorf("sizeClass(%d) = %d, smaller than the request", n, c)
		}
		if n > 1<<20 && float64(c) > float64(n)*1.125+1 {
			t.Errorf("sizeClass(%d) = %d wastes more than 12.5%%", n, c)
		}
		if sizeClass(c) != c {
			t.Errorf("sizeClass is not idempotent at %d -> %d -> %d", n, c, sizeClass(c))
		}
	}
}

// TestBF16Rounding checks the host conversion against its definition:
// the nearest bfloat16 (ties to the even mantissa), computed from the two
// neighbouring candidates in float64.
func TestBF16Rounding(t *testing.T) {
	vals := []float32{0, -0, 1, -1, 1.00390625, 1.01171875, 3.14159, 65504, 1e-30, -2.5e38, float32(math.Inf(1))}
	for i := 0; i < 2000; i++ {
		vals = append(vals, math.Float32frombits(uint32(i)*2654435761))
	}
	for _, v := range vals {
		if math.IsNaN(float64(v)) {
			if got := bf16ToF32(f32ToBF16(v)); !math.IsNaN(float64(got)) {
				t.Errorf("NaN %#x rounded to %v", math.Float32bits(v), got)
			}
			continue
		}
		if math.IsInf(float64(v), 0) || math.Abs(float64(v)) > 3.3e38 {
			continue
		}
		u := math.Float32bits(v)
		lo := math.Float32frombits(u &^ 0xffff)
		hi := math.Float32frombits((u &^ 0xffff) + 0x10000)
		dlo := math.Abs(float64(v) - float64(lo))
		dhi := math.Abs(float64(hi) - float64(v))
		want := lo
		if dhi < dlo || (dhi == dlo && (u>>16)&1 == 1) {
			want = hi
		}
		if got := bf16ToF32(f32ToBF16(v)); got != want {
			t.Errorf("bf16(%v = %#x) = %v, want %v", v, u, got, want)
		}
	}
}

func TestErrorMessage(t *testing.T) {
	e := check(2, "cuMemAlloc_v2", "%d bytes", 1024)
	var ce *Error
	if !errors.As(e, &ce) || ce.Call != "cuMemAlloc_v2" || ce.Code != 2 {
		t.Fatalf("check = %#v", e)
	}
	if !strings.Contains(e.Error(), "cuMemAlloc_v2(1024 bytes)") || !IsOutOfMemory(e) {
		t.Errorf("message %q", e.Error())
	}
	e = check(201|ctxFailFlag, "cuLaunchKernel", "")
	if !errors.As(e, &ce) || ce.Call != "cuCtxSetCurrent" || ce.Code != 201 {
		t.Errorf("a failed context switch is reported as %#v", e)
	}
	if check(0, "cuInit", "") != nil {
		t.Errorf("success reported as an error")
	}
}
