package main

import (
	"errors"

	"github.com/gotune/gotune/cuda"
	"github.com/gotune/gotune/engine"
)

// The CUDA backend is always compiled in: the driver is loaded with dlopen
// at run time, so the same binary runs on machines without a GPU (auto
// falls back to the CPU) and uses the GPU where one is present.
func init() {
	openCUDA = func(ordinal int) (engine.Backend, error) {
		if ok, reason := cuda.Available(); !ok {
			return nil, errors.New(reason)
		}
		return cuda.NewBackend(cuda.Options{Device: ordinal})
	}
}
