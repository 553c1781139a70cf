package main

import (
	"fmt"
	"strings"

	"github.com/gotune/gotune/cuda"
	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
)

// deviceHelp documents the values --device accepts.
const deviceHelp = "compute device: auto (the GPU when the CUDA driver loads and a device is present, else the CPU), cpu, cuda (device 0) or cuda:N"

// precisionHelp documents the values --precision accepts.
const precisionHelp = "numeric `policy`: bf16 (bfloat16 activations, frozen weights and tensor-core matrix products with float32 accumulation; float32 master weights, optimizer state, norms and loss), fp32, or auto (bf16 on a GPU, fp32 on the CPU)"

// onGPU reports whether be is the CUDA backend (what --precision auto
// asks about).
func onGPU(be engine.Backend) bool { return strings.HasPrefix(be.Name(), "cuda") }

// checkPrecision rejects a --precision value the engine does not know
// (its error names the option "precision"; the flag is --precision).
func checkPrecision(value string) error {
	if _, err := engine.ParsePrecision(value, false); err != nil {
		return &usageError{msg: "--" + err.Error()}
	}
	return nil
}

// openCUDA opens the CUDA backend. It is nil in builds without one; the
// GPU build sets it from a file of its own (behind a build tag), which is
// all it takes to enable --device cuda and make auto prefer the GPU.
var openCUDA func(ordinal int) (engine.Backend, error)

// validDevice reports whether name is a --device value.
func validDevice(name string) bool {
	_, isCUDA := cuda.DeviceOrdinal(name)
	return name == "auto" || name == "cpu" || isCUDA
}

// openDevice returns the backend for a --device value. notes receives a
// line when the choice is not the literal one asked for (auto).
func openDevice(name string, notes func(string)) (engine.Backend, error) {
	if ordinal, isCUDA := cuda.DeviceOrdinal(name); isCUDA {
		if openCUDA == nil {
			return nil, fmt.Errorf("--device %s: no CUDA backend in this build; use --device cpu", name)
		}
		be, err := openCUDA(ordinal)
		if err != nil {
			return nil, fmt.Errorf("--device %s: no usable GPU: %v (use --device cpu or auto)", name, err)
		}
		return be, nil
	}
	switch name {
	case "cpu":
		return cpu.New(), nil
	case "auto":
		if openCUDA != nil {
			be, err := openCUDA(0)
			if err == nil {
				notes("device auto: using " + be.Name())
				return be, nil
			}
			notes(fmt.Sprintf("device auto: no usable GPU (%v); using the CPU", err))
		} else {
			notes("device auto: no CUDA backend in this build; using the CPU")
		}
		return cpu.New(), nil
	default:
		return nil, &usageError{msg: fmt.Sprintf("unknown --device %q (want auto, cpu, cuda or cuda:N)", name)}
	}
}
