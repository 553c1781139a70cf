package cuda

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/gotune/gotune/engine"
	"github.com/gotune/gotune/engine/cpu"
)

// SelectBackend implements the --device flag:
//
//   - "cpu": the pure-Go backend.
//   - "cuda" (or "cuda:N" for device N, or "gpu"): the CUDA backend, or an
//     error saying why no usable GPU was found.
//   - "auto" (or ""): the CUDA backend when a usable GPU is present,
//     otherwise the CPU backend.
//
// The returned string says, in one line for the user, which backend was
// chosen and why (for auto, why the GPU was not used).
func SelectBackend(device string) (engine.Backend, string, error) {
	switch device {
	case "cpu":
		return cpu.New(), "device cpu: the pure-Go CPU backend (chosen by --device cpu)", nil
	case "", "auto":
		if ok, reason := Available(); !ok {
			return cpu.New(), "device auto: using the CPU backend, no usable GPU (" + reason + ")", nil
		}
		b, err := NewBackend(Options{})
		if err != nil {
			return cpu.New(), "device auto: using the CPU backend, the GPU could not be opened (" + err.Error() + ")", nil
		}
		return b, "device auto: using the GPU, " + b.Name(), nil
	}
	ordinal, ok := DeviceOrdinal(device)
	if !ok {
		return nil, "", fmt.Errorf("--device %q: want auto, cpu, cuda or cuda:N", device)
	}
	if ok, reason := Available(); !ok {
		return nil, "", fmt.Errorf("--device %s: no usable GPU: %s", device, reason)
	}
	b, err := NewBackend(Options{Device: ordinal})
	if err != nil {
		return nil, "", fmt.Errorf("--device %s: %w", device, err)
	}
	return b, fmt.Sprintf("device %s: using the GPU, %s", device, b.Name()), nil
}

// DeviceOrdinal parses a --device value naming a CUDA device: "cuda" and
// "gpu" are device 0, "cuda:N" is device N (N a non-negative decimal
// number without sign or leading zeros). ok is false for anything else.
func DeviceOrdinal(device string) (ordinal int, ok bool) {
	if device == "cuda" || device == "gpu" {
		return 0, true
	}
	n, found := strings.CutPrefix(device, "cuda:")
	if !found {
		return 0, false
	}
	ordinal, err := strconv.Atoi(n)
	if err != nil || ordinal < 0 || strconv.Itoa(ordinal) != n {
		return 0, false
	}
	return ordinal, true
}
