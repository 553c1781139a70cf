package continual

import (
	"fmt"
	"os"
	"testing"

	"github.com/gotune/gotune/cuda"
	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
)

// examples returns n one-target examples whose first ids are base, base+1, ...
func examples(n, base int) []data.Example {
	out := make([]data.Example, n)
	for i := range out {
		out[i] = data.Example{InputIDs: []int32{int32(base + i), 1}, Labels: []int32{data.IgnoreIndex, 1}}
	}
	return out
}

// backends returns the CPU backend and, where a CUDA driver loads (the
// emulator under make test), the CUDA backend; a missing driver fails the
// test where one is required (CI=true or GOTUNE_REQUIRE_EMU=1).
func backends(t *testing.T) map[string]engine.Backend {
	t.Helper()
	out := map[string]engine.Backend{"cpu": cpu.New()}
	if ok, reason := cuda.Available(); !ok {
		if os.Getenv("CI") == "true" || os.Getenv("GOTUNE_REQUIRE_EMU") == "1" {
			t.Fatal(fmt.Sprintf("no usable CUDA driver (%s)", reason))
		}
		return out
	}
	be, err := cuda.NewBackend(cuda.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	out["cuda"] = be
	return out
}

// param returns a trainable parameter holding w with a zero gradient.
func param(be engine.Backend, name string, w []float32, shape ...int) *engine.Param {
	p := &engine.Param{Name: name, W: be.Alloc(engine.Float32, shape...), G: be.Alloc(engine.Float32, shape...), Trainable: true}
	be.Upload(p.W, w)
	return p
}

func tensor(be engine.Backend, v []float32, shape ...int) *engine.Tensor {
	t := be.Alloc(engine.Float32, shape...)
	be.Upload(t, v)
	return t
}
