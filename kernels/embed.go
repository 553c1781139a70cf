// Package kernels embeds gotune's compiled CUDA kernels.
//
// The CUDA sources (*.cu, *.cuh and the kernel list kernels.def) live in
// this directory; `make kernels` compiles them with nvcc into gotune.fatbin
// (sm_80 and sm_90 machine code plus compute_90 PTX, so newer GPUs can JIT
// it) and records the hash of the sources it was built from in
// sources.sha256. Both files are committed, so building gotune needs no
// CUDA toolkit; the package test fails when the sources change without the
// fatbin being rebuilt. See README.md for the kernel list and launch rules.
package kernels

import (
	_ "embed"
	"strings"
)

// Fatbin is the CUDA fat binary holding every kernel listed in
// kernels.def, for cuModuleLoadData. Empty when the kernels were never built.
//
//go:embed gotune.fatbin
var Fatbin []byte

//go:embed sources.sha256
var sourceHashFile string

// SourceHash is the hex sha256 identifying the kernel sources Fatbin was
// built from (see SourcesHash for how it is computed).
var SourceHash = strings.TrimSpace(sourceHashFile)

// Available reports whether a fatbin is embedded. A checkout whose kernels
// were never built carries an empty gotune.fatbin; the CUDA backend then
// reports "no kernels embedded" instead of trying to load it.
func Available() bool { return len(Fatbin) > 0 }

// FatbinMagic is the little-endian magic number that starts a CUDA fatbin.
const FatbinMagic uint32 = 0xBA55ED50
