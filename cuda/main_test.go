package cuda

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// defaultEmulator is where `make emu` puts the CPU emulator, relative to
// this package's directory.
const defaultEmulator = "../kernels/emu/build/libcuda.so"

// TestMain points the driver at the emulator when the caller has not
// chosen a library and the emulator is built; otherwise the tests use the
// machine's driver (libcuda.so.1) if there is one.
// GOTUNE_LIBCUDA=libcuda.so.1 selects the real driver explicitly even when
// the emulator is built (scripts/gpu-check.sh does that).
func TestMain(m *testing.M) {
	if os.Getenv(EnvLibrary) == "" {
		if p, err := filepath.Abs(defaultEmulator); err == nil {
			if _, err := os.Stat(p); err == nil {
				os.Setenv(EnvLibrary, p)
			}
		}
	}
	os.Exit(m.Run())
}

// emuRequired reports whether a missing driver must fail the tests rather
// than skip them: CI builds the emulator first, so its absence is a bug.
func emuRequired() bool {
	return os.Getenv("CI") == "true" || os.Getenv("GOTUNE_REQUIRE_EMU") == "1"
}

// requireDriver skips (or, in CI, fails) the test when no usable device
// can be loaded: the emulator (found by TestMain or named by
// GOTUNE_LIBCUDA), or else the machine's real driver.
func requireDriver(t testing.TB) {
	t.Helper()
	if ok, reason := Available(); !ok {
		msg := fmt.Sprintf("no usable CUDA driver (%s); build the emulator with `make emu` (%s) or set %s", reason, defaultEmulator, EnvLibrary)
		if emuRequired() {
			t.Fatal(msg + " [required: CI=true or GOTUNE_REQUIRE_EMU=1]")
		}
		t.Skip(msg)
	}
}

// onEmulator reports whether the loaded driver is gotune's CPU emulator
// (tests then use smaller shapes: it is thousands of times slower).
func onEmulator() bool {
	devs, err := Devices()
	return err == nil && len(devs) > 0 && strings.Contains(devs[0].Name, "emulator")
}

var shared struct {
	once sync.Once
	b    *Backend
	err  error
}

// testImage is the kernel image tests load: the file named by
// GOTUNE_TEST_IMAGE (scripts/gpu-check.sh runs the kernel tests again on a
// cubin the device's own nvcc built), else the embedded fatbin, else on the
// emulator (which has the kernels compiled in and ignores the image) a
// placeholder.
func testImage() []byte {
	if p := os.Getenv("GOTUNE_TEST_IMAGE"); p != "" {
		img, err := os.ReadFile(p)
		if err != nil {
			panic(fmt.Sprintf("GOTUNE_TEST_IMAGE: %v", err))
		}
		return img
	}
	if img := kernelImage(); len(img) > 0 {
		return img
	}
	if onEmulator() {
		return []byte("gotune emulator placeholder image")
	}
	return nil
}

// testBackend returns the package's shared CUDA backend (opening a backend
// is cheap, but one keeps the tests' device memory in one pool).
func testBackend(t testing.TB) *Backend {
	t.Helper()
	requireDriver(t)
	shared.once.Do(func() {
		shared.b, shared.err = NewBackend(Options{Image: testImage()})
	})
	if shared.err != nil {
		t.Fatalf("NewBackend: %v", shared.err)
	}
	if err := shared.b.Err(); err != nil {
		t.Fatalf("the shared backend carries an error from an earlier test: %v", err)
	}
	return shared.b
}
