// Package methodtest checks a fine-tuning method against the PyTorch
// golden values of testdata/golden/methods (see internal/golden): the
// loss and logits at the initial adapter, the first step's gradient of
// every trainable tensor, a 3-step AdamW trajectory through the train
// package, the trained tensors, and the files the method saves. Method
// packages call Check from their tests with a function that installs the
// method from the set's adapter folder.
package methodtest

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/data"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/model"
	"github.com/gotune/gotune/engine/safetensors"
	"github.com/gotune/gotune/engine/train"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/peft"
)

// Root is the golden method sets' folder as seen from a package two
// levels below the repository root (methods/<name>).
const Root = "../../testdata/golden/methods"

// Sets returns the golden method sets of one --method, in name order.
func Sets(t *testing.T, root, method string) []*golden.MethodSet {
	t.Helper()
	sets, err := golden.LoadMethods(root)
	if err != nil {
		t.Fatal(err)
	}
	var out []*golden.MethodSet
	for _, s := range sets {
		if s.Meta.Run.Method == method {
			out = append(out, s)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no golden set for --method %s in %s", method, root)
	}
	return out
}

// Installer installs the method on m from the set's initial adapter and
// returns what saves it, or nil for a method that saves the full model
// (freeze; Check then skips the saved-folder checks).
type Installer func(m model.Model, set *golden.MethodSet) (train.Saver, error)

// Reloader installs a saved adapter folder on a fresh base model for
// inference.
type Reloader func(m model.Model, dir string) error

// FolderLoader installs the adapter folder dir on m: for training, or
// frozen for inference. Methods with a Load(m, dir, LoadOptions{Frozen})
// wrap it in one line.
type FolderLoader func(m model.Model, dir string, frozen bool) (train.Saver, error)

// CheckSets runs Check, as a subtest named after the set, on every golden
// set of the given --method values, installing the method from the set's
// initial adapter folder with load and reloading the folder it saves with
// load(…, frozen=true).
func CheckSets(t *testing.T, load FolderLoader, methods ...string) {
	t.Helper()
	for _, method := range methods {
		for _, set := range Sets(t, Root, method) {
			t.Run(set.Meta.Name, func(t *testing.T) {
				Check(t, set,
					func(m model.Model, set *golden.MethodSet) (train.Saver, error) {
						return load(m, set.AdapterDir(), false)
					},
					func(m model.Model, dir string) error {
						_, err := load(m, dir, true)
						return err
					})
			})
		}
	}
}

// Check runs every comparison for one set, and checks that every base
// weight the method leaves frozen is unchanged by the run. reload, if not nil, is used to
// check that the folder the method saves after training loads back into
// a fresh model computing the same logits.
func Check(t *testing.T, set *golden.MethodSet, install Installer, reload Reloader) {
	t.Helper()
	be := cpu.New()
	defer be.Close()
	m, err := model.Load(set.BaseDir(), be)
	if err != nil {
		t.Fatal(err)
	}
	before := map[string][]float32{}
	for _, p := range m.BaseParams() {
		before[p.Name] = be.Download(p.W)
	}
	saver, err := install(m, set)
	if err != nil {
		t.Fatal(err)
	}
	run := &set.Meta.Run
	checkTrainable(t, m, run)

	loader := Loader(t, set)

	// Logits of the real positions and the loss at the initial adapter.
	hb := loader.Batch(0, 0)
	logits := Logits(t, m, hb)
	wantLogits, shape := set.Tensor("logits")
	Pv := set.Meta.PrependedTokens
	if e := golden.RelErr(logits, realRows(wantLogits, shape, Pv)); e > 1e-5 {
		t.Errorf("logits: rel err %.3g > 1e-5", e)
	}
	counted := train.Counted(m, hb)
	if counted != run.CountedTokens[0] {
		t.Errorf("first batch: %d counted tokens, PyTorch %d", counted, run.CountedTokens[0])
	}
	lossSum, err := train.ForwardBatch(m, hb, true, float32(1/float64(counted)))
	if err != nil {
		t.Fatal(err)
	}
	wantLoss, _ := set.Tensor("loss")
	if e := math.Abs(lossSum/float64(counted)-float64(wantLoss[0])) / math.Abs(float64(wantLoss[0])); e > 1e-5 {
		t.Errorf("loss %.8g, PyTorch %.8g (rel err %.2g > 1e-5)", lossSum/float64(counted), wantLoss[0], e)
	}
	for _, p := range trainable(m) {
		want, _ := set.Tensor("grad." + p.Name)
		if want == nil {
			continue // reported by checkTrainable
		}
		if e := golden.RelErr(be.Download(p.G), want); e > 1e-4 {
			t.Errorf("gradient of %s: rel err %.3g > 1e-4", p.Name, e)
		}
		be.Fill(p.G, 0)
	}

	// The run, through the trainer.
	loader.Seek(0, 0)
	tr, err := train.New(m, loader, TrainConfig(t, run), train.Options{Saver: saver})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	res, err := tr.Run(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	CheckHistory(t, set, res.History)
	norms, _ := set.Tensor("grad_norms")
	for _, p := range trainable(m) {
		want, _ := set.Tensor("after." + p.Name)
		grad, _ := set.Tensor("grad." + p.Name)
		if want == nil {
			continue
		}
		if msg := CompareAfter(be.Download(p.W), want, grad, float64(norms[0]), run.LR, run.Steps); msg != "" {
			t.Errorf("%s after %d steps: %s", p.Name, run.Steps, msg)
		}
	}
	for _, p := range m.BaseParams() {
		if !p.Trainable && !slices.Equal(be.Download(p.W), before[p.Name]) {
			t.Errorf("frozen %s changed", p.Name)
		}
	}

	// What the method saves.
	if saver == nil {
		return
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	if err := saver.Save(dir); err != nil {
		t.Fatal(err)
	}
	CheckSaved(t, set, dir)
	if reload != nil {
		trained := Logits(t, m, hb)
		be2 := cpu.New()
		defer be2.Close()
		m2, err := model.Load(set.BaseDir(), be2)
		if err != nil {
			t.Fatal(err)
		}
		if err := reload(m2, dir); err != nil {
			t.Fatalf("loading the saved adapter: %v", err)
		}
		for _, p := range m2.Params() {
			if p.Trainable {
				t.Errorf("%s is trainable after loading for inference", p.Name)
			}
		}
		if e := golden.RelErr(Logits(t, m2, hb), trained); e > 1e-6 {
			t.Errorf("logits of the reloaded adapter: rel err %.3g from the trained model's", e)
		}
	}
}

// Loader returns the set's training data, batched as the run was.
func Loader(t *testing.T, set *golden.MethodSet) *data.Loader {
	t.Helper()
	run := &set.Meta.Run
	hc, err := hfconfig.Load(set.BaseDir())
	if err != nil {
		t.Fatal(err)
	}
	ds, err := data.Load(set.Path(set.Meta.Data), data.LoadOptions{VocabSize: hc.VocabSize})
	if err != nil {
		t.Fatal(err)
	}
	loader, err := data.NewLoader(ds, data.LoaderConfig{BatchSize: run.BatchSize, SeqLen: run.SeqLen, Shuffle: run.Shuffle})
	if err != nil {
		t.Fatal(err)
	}
	return loader
}

// TrainConfig returns the run's trainer configuration.
func TrainConfig(t *testing.T, run *golden.Run) train.Config {
	t.Helper()
	sched, err := train.ParseSchedule(run.Schedule)
	if err != nil {
		t.Fatal(err)
	}
	return train.Config{
		Steps: run.Steps, GradAccum: run.GradAccum, LR: run.LR, Schedule: sched,
		WarmupSteps: run.WarmupSteps, ScheduleSteps: run.TotalSteps,
		WeightDecay: run.WeightDecay, Beta1: run.Betas[0], Beta2: run.Betas[1], Eps: run.Eps,
		MaxGradNorm: run.MaxGradNorm,
	}
}

// Logits returns a copy of the model's logits for the real tokens of hb
// ([B·T, V]); hb's rows must be unpadded.
func Logits(t *testing.T, m model.Model, hb data.Batch) []float32 {
	t.Helper()
	lg, err := m.Logits(nil, hb.InputIDs, hb.B, hb.T, true)
	if err != nil {
		t.Fatal(err)
	}
	return append([]float32(nil), m.Backend().Download(lg)...)
}

// realRows drops the first Pv positions of logits [B, T+Pv, V].
func realRows(x []float32, shape []int, Pv int) []float32 {
	B, T, V := shape[0], shape[1], shape[2]
	var out []float32
	for b := 0; b < B; b++ {
		out = append(out, x[(b*T+Pv)*V:(b+1)*T*V]...)
	}
	return out
}

// trainable returns m's trainable parameters.
func trainable(m model.Model) []*engine.Param {
	var out []*engine.Param
	for _, p := range m.Params() {
		if p.Trainable {
			out = append(out, p)
		}
	}
	return out
}

// checkTrainable checks that exactly the run's tensors train, with the
// reference's shapes and decay flags.
func checkTrainable(t *testing.T, m model.Model, run *golden.Run) {
	t.Helper()
	want := map[string]golden.Param{}
	for _, p := range run.Trainable {
		want[p.Name] = p
	}
	got := map[string]bool{}
	for _, p := range trainable(m) {
		got[p.Name] = true
		w, ok := want[p.Name]
		switch {
		case !ok:
			t.Errorf("%s trains, but the reference does not train it", p.Name)
		case !slices.Equal(p.W.Shape(), w.Shape):
			t.Errorf("%s has shape %v, the reference %v", p.Name, p.W.Shape(), w.Shape)
		case p.Decay != w.Decay:
			t.Errorf("%s: Decay = %v, the reference uses %v", p.Name, p.Decay, w.Decay)
		}
	}
	for n := range want {
		if !got[n] {
			t.Errorf("the reference trains %s, the model has no such trainable tensor", n)
		}
	}
}

// CheckHistory compares a run's per-step metrics with the reference's.
func CheckHistory(t *testing.T, set *golden.MethodSet, hist []train.StepMetrics) {
	t.Helper()
	for _, msg := range golden.CompareSteps(Steps(hist), &set.Meta.Run, set.Tensor) {
		t.Error(msg)
	}
}

// Steps converts a trainer history for golden.CompareSteps.
func Steps(hist []train.StepMetrics) []golden.Step {
	out := make([]golden.Step, len(hist))
	for i, h := range hist {
		out[i] = golden.Step{Loss: h.Loss, GradNorm: h.GradNorm, LR: h.LR, Tokens: h.Tokens}
	}
	return out
}

// CheckSaved compares the adapter folder dir, saved after the run, with
// the reference: the configuration file must have the initial folder's
// keys and values (base_model_name_or_path aside, which names wherever
// the model was loaded from), and adapter_model.safetensors the tensors
// the initial folder has, each equal to the reference's trained value
// ("saved."+name, or "after."+name for a trainable tensor saved as is).
// Files beside them in the initial folder (prompt_encoder.safetensors)
// must be there too, with trained values.
func CheckSaved(t *testing.T, set *golden.MethodSet, dir string) {
	t.Helper()
	init := set.AdapterDir()
	if init == "" {
		return
	}
	checkConfigKeys(t, filepath.Join(init, peft.ConfigFile), filepath.Join(dir, peft.ConfigFile))
	run := &set.Meta.Run
	norms, _ := set.Tensor("grad_norms")
	files, err := filepath.Glob(filepath.Join(init, "*.safetensors"))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		base := filepath.Base(f)
		if base == set.Meta.Golden {
			continue
		}
		want := tensorShapes(t, f)
		got, err := safetensors.Open(filepath.Join(dir, base))
		if err != nil {
			t.Errorf("saved folder: %v", err)
			continue
		}
		names := got.Names()
		if !slices.Equal(names, sortedKeys(want)) {
			t.Errorf("saved %s holds %v, the reference folder %v", base, names, sortedKeys(want))
		}
		for _, n := range names {
			data, shape, err := got.Float32(n)
			if err != nil {
				t.Fatal(err)
			}
			if ws, ok := want[n]; ok && !slices.Equal(shape, ws) {
				t.Errorf("saved %s: %s has shape %v, the reference %v", base, n, shape, ws)
				continue
			}
			if ref, _ := set.Tensor("saved." + n); ref != nil {
				if e := golden.RelErr(data, ref); e > 1e-4 {
					t.Errorf("saved %s: %s: rel err %.3g > 1e-4 from PyTorch's", base, n, e)
				}
				continue
			}
			ref, _ := set.Tensor("after." + n)
			grad, _ := set.Tensor("grad." + n)
			if ref == nil {
				t.Errorf("saved %s: %s is neither a trained nor a saved reference tensor", base, n)
				continue
			}
			if msg := CompareAfter(data, ref, grad, float64(norms[0]), run.LR, run.Steps); msg != "" {
				t.Errorf("saved %s: %s: %s", base, n, msg)
			}
		}
		got.Close()
	}
}

// checkConfigKeys compares two adapter_config.json files key by key.
func checkConfigKeys(t *testing.T, wantPath, gotPath string) {
	t.Helper()
	want, err := readJSON(wantPath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := readJSON(gotPath)
	if err != nil {
		t.Errorf("saved folder: %v", err)
		return
	}
	for k, w := range want {
		g, ok := got[k]
		switch {
		case !ok:
			t.Errorf("saved %s lacks key %q", peft.ConfigFile, k)
		case k == "base_model_name_or_path":
		case fmt.Sprint(g) != fmt.Sprint(w):
			t.Errorf("saved %s: %q is %v, the reference %v", peft.ConfigFile, k, g, w)
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("saved %s has key %q, which the reference lacks", peft.ConfigFile, k)
		}
	}
}

func tensorShapes(t *testing.T, path string) map[string][]int {
	t.Helper()
	f, err := safetensors.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]int{}
	for _, n := range f.Names() {
		_, shape, err := f.Float32(n)
		if err != nil {
			t.Fatal(err)
		}
		out[n] = shape
	}
	return out
}

// CompareAfter is golden.CompareAfter's verdict alone: "" when the
// trained weights match the reference (see there for why elements of
// negligible reference gradient are checked by a bound only).
func CompareAfter(got, want, grad []float32, gradNorm, lr float64, steps int) string {
	msg, _ := golden.CompareAfter(got, want, grad, gradNorm, lr, steps)
	return msg
}

func sortedKeys(m map[string][]int) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// readJSON reads a JSON object file.
func readJSON(path string) (map[string]any, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return m, nil
}

// Tiny returns a seeded random model of arch ("LlamaForCausalLM",
// "GPT2LMHeadModel", ...) small enough for finite differences: vocab 29,
// hidden 16, 2 layers, 4 heads (2 KV heads for the LLaMA family),
// weights N(0, 0.3²) so that gradients are far from trivial.
func Tiny(t testing.TB, arch string, seed uint64) model.Model {
	t.Helper()
	return TinyOn(t, cpu.New(), arch, seed)
}

// TinyOn is Tiny on the backend be.
func TinyOn(t testing.TB, be engine.Backend, arch string, seed uint64) model.Model {
	t.Helper()
	m := NewModelOn(t, be, arch, hfconfig.Sizes{VocabSize: 29, Hidden: 16, Layers: 2, Heads: 4, KVHeads: 2, Intermediate: 24, MaxPos: 64}, seed)
	RandomizeBase(m, seed)
	return m
}

// RandomizeBase redraws every base parameter of m from seed: norm
// weights N(1, 0.3²), the others N(0, 0.3²), large enough that attention
// patterns and positions visibly change the outputs.
func RandomizeBase(m model.Model, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, 7))
	for _, p := range m.BaseParams() {
		host := make([]float32, p.W.Len())
		mean := 0.0
		if !p.Decay && !strings.HasSuffix(p.Name, ".bias") {
			mean = 1 // norm weights
		}
		for i := range host {
			host[i] = float32(mean + 0.3*rng.NormFloat64())
		}
		m.Backend().Upload(p.W, host)
	}
}

