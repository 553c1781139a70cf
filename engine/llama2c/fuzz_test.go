package llama2c

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/gotune/gotune/engine/cpu"
)

// FuzzLoad feeds arbitrary bytes to the llama2.c checkpoint loader: an
// error or a model, never a panic or an allocation the file cannot back.
// Seeds: a small random checkpoint (shared and separate classifier),
// truncated, and with absurd header fields.
func FuzzLoad(f *testing.F) {
	for _, shared := range []bool{true, false} {
		path, _, _ := writeCheckpoint(f, Header{Dim: 8, Hidden: 16, Layers: 1, Heads: 2, KVHeads: 1, Vocab: 12, SeqLen: 4, Shared: shared})
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)-4])
		huge := append([]byte(nil), b...)
		huge[8] = 0xff // n_layers
		f.Add(huge)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "model.bin")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		Load(path, cpu.New())
	})
}
