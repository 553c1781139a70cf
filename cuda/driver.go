package cuda

// Driver-API subset.
//
// This is the complete list of CUDA driver entry points gotune resolves with
// dlsym from libcuda.so.1 (or $GOTUNE_LIBCUDA). The CPU emulator in
// kernels/emu/ implements exactly these symbols, with these C signatures.
// Every one returns CUresult (int, 0 = CUDA_SUCCESS). Types, all declared by
// gotune itself (no CUDA headers):
//
//	typedef int CUresult;
//	typedef int CUdevice;
//	typedef unsigned long long CUdeviceptr;          // 64-bit (the _v2 ABI)
//	typedef struct CUctx_st    *CUcontext;
//	typedef struct CUmod_st    *CUmodule;
//	typedef struct CUfunc_st   *CUfunction;
//	typedef struct CUstream_st *CUstream;
//	typedef struct CUevent_st  *CUevent;
//
// Symbols (exact names, _v2 suffixes included):
//
//	CUresult cuInit(unsigned int flags);
//	CUresult cuDriverGetVersion(int *version);
//	CUresult cuGetErrorName(CUresult err, const char **name);
//	CUresult cuGetErrorString(CUresult err, const char **str);
//	CUresult cuDeviceGetCount(int *count);
//	CUresult cuDeviceGet(CUdevice *dev, int ordinal);
//	CUresult cuDeviceGetName(char *name, int len, CUdevice dev);
//	CUresult cuDeviceGetAttribute(int *value, int attrib, CUdevice dev);
//	CUresult cuDeviceTotalMem_v2(size_t *bytes, CUdevice dev);
//	CUresult cuDevicePrimaryCtxRetain(CUcontext *ctx, CUdevice dev);
//	CUresult cuDevicePrimaryCtxRelease_v2(CUdevice dev);
//	CUresult cuCtxSetCurrent(CUcontext ctx);
//	CUresult cuCtxGetCurrent(CUcontext *ctx);
//	CUresult cuCtxSynchronize(void);
//	CUresult cuMemGetInfo_v2(size_t *free, size_t *total);
//	CUresult cuMemAlloc_v2(CUdeviceptr *dptr, size_t bytes);
//	CUresult cuMemFree_v2(CUdeviceptr dptr);
//	CUresult cuMemAllocHost_v2(void **pp, size_t bytes);
//	CUresult cuMemFreeHost(void *p);
//	CUresult cuMemsetD8_v2(CUdeviceptr dst, unsigned char v, size_t n);
//	CUresult cuMemsetD16_v2(CUdeviceptr dst, unsigned short v, size_t n);
//	CUresult cuMemsetD32_v2(CUdeviceptr dst, unsigned int v, size_t n);
//	CUresult cuMemsetD8Async(CUdeviceptr dst, unsigned char v, size_t n, CUstream s);
//	CUresult cuMemsetD16Async(CUdeviceptr dst, unsigned short v, size_t n, CUstream s);
//	CUresult cuMemsetD32Async(CUdeviceptr dst, unsigned int v, size_t n, CUstream s);
//	CUresult cuMemcpyHtoD_v2(CUdeviceptr dst, const void *src, size_t bytes);
//	CUresult cuMemcpyDtoH_v2(void *dst, CUdeviceptr src, size_t bytes);
//	CUresult cuMemcpyDtoD_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes);
//	CUresult cuMemcpyHtoDAsync_v2(CUdeviceptr dst, const void *src, size_t bytes, CUstream s);
//	CUresult cuMemcpyDtoHAsync_v2(void *dst, CUdeviceptr src, size_t bytes, CUstream s);
//	CUresult cuMemcpyDtoDAsync_v2(CUdeviceptr dst, CUdeviceptr src, size_t bytes, CUstream s);
//	CUresult cuStreamCreate(CUstream *s, unsigned int flags);
//	CUresult cuStreamSynchronize(CUstream s);
//	CUresult cuStreamDestroy_v2(CUstream s);
//	CUresult cuStreamWaitEvent(CUstream s, CUevent e, unsigned int flags);   // flags 0
//	CUresult cuEventCreate(CUevent *e, unsigned int flags);
//	CUresult cuEventRecord(CUevent e, CUstream s);
//	CUresult cuEventSynchronize(CUevent e);
//	CUresult cuEventElapsedTime(float *ms, CUevent start, CUevent end);
//	CUresult cuEventDestroy_v2(CUevent e);
//	CUresult cuModuleLoadData(CUmodule *m, const void *image);
//	CUresult cuModuleUnload(CUmodule m);
//	CUresult cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name);
//	CUresult cuFuncGetAttribute(int *value, int attrib, CUfunction f);
//	CUresult cuFuncSetAttribute(CUfunction f, int attrib, int value);
//	CUresult cuLaunchKernel(CUfunction f,
//	                        unsigned gridX, unsigned gridY, unsigned gridZ,
//	                        unsigned blockX, unsigned blockY, unsigned blockZ,
//	                        unsigned sharedMemBytes, CUstream s,
//	                        void **kernelParams, void **extra);   // extra is always NULL
//
// Notes for the emulator:
//   - Stream 0 (NULL) is never used by gotune; it always creates one stream
//     per device with flags 0 (CU_STREAM_DEFAULT) and events with flags 0.
//   - cuCtxSetCurrent is called at the start of EVERY cgo call that needs a
//     context, from whatever OS thread the Go runtime runs it on, so the
//     current context must be per-thread (or global: there is one device).
//   - Device attributes queried (CUdevice_attribute values): 1 max threads
//     per block, 8 shared mem per block, 10 warp size, 13 clock rate (kHz),
//     16 multiprocessor count, 36 memory clock rate (kHz), 37 global memory
//     bus width (bits), 38 L2 cache size, 75/76 compute capability
//     major/minor, 97 max shared memory per block opt-in. gotune refuses
//     devices below compute capability 8.0, so the emulator should report
//     9.0 (and e.g. 132 SMs, 227 KB opt-in shared memory). Unknown attributes
//     may return CUDA_ERROR_INVALID_VALUE (1); gotune treats that as "unknown".
//   - Function attributes: 0 max threads per block, 1 static shared bytes,
//     3 local (spill/stack) bytes, 4 registers, 8 max dynamic shared bytes
//     (set and get).
//   - cuModuleLoadData receives the embedded fatbin image bytes; the
//     emulator may ignore them and resolve cuModuleGetFunction by kernel name.
//   - Error codes used by gotune's messages: 0 success, 1 invalid value,
//     2 out of memory, 3 not initialized, 100 no device, 101 invalid device,
//     200 invalid image, 209 no binary for GPU, 400 invalid handle,
//     500 not found, 700 illegal address, 701 launch out of resources,
//     999 unknown. cuGetErrorName must return "CUDA_ERROR_..." names.

// CUresult is a CUDA driver API status code (0 is success).
type CUresult int

// Device attributes (CUdevice_attribute values) gotune reads.
const (
	attrMaxThreadsPerBlock     = 1
	attrMaxSharedPerBlock      = 8
	attrWarpSize               = 10
	attrClockRateKHz           = 13
	attrMultiprocessorCount    = 16
	attrMemoryClockRateKHz     = 36
	attrGlobalMemoryBusWidth   = 37
	attrL2CacheSize            = 38
	attrComputeCapabilityMajor = 75
	attrComputeCapabilityMinor = 76
	attrMaxSharedPerBlockOptin = 97
)

// Function attributes (CUfunction_attribute values) gotune reads or sets.
const (
	funcAttrMaxThreadsPerBlock = 0
	funcAttrSharedSizeBytes    = 1
	funcAttrLocalSizeBytes     = 3
	funcAttrNumRegs            = 4
	funcAttrMaxDynamicShared   = 8
)
