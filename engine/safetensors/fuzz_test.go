package safetensors

import (
	"os"
	"path/filepath"
	"testing"
)

// FuzzOpen feeds arbitrary bytes to the reader as a .safetensors file: it
// must return an error or a file whose every tensor reads, never panic or
// allocate what the file cannot hold. Seeds: the reference fixture, the
// tiny model, and broken variants of both (testdata/fuzz/FuzzOpen holds
// the regression cases fuzzing found).
func FuzzOpen(f *testing.F) {
	for _, path := range []string{"testdata/reference.safetensors", "../../testdata/tiny/llama/model.safetensors"} {
		b, err := os.ReadFile(path)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
		f.Add(b[:len(b)/2])   // truncated data
		f.Add(b[:8+len(b)/8]) // truncated header
		flipped := append([]byte(nil), b...)
		flipped[0] ^= 0x80 // header length far too large
		f.Add(flipped)
	}
	f.Add([]byte("\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":1,\"a\":2}   "))
	f.Fuzz(func(t *testing.T, b []byte) {
		path := filepath.Join(t.TempDir(), "f.safetensors")
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		sf, err := Open(path)
		if err != nil {
			return
		}
		defer sf.Close()
		for _, name := range sf.Names() {
			info, _ := sf.Info(name)
			if info.Numel() > 1<<20 {
				continue // valid but large: reading it tests nothing more
			}
			sf.Float32(name)
		}
	})
}
