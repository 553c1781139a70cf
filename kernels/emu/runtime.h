// runtime.h: the emulator's internal interface between the driver API
// (driver.cpp) and the execution engine (runtime.cpp).
#ifndef GOTUNE_EMU_RUNTIME_H
#define GOTUNE_EMU_RUNTIME_H

#include <string>

#include "cuda_emu.h"

namespace gtemu {

// KernelThunk is what every emulated GPU thread runs: fn(ctx) calls the
// kernel with its unpacked parameters.
struct KernelThunk {
  void (*fn)(void* ctx);
  void* ctx;
};

// launch runs a whole grid and returns when it is done. On a kernel fault
// (deadlock, __trap) it returns false with a description in *err.
bool launch(const KernelThunk& thunk, dim3 grid, dim3 block, unsigned dyn_smem_bytes, std::string* err);

}  // namespace gtemu

#endif  // GOTUNE_EMU_RUNTIME_H
