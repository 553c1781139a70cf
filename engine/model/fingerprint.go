package model

import (
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/gotune/gotune/engine/hfconfig"
	"github.com/gotune/gotune/engine/safetensors"
)

// fingerprintSamples is how many evenly spaced blocks of each weight
// file's data Fingerprint reads (with fingerprintBlock bytes each): enough
// that another model's weights differ, cheap for a model of any size.
const (
	fingerprintSamples = 64
	fingerprintBlock   = 4096
)

// Fingerprint identifies the model folder dir without reading all of it:
// a SHA-256 over config.json, the shard index if any, and per safetensors
// file its name, size, whole header (every tensor's name, dtype, shape
// and offsets) and fingerprintSamples blocks of its data spread over the
// file. A checkpoint records its base model's fingerprint, so a resume on
// a different model at the same path is refused.
func Fingerprint(dir string) (string, error) {
	h := sha256.New()
	files := []string{hfconfig.FileName}
	if _, err := os.Stat(filepath.Join(dir, safetensors.IndexFile)); err == nil {
		files = append(files, safetensors.IndexFile)
	}
	for _, name := range files {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return "", fmt.Errorf("fingerprint of %s: %w", dir, err)
		}
		writeField(h, name, b)
	}
	shards, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	if err != nil {
		return "", err
	}
	sort.Strings(shards)
	for _, path := range shards {
		if err := fingerprintWeights(h, path); err != nil {
			return "", fmt.Errorf("fingerprint of %s: %w", dir, err)
		}
	}
	return fmt.Sprintf("sha256:%x", h.Sum(nil)), nil
}

// fingerprintWeights adds a safetensors file's name, size, header and
// sampled data to h.
func fingerprintWeights(h io.Writer, path string) error {
	f, err := os.Open(path)
	if err != nil {
		return err
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		return err
	}
	size := st.Size()
	var lenBuf [8]byte
	if _, err := f.ReadAt(lenBuf[:], 0); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	hdrLen := binary.LittleEndian.Uint64(lenBuf[:])
	if hdrLen > safetensors.MaxHeaderSize || int64(hdrLen) > size-8 {
		return fmt.Errorf("%s: header length %d does not fit the file", path, hdrLen)
	}
	header := make([]byte, hdrLen)
	if _, err := f.ReadAt(header, 8); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	writeField(h, strings.ToLower(filepath.Base(path)), fmt.Appendf(nil, "%d", size))
	writeField(h, "header", header)
	dataStart := 8 + int64(hdrLen)
	span := size - dataStart
	block := make([]byte, fingerprintBlock)
	for i := range int64(fingerprintSamples) {
		off := dataStart
		if span > fingerprintBlock {
			off += (span - fingerprintBlock) * i / (fingerprintSamples - 1)
		}
		n, err := f.ReadAt(block, off)
		if err != nil && err != io.EOF {
			return fmt.Errorf("%s: %w", path, err)
		}
		writeField(h, "data", block[:n])
	}
	return nil
}

// writeField hashes a length-prefixed name and value, so no two
// different sequences of fields hash alike.
func writeField(h io.Writer, name string, value []byte) {
	var n [8]byte
	for _, b := range [][]byte{[]byte(name), value} {
		binary.LittleEndian.PutUint64(n[:], uint64(len(b)))
		h.Write(n[:])
		h.Write(b)
	}
}
