package cuda

import "github.com/gotune/gotune/kernels"

// kernelImage returns the embedded kernel fatbin (package kernels; empty
// in a checkout whose kernels were never built).
func kernelImage() []byte { return kernels.Fatbin }
