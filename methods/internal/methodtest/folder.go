package methodtest

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/internal/golden"
	"github.com/gotune/gotune/methods/peft"
)

// Helpers for the tests of the methods that save PEFT adapter folders.

// CheckConfigFile marshals config (a method's PeftConfig) as
// peft.WriteConfig writes it and compares it byte for byte with the
// set's reference adapter_config.json, which the Python generator wrote
// from PEFT's dataclasses: the method must build PEFT's configuration
// from its own hyper-parameters exactly.
func CheckConfigFile(t *testing.T, set *golden.MethodSet, config any) {
	t.Helper()
	got, err := peft.MarshalConfig(config)
	if err != nil {
		t.Fatal(err)
	}
	want, err := os.ReadFile(filepath.Join(set.AdapterDir(), peft.ConfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if string(got) != string(want) {
		t.Errorf("adapter_config.json:\n%s\nreference:\n%s", got, want)
	}
}

// SavedTensor returns tensor name of dir/adapter_model.safetensors,
// failing the test unless the file holds it with exactly that shape.
func SavedTensor(t *testing.T, dir, name string, shape ...int) []float32 {
	t.Helper()
	w, err := peft.ReadWeights(dir)
	if err != nil {
		t.Fatal(err)
	}
	data, err := w.Take(name, shape...)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// CheckRestored checks that loaded, the parameters of an adapter loaded
// for training from the folder saved's adapter wrote, are the same
// tensors in the same order, bit for bit, and trainable.
func CheckRestored(t *testing.T, saved, loaded []*engine.Param) {
	t.Helper()
	if len(loaded) != len(saved) {
		t.Fatalf("%d tensors loaded, %d saved", len(loaded), len(saved))
	}
	for i, p := range saved {
		q := loaded[i]
		if p.Name != q.Name || !slices.Equal(p.W.Backend().Download(p.W), q.W.Backend().Download(q.W)) || !q.Trainable {
			t.Errorf("%s: not restored exactly as a trainable tensor", p.Name)
		}
	}
}

// EditConfig replaces the first from in dir/adapter_config.json by to,
// failing the test if the file has no from (the edit would test
// nothing).
func EditConfig(t *testing.T, dir, from, to string) {
	t.Helper()
	p := filepath.Join(dir, peft.ConfigFile)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), from) {
		t.Fatalf("%s has no %q", p, from)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(b), from, to, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
}
