package lora

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/train"
)

// The trainer saves and restores the dropout streams through this
// interface; the assertion keeps the method set in step with it.
var _ train.RandStater = (*Adapter)(nil)

// drawMasks runs one training pass through every layer of a (on a
// constant input, 3 rows) and returns the dropout masks they drew, in
// layer order.
func drawMasks(t *testing.T, a *Adapter) []float32 {
	t.Helper()
	var out []float32
	for _, l := range a.layers {
		be := l.be
		x := be.Alloc(engine.Float32, 3, l.in)
		y := be.Alloc(engine.Float32, 3, l.out)
		be.Upload(x, slices.Repeat([]float32{1}, 3*l.in))
		l.Forward(y, x, true)
		if !l.dropped {
			t.Fatalf("%s: the training pass drew no dropout mask", l.Path)
		}
		out = append(out, be.Download(l.mask)...)
		be.Free(x)
		be.Free(y)
	}
	return out
}

func dropoutAdapter(t *testing.T, targets []string) *Adapter {
	t.Helper()
	a, err := Apply(tinyModel(t, hfconfig.ArchLlama, 3), Config{R: 2, Alpha: 4, Dropout: 0.3, Targets: targets, Seed: 11})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(a.Remove)
	return a
}

// TestRandStateRoundTrip checks that a restored state makes the adapter
// (and a fresh adapter of the same layers, as on resume) draw the masks
// it drew after the state was taken, while the streams otherwise move on.
func TestRandStateRoundTrip(t *testing.T) {
	a := dropoutAdapter(t, []string{AllLinear})
	first := drawMasks(t, a)
	st, err := a.MarshalRandState()
	if err != nil {
		t.Fatal(err)
	}
	want := drawMasks(t, a)
	if slices.Equal(want, first) {
		t.Fatal("consecutive training passes drew the same masks")
	}
	if !slices.Contains(want, 0) {
		t.Fatal("dropout 0.3 zeroed no element")
	}
	later := drawMasks(t, a)
	if slices.Equal(later, want) {
		t.Fatal("the streams did not move on")
	}
	if err := a.UnmarshalRandState(st); err != nil {
		t.Fatal(err)
	}
	if got := drawMasks(t, a); !slices.Equal(got, want) {
		t.Error("after UnmarshalRandState the adapter draws other masks than after MarshalRandState")
	}

	// A fresh adapter with the same seed starts where a did: restoring
	// the state moves it to where a was.
	b := dropoutAdapter(t, []string{AllLinear})
	if err := b.UnmarshalRandState(st); err != nil {
		t.Fatal(err)
	}
	if got := drawMasks(t, b); !slices.Equal(got, want) {
		t.Error("a fresh adapter restored from the state draws other masks")
	}
}

// TestRandStateErrors checks that a state that does not fit is refused
// with a message naming what is wrong, and leaves the streams as they
// were.
func TestRandStateErrors(t *testing.T) {
	src := dropoutAdapter(t, []string{"q_proj", "v_proj"})
	// Advance the streams so the layers a partial restore would set
	// differ from a fresh adapter's.
	drawMasks(t, src)
	good, err := src.MarshalRandState()
	if err != nil {
		t.Fatal(err)
	}
	edit := func(f func(s *randState)) []byte {
		var s randState
		if err := json.Unmarshal(good, &s); err != nil {
			t.Fatal(err)
		}
		f(&s)
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	for _, tc := range []struct {
		name  string
		state []byte
		want  string
	}{
		{"not JSON", []byte("pcg:0123"), "not a LoRA random state"},
		{"unknown field", []byte(`{"format":"` + randStateFormat + `","seed":1}`), "not a LoRA random state"},
		{"other format", edit(func(s *randState) { s.Format = "gotune-lora-dropout-pcg/9" }), `format "gotune-lora-dropout-pcg/9"`},
		{"fewer layers", edit(func(s *randState) { s.Layers = s.Layers[:3] }), "holds 3 layers, the adapter has 4"},
		{"other layer", edit(func(s *randState) { s.Layers[1].Path = "model.layers.0.mlp.up_proj" }), "layer 1 is model.layers.0.mlp.up_proj"},
		{"bad generator state", edit(func(s *randState) { s.Layers[3].PCG = []byte("chacha8:") }), "dropout state of " + src.layers[3].Path},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a := dropoutAdapter(t, []string{"q_proj", "v_proj"})
			ref := dropoutAdapter(t, []string{"q_proj", "v_proj"})
			err := a.UnmarshalRandState(tc.state)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("error %v, want one containing %q", err, tc.want)
			}
			if !slices.Equal(drawMasks(t, a), drawMasks(t, ref)) {
				t.Error("a refused state changed the streams")
			}
		})
	}
}
