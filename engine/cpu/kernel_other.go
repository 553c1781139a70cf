//go:build !amd64 || purego

package cpu

// availableKernels is the portable kernel alone on architectures without
// an assembly kernel and under the purego build tag.
func availableKernels() []microKernel { return []microKernel{goKernel} }

// useVectorAsm has nothing to install here.
func useVectorAsm() {}
