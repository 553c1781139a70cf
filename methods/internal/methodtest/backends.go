package methodtest

import (
	"context"
	"fmt"
	"math"
	"os"
	"testing"

	"github.com/gotune/gotune/cuda"
	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
)

// CUDABackend opens a CUDA backend through the driver GOTUNE_LIBCUDA
// names (make test points it at the emulator, kernels/emu) and closes it
// when the test ends. Without a driver the test is skipped, or fails
// where one is required (CI=true or GOTUNE_REQUIRE_EMU=1).
func CUDABackend(t *testing.T) *cuda.Backend {
	t.Helper()
	if ok, reason := cuda.Available(); !ok {
		msg := fmt.Sprintf("no usable CUDA driver (%s); run through make test to use the emulator", reason)
		if os.Getenv("CI") == "true" || os.Getenv("GOTUNE_REQUIRE_EMU") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	be, err := cuda.NewBackend(cuda.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { be.Close() })
	return be
}

// Trace is what a golden set's method computes on one backend: the
// logits and every trainable tensor's gradient at the initial adapter,
// then each training step's loss and gradient norm, and the trained
// tensors.
type Trace struct {
	Logits            []float32
	Grads, Trained    map[string][]float32
	Losses, GradNorms []float64
}

// RecordTrace installs the method on the set's base model loaded on be and
// records its Trace through the run's training steps.
func RecordTrace(t *testing.T, set *golden.MethodSet, be engine.Backend, install Installer) Trace {
	t.Helper()
	m, err := model.Load(set.BaseDir(), be)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := install(m, set); err != nil {
		t.Fatal(err)
	}
	loader := Loader(t, set)
	hb := loader.Batch(0, 0)
	tr := Trace{Logits: Logits(t, m, hb), Grads: map[string][]float32{}, Trained: map[string][]float32{}}
	if _, err := train.ForwardBatch(m, hb, true, float32(1/float64(train.Counted(m, hb)))); err != nil {
		t.Fatal(err)
	}
	for _, p := range trainable(m) {
		tr.Grads[p.Name] = be.Download(p.G)
		be.Fill(p.G, 0)
	}
	loader.Seek(0, 0)
	trainer, err := train.New(m, loader, TrainConfig(t, &set.Meta.Run), train.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer trainer.Close()
	res, err := trainer.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range res.History {
		tr.Losses = append(tr.Losses, h.Loss)
		tr.GradNorms = append(tr.GradNorms, h.GradNorm)
	}
	for _, p := range trainable(m) {
		tr.Trained[p.Name] = be.Download(p.W)
	}
	return tr
}

// CompareBackends runs the set's method on the CPU and on other and
// fails the test where other's Trace differs by more than tol (relative,
// per tensor or per step); it returns the largest difference found.
func CompareBackends(t *testing.T, set *golden.MethodSet, other engine.Backend, install Installer, tol float64) float64 {
	t.Helper()
	ref := cpu.New()
	defer ref.Close()
	want := RecordTrace(t, set, ref, install)
	got := RecordTrace(t, set, other, install)
	worst := 0.0
	check := func(what string, e float64) {
		worst = math.Max(worst, e)
		if !(e <= tol) {
			t.Errorf("%s on %s: rel err %.3g from the CPU's > %.3g", what, other.Name(), e, tol)
		}
	}
	check("logits", golden.RelErr(got.Logits, want.Logits))
	for _, tensors := range []struct {
		what      string
		got, want map[string][]float32
	}{{"gradient", got.Grads, want.Grads}, {"trained", got.Trained, want.Trained}} {
		if len(tensors.got) != len(tensors.want) || len(tensors.want) == 0 {
			t.Fatalf("%d %s tensors on %s, %d on the CPU", len(tensors.got), tensors.what, other.Name(), len(tensors.want))
		}
		for name, w := range tensors.want {
			check(tensors.what+" of "+name, golden.RelErr(tensors.got[name], w))
		}
	}
	if len(got.Losses) != len(want.Losses) {
		t.Fatalf("%d steps on %s, %d on the CPU", len(got.Losses), other.Name(), len(want.Losses))
	}
	for i := range want.Losses {
		check(fmt.Sprintf("step %d loss", i+1), relDiff(got.Losses[i], want.Losses[i]))
		check(fmt.Sprintf("step %d gradient norm", i+1), relDiff(got.GradNorms[i], want.GradNorms[i]))
	}
	return worst
}

// relDiff is |got − want| / |want| (the absolute difference when want is 0).
func relDiff(got, want float64) float64 {
	d := math.Abs(got - want)
	if want != 0 {
		d /= math.Abs(want)
	}
	return d
}

// RequireNative fails the test unless each of ops ran natively on b
// since before (a Stats snapshot) and no operation at all fell back to
// the host.
func RequireNative(t *testing.T, b *cuda.Backend, before map[string]cuda.OpStats, ops ...string) {
	t.Helper()
	requireNative(t, b, before, nil, ops...)
}

// requireNative is RequireNative with the fallbacks of the ops in
// mayFallBack allowed.
func requireNative(t *testing.T, b *cuda.Backend, before map[string]cuda.OpStats, mayFallBack map[string]bool, ops ...string) {
	t.Helper()
	after := b.Stats()
	for _, op := range ops {
		if n := after[op].Native - before[op].Native; n <= 0 {
			t.Errorf("%s did not run on %s", op, b.Name())
		}
	}
	for op, s := range after {
		if n := s.Fallback - before[op].Fallback; n > 0 && !mayFallBack[op] {
			t.Errorf("%s fell back to the host %d times", op, n)
		}
	}
}

// CheckCUDA runs, as one subtest per set, CompareBackends on a CUDA
// backend (CUDABackend) with the method installed from the set's initial
// adapter folder by load, and RequireNative for ops: the method must
// compute the same on both backends (within 1e-5), through ops, with no
// host fallback.
func CheckCUDA(t *testing.T, sets []*golden.MethodSet, load FolderLoader, ops ...string) {
	t.Helper()
	be := CUDABackend(t)
	install := func(m model.Model, set *golden.MethodSet) (train.Saver, error) {
		return load(m, set.AdapterDir(), false)
	}
	for _, set := range sets {
		t.Run(set.Meta.Name, func(t *testing.T) {
			before := be.Stats()
			worst := CompareBackends(t, set, be, install, 1e-5)
			t.Logf("largest relative difference from the CPU: %.3g", worst)
			requireNative(t, be, before, nil, ops...)
		})
	}
}