// NewModel returns a model of arch (GPT-2, Qwen2, else LLaMA) with sizes
// s on a new CPU backend, initialised from seed as model.New does. GPT-2
// has no grouped KV heads: s.KVHeads is ignored for it.
func NewModel(t testing.TB, arch string, s hfconfig.Sizes, seed uint64) model.Model {
	t.Helper()
	return NewModelOn(t, cpu.New(), arch, s, seed)
}

// NewModelOn is NewModel on the backend be.
func NewModelOn(t testing.TB, be engine.Backend, arch string, s hfconfig.Sizes, seed uint64) model.Model {
	t.Helper()
	var cfg *hfconfig.Config
	var err error
	switch arch {
	case hfconfig.ArchGPT2:
		s.KVHeads = 0
		cfg, err = hfconfig.NewGPT2(s)
	case hfconfig.ArchQwen2:
		cfg, err = hfconfig.NewQwen2(s)
	default:
		cfg, err = hfconfig.NewLlama(s)
	}
	if err != nil {
		t.Fatal(err)
	}
	m, err := model.New(cfg, be, seed)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// Batch returns a host batch of B random sequences of T tokens whose
// labels are the tokens, with every third one ignored (the first label
// of row 0 counted, of row 1 ignored).
func Batch(B, T, vocab int, seed uint64) data.Batch {
	rng := rand.New(rand.NewPCG(seed, 11))
	hb := data.Batch{B: B, T: T, InputIDs: make([]int32, B*T), Targets: make([]int32, B*T), FirstLabels: make([]int32, B)}
	for b := 0; b < B; b++ {
		labels := make([]int32, T)
		for i := 0; i < T; i++ {
			id := int32(rng.IntN(vocab))
			hb.InputIDs[b*T+i] = id
			labels[i] = id
			if (i+b)%3 == 1 {
				labels[i] = data.IgnoreIndex
			}
		}
		hb.FirstLabels[b] = labels[0]
		if labels[0] != data.IgnoreIndex {
			hb.CountedFirst++
		}
		for i := 0; i < T; i++ {
			y := int32(data.IgnoreIndex)
			if i+1 < T {
				y = labels[i+1]
			}
			hb.Targets[b*T+i] = y
			if y != data.IgnoreIndex {
				hb.Counted++
			}
		}
	}
	return hb
}

// FDCheck compares grad, the analytic gradient of f with respect to the
// float32 tensor x, with central finite differences of f on the entry of
// largest gradient and seven spread over the tensor. f is evaluated in
// float32 arithmetic, so the step is large (1e-2) and the tolerance 2%
// of the larger of the two values (at least 1e-2 absolute). An entry
// that fails is retried with a step of 1e-3 and reported only if it fails
// again: a step can straddle a ReLU's kink or meet strong curvature, and
// both errors shrink with the step, while a wrong gradient does not.
func FDCheck(t *testing.T, name string, x *engine.Tensor, grad []float32, f func() float64) {
	t.Helper()
	be := x.Backend()
	w := be.Download(x)
	if len(grad) != len(w) {
		t.Fatalf("%s: %d gradient values for %d elements", name, len(grad), len(w))
	}
	best := 0
	for i, v := range grad {
		if math.Abs(float64(v)) > math.Abs(float64(grad[best])) {
			best = i
		}
	}
	idx := []int{best}
	for k := 0; k < 7; k++ {
		idx = append(idx, k*(len(w)-1)/6+k%2)
	}
	diff := func(i int, h float32) float64 {
		orig := w[i]
		w[i] = orig + h
		be.Upload(x, w)
		lp := f()
		w[i] = orig - h
		be.Upload(x, w)
		lm := f()
		w[i] = orig
		be.Upload(x, w)
		return (lp - lm) / float64(2*h)
	}
	ok := func(fd, g float64) bool {
		den := math.Max(math.Max(math.Abs(fd), math.Abs(g)), 1e-2)
		return math.Abs(fd-g)/den <= 2e-2
	}
	for _, i := range idx {
		if i >= len(w) {
			continue
		}
		g := float64(grad[i])
		fd := diff(i, 1e-2)
		if ok(fd, g) {
			continue
		}
		if fd2 := diff(i, 1e-3); !ok(fd2, g) {
			t.Errorf("%s[%d]: gradient %.6g, finite differences %.6g (step 1e-2), %.6g (step 1e-3)", name, i, g, fd, fd2)
		}
	}
}

// Random uploads N(0, std²) values into a new tensor of the given shape.
func Random(be engine.Backend, seed uint64, std float64, shape ...int) *engine.Tensor {
	x := be.Alloc(engine.Float32, shape...)
	host := make([]float32, x.Len())
	rng := rand.New(rand.NewPCG(seed, 13))
	for i := range host {
		host[i] = float32(std * rng.NormFloat64())
	}
	be.Upload(x, host)
	return x
}

// Dot returns Σ w·y over the elements, in float64 on the host: a scalar
// objective whose gradient with respect to y is w.
func Dot(be engine.Backend, w, y *engine.Tensor) float64 {
	a, b := be.Download(w), be.Download(y)
	s := 0.0
	for i := range a {
		s += float64(a[i]) * float64(b[i])
	}
	return s
}

// ModelLoss returns a loss function for FDCheck: the summed loss of a
// forward-only pass of m on hb.
func ModelLoss(t *testing.T, m model.Model, hb data.Batch) func() float64 {
	return func() float64 {
		l, err := train.ForwardBatch(m, hb, false, 1)
		if err != nil {
			t.Fatal(err)
		}
		return l
	}
}

// CheckModelGradients runs one forward and backward pass of m on hb (see
// ModelLossGrad) and compares the gradient of every tensor of params, a
// method's trainable tensors, with finite differences of the model's
// loss (see FDCheck): the method's backward checked through everything
// the model does around it.
func CheckModelGradients(t *testing.T, m model.Model, hb data.Batch, params []*engine.Param) {
	t.Helper()
	if _, err := ModelLossGrad(m, hb); err != nil {
		t.Fatal(err)
	}
	for _, p := range params {
		FDCheck(t, p.Name, p.W, m.Backend().Download(p.G), ModelLoss(t, m, hb))
	}
}

// ModelLossGrad runs one forward and backward pass of m on hb with
// gradScale 1 (after zeroing every gradient) and returns the loss sum.
func ModelLossGrad(m model.Model, hb data.Batch) (float64, error) {
	for _, p := range m.Params() {
		if p.G != nil {
			m.Backend().Fill(p.G, 0)
		}
	}
	return train.ForwardBatch(m, hb, true, 1)
}
