package model

import (
	"bufio"
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
	"github.com/gotune/gotune/engine/hfconfig"
)

const goldenRoot = "../../testdata/golden"

// readData reads a pre-tokenized JSONL file (input_ids and labels).
func readData(t *testing.T, path string) (ids, labels [][]int32) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		var rec struct {
			InputIDs []int32 `json:"input_ids"`
			Labels   []int32 `json:"labels"`
		}
		if err := json.Unmarshal(sc.Bytes(), &rec); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		ids = append(ids, rec.InputIDs)
		labels = append(labels, rec.Labels)
	}
	return ids, labels
}

// makeBatch uploads equal-length sequences as a batch, shifting labels
// into targets as engine.Batch documents.
func makeBatch(be engine.Backend, ids, labels [][]int32) *engine.Batch {
	B, T := len(ids), len(ids[0])
	flatIDs := make([]int32, 0, B*T)
	targets := make([]int32, 0, B*T)
	counted := 0
	for b := range ids {
		flatIDs = append(flatIDs, ids[b]...)
		for t := 0; t < T; t++ {
			y := int32(-100)
			if t+1 < T {
				y = labels[b][t+1]
			}
			if y >= 0 {
				counted++
			}
			targets = append(targets, y)
		}
	}
	bt := &engine.Batch{B: B, T: T, Counted: counted,
		InputIDs: be.Alloc(engine.Int32, B*T), Targets: be.Alloc(engine.Int32, B*T)}
	be.UploadInt32(bt.InputIDs, flatIDs)
	be.UploadInt32(bt.Targets, targets)
	return bt
}

// flat concatenates sequences.
func flat(seqs [][]int32) []int32 {
	var out []int32
	for _, s := range seqs {
		out = append(out, s...)
	}
	return out
}

// tinyConfig returns a small config of the given architecture.
func tinyConfig(t testing.TB, arch string) *Config {
	t.Helper()
	s := hfconfig.Sizes{VocabSize: 37, Hidden: 16, Layers: 3, Heads: 4, KVHeads: 2, Intermediate: 24, MaxPos: 64}
	var cfg *Config
	var err error
	switch arch {
	case hfconfig.ArchGPT2:
		s.KVHeads = 0
		cfg, err = hfconfig.NewGPT2(s)
	case hfconfig.ArchQwen2:
		cfg, err = hfconfig.NewQwen2(s)
	case hfconfig.ArchMistral:
		cfg, err = hfconfig.NewMistral(s)
	default:
		cfg, err = hfconfig.NewLlama(s)
	}
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// randomBatch makes a deterministic batch with some ignored targets.
func randomBatch(be engine.Backend, B, T, vocab int, seed int) *engine.Batch {
	ids := make([][]int32, B)
	labels := make([][]int32, B)
	x := uint32(seed*7919 + 17)
	next := func() int32 {
		x = x*1664525 + 1013904223
		return int32(x>>8) % int32(vocab)
	}
	for b := range ids {
		for t := 0; t < T; t++ {
			id := next()
			ids[b] = append(ids[b], id)
			if (t+b)%4 == 1 {
				labels[b] = append(labels[b], -100)
			} else {
				labels[b] = append(labels[b], id)
			}
		}
	}
	return makeBatch(be, ids, labels)
}

// gradOf returns a copy of a parameter's gradient (nil when it has none).
func gradOf(p *engine.Param) []float32 {
	if p.G == nil {
		return nil
	}
	return append([]float32(nil), cpu.Float32s(p.G)...)
}

func tempDir(t *testing.T, name string) string {
	t.Helper()
	return filepath.Join(t.TempDir(), name)
}

// scramble overwrites every base parameter with seeded N(mean, std²)
// values (norm weights around 1), so that logits and gradients are far
// from trivial.
func scramble(m Model, seed uint64, std float64) {
	rng := newRand(seed)
	be := m.Backend()
	for _, p := range m.BaseParams() {
		host := make([]float32, p.W.Len())
		mean := 0.0
		if !p.Decay && !isBias(p.Name) {
			mean = 1
		}
		for i := range host {
			host[i] = float32(mean + std*rng.NormFloat64())
		}
		be.Upload(p.W, host)
	}
}

func isBias(name string) bool { return len(name) > 5 && name[len(name)-5:] == ".bias" }

// newTiny builds a scrambled tiny model of arch.
func newTiny(t testing.TB, arch string, seed uint64) Model {
	t.Helper()
	m, err := New(tinyConfig(t, arch), cpu.New(), seed)
	if err != nil {
		t.Fatal(err)
	}
	scramble(m, seed+1, 0.3)
	return m
}

// lossAt returns the loss sum of a forward-only pass.
func lossAt(t testing.TB, m Model, bt *engine.Batch) float64 {
	t.Helper()
	l, err := m.ForwardBackward(bt, false, 1)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// fdCheck compares the accumulated gradient (of the loss sum) of a few
// entries of p against central finite differences of the loss: the entry
// of largest gradient and eight spread over the tensor.
func fdCheck(t *testing.T, m Model, bt *engine.Batch, p *engine.Param, grad []float32) {
	t.Helper()
	be := m.Backend()
	w := be.Download(p.W)
	idx := []int{argmaxAbs(grad)}
	for k := 0; k < 7; k++ {
		idx = append(idx, k*(len(w)-1)/6+k%2) // evenly spread, odd and even offsets
	}
	for _, i := range idx {
		const h = 1e-2
		orig := w[i]
		w[i] = orig + h
		be.Upload(p.W, w)
		lp := lossAt(t, m, bt)
		w[i] = orig - h
		be.Upload(p.W, w)
		lm := lossAt(t, m, bt)
		w[i] = orig
		be.Upload(p.W, w)
		fd := (lp - lm) / (2 * h)
		g := float64(grad[i])
		den := math.Max(math.Max(math.Abs(fd), math.Abs(g)), 1e-2)
		if math.Abs(fd-g)/den > 2e-2 {
			t.Errorf("%s[%d]: gradient %.6g, finite difference %.6g", p.Name, i, g, fd)
		}
	}
}

func argmaxAbs(x []float32) int {
	best := 0
	for i, v := range x {
		if math.Abs(float64(v)) > math.Abs(float64(x[best])) {
			best = i
		}
	}
	return best
}

// zeroGrads clears every allocated gradient.
func zeroGrads(m Model) {
	for _, p := range m.Params() {
		if p.G != nil {
			m.Backend().Fill(p.G, 0)
		}
	}
}

func newRand(seed uint64) *rand.Rand { return rand.New(rand.NewPCG(seed, 99)) }
