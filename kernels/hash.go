package kernels

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strings"
)

// IsSource reports whether a file name in this directory is a kernel
// source covered by SourceHash: *.cu, *.cuh and kernels.def.
func IsSource(name string) bool {
	return strings.HasSuffix(name, ".cu") || strings.HasSuffix(name, ".cuh") || name == "kernels.def"
}

// SourcesHash computes the source hash over the kernel sources in fsys's
// directory dir, the same way `make kernels` does: the sha256 of the text
// `sha256sum` prints for the sources ("<hex>  <name>\n" per file, names in
// byte order).
func SourcesHash(fsys fs.FS, dir string) (string, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return "", fmt.Errorf("kernels: listing sources in %s: %w", dir, err)
	}
	var names []string
	for _, e := range entries {
		if !e.IsDir() && IsSource(e.Name()) {
			names = append(names, e.Name())
		}
	}
	if len(names) == 0 {
		return "", fmt.Errorf("kernels: no kernel sources (*.cu, *.cuh, kernels.def) in %s", dir)
	}
	sort.Strings(names)
	var listing strings.Builder
	for _, n := range names {
		data, err := fs.ReadFile(fsys, path.Join(dir, n))
		if err != nil {
			return "", fmt.Errorf("kernels: reading source %s: %w", n, err)
		}
		sum := sha256.Sum256(data)
		fmt.Fprintf(&listing, "%s  %s\n", hex.EncodeToString(sum[:]), n)
	}
	sum := sha256.Sum256([]byte(listing.String()))
	return hex.EncodeToString(sum[:]), nil
}
