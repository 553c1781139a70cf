package cuda

import (
	"fmt"
)

//go:generate go run ../internal/kernelgen/cmd/kernelgen -def ../kernels/kernels.def -launch ../kernels/launch.cuh -out kernels_gen.go

// The kernel contract has one source: kernels/kernels.def (names, launch
// rules, parameters) and kernels/launch.cuh (threads, tiles, shared
// memory). kernels_gen.go is generated from them: the kernel enum
// (kernelID, k...), kernelSpecs, the launch constants, and one typed
// launcher per kernel (launchAdd, launchGemmBf16, launchAttnFwd with a
// head-dimension variant, ...). TestGeneratedKernelsUpToDate fails when it
// is stale. This file holds what the generated code builds on.

// launchRule names a launch configuration of kernels/README.md.
type launchRule string

// kernelSpec is one kernels.def entry: the extern "C" name, the launch
// rule, and the parameter kinds in order (p = device pointer, i = int,
// f = float, u = uint64).
type kernelSpec struct {
	name   string
	rule   launchRule
	params string
}

// loadFunctions looks up every kernel and raises the dynamic shared memory
// limit of those whose rule needs more than the default 48 KB.
func (b *Backend) loadFunctions() error {
	b.fns = make([]*Function, numKernels)
	b.attrs = make([]FuncAttributes, numKernels)
	for id := kernelID(0); id < numKernels; id++ {
		spec := kernelSpecs[id]
		f, err := b.mod.Function(spec.name)
		if err != nil {
			return fmt.Errorf("cuda: kernel %s missing from the loaded image (stale fatbin or emulator?): %w", spec.name, err)
		}
		if smem := kernelDynamicShared(id); smem > 48<<10 {
			if err := f.SetMaxDynamicShared(smem); err != nil {
				return err
			}
		}
		a, err := f.Attributes()
		if err != nil {
			return err
		}
		b.fns[id], b.attrs[id] = f, a
	}
	return nil
}

// KernelInfo describes one loaded kernel's compiled resources.
type KernelInfo struct {
	Name string
	FuncAttributes
}

// Kernels lists the loaded kernels with their attributes (registers,
// spills, shared memory), for `gotune bench kernels` and diagnostics.
func (b *Backend) Kernels() []KernelInfo {
	out := make([]KernelInfo, 0, numKernels)
	for id := kernelID(0); id < numKernels; id++ {
		out = append(out, KernelInfo{Name: kernelSpecs[id].name, FuncAttributes: b.attrs[id]})
	}
	return out
}

// launch queues kernel id with the geometry its rule's constructor
// computed (rules.go). Only the generated launchers call it, so the
// arguments always match kernels.def in count and kind. Callers hold b.mu;
// a driver error is recorded.
func (b *Backend) launch(op string, id kernelID, g launchGeom, args ...any) {
	if err := b.fns[id].Launch(g.grid, g.block, g.smem, b.stream, args...); err != nil {
		b.setErr(fmt.Errorf("cuda.%s: %w", op, err))
	}
}
