// Package cuda is gotune's GPU path: a thin cgo binding to the CUDA driver
// API, loaded at run time, and an engine.Backend built on it that runs our
// own kernels (kernels/*.cu, embedded as a fatbin).
//
// # Loading
//
// Nothing CUDA is linked at build time: the package declares the handful of
// driver types it needs itself and resolves the driver's symbols with
// dlopen/dlsym the first time it is used, from "libcuda.so.1" or from the
// path in $GOTUNE_LIBCUDA. So `go build ./...` works on any machine with a C
// compiler, and a binary built without CUDA runs on the CPU there and uses
// the GPU on a GPU machine. The emulator in kernels/emu (a fake libcuda.so
// that runs the same kernels on the CPU) is loaded the same way, which is how
// `go test` exercises the whole GPU path without a GPU. Built with
// CGO_ENABLED=0 the package still compiles and simply reports the GPU as
// unavailable. The exact symbol list is in driver.go.
//
// # Errors
//
// Every driver call's CUresult is checked and turned into an *Error naming
// the call, its arguments where useful, and the driver's name and
// description of the code (CUDA_ERROR_OUT_OF_MEMORY: out of memory).
//
// # Contexts and threads
//
// A CUDA context is current per OS thread, while goroutines move between
// threads. gotune uses each device's primary context and makes it current
// inside every C wrapper, immediately before the driver call, in the same
// cgo call: a cgo call runs start to finish on one OS thread, so the context
// is current exactly when it is needed, on whichever thread the Go runtime
// chose. This is the "LockOSThread + cuCtxSetCurrent around each call"
// design with the locking done for free by cgo; it needs no dedicated
// goroutine or channel hop per call, and cuCtxSetCurrent is a thread-local
// store in the driver. Handles (streams, events, modules, functions) belong
// to the Context that made them.
//
// # The backend
//
// Backend (backend.go) implements engine.Backend on one device and one
// stream, with device memory from a caching allocator. Every operation
// launches our kernels (ops.go and attention.go map each one); the few
// cases no kernel takes (Int32 blocks, BFloat16 normalisation statistics,
// attention head dimensions above 256) fall back to copying their tensors to the
// host, running engine/cpu's implementation and copying the results back:
// correct but slow. Fallbacks are counted per operation (Backend.Stats,
// StatsSummary) so benchmarks and logs show what ran natively.
//
// The fused LoRA and adapter operations (lora.go) implement
// engine/fused's LoRABackend and AdapterBackend; method code reaches them
// through that package's functions, which compose the same computation
// from engine.Backend operations on other backends. SelectBackend
// implements --device auto|cpu|cuda.
//
// cuBLAS (cublas.go) is loaded the same way, on demand, only as the
// yardstick of `gotune bench kernels`.
package cuda

import (
	"errors"
	"fmt"
	"math"
	"os"
	"sync"
	"unsafe"
)

// DefaultLibrary is the driver library opened when $GOTUNE_LIBCUDA is unset.
const DefaultLibrary = "libcuda.so.1"

// EnvLibrary names the environment variable that overrides DefaultLibrary
// (tests point it at the emulator, kernels/emu/build/libcuda.so).
const EnvLibrary = "GOTUNE_LIBCUDA"

// DevicePtr is a device memory address (CUdeviceptr).
type DevicePtr uint64

// errorString is a plain error for load failures.
type errorString string

// Error returns the message.
func (e errorString) Error() string { return string(e) }

// Error is a failed driver call.
type Error struct {
	// Call is the driver entry point, e.g. "cuMemAlloc_v2".
	Call string
	// Detail describes the arguments (may be empty).
	Detail string
	// Code is the CUresult the call returned.
	Code CUresult
	// Name and Message are the driver's cuGetErrorName and cuGetErrorString.
	Name, Message string
}

// Error formats the failure as "cuda: <call>(<detail>) failed: <name> (<code>): <message>".
func (e *Error) Error() string {
	call := e.Call
	if e.Detail != "" {
		call += "(" + e.Detail + ")"
	}
	return fmt.Sprintf("cuda: %s failed: %s (%d): %s", call, e.Name, int(e.Code), e.Message)
}

// IsOutOfMemory reports whether err is, or wraps, a driver out-of-memory
// error.
func IsOutOfMemory(err error) bool {
	var e *Error
	return errors.As(err, &e) && e.Code == 2
}

// check turns a CUresult into an *Error naming call (nil on success). A
// result flagged by the C wrapper as a failed cuCtxSetCurrent names that.
func check(r CUresult, call string, detail string, args ...any) error {
	if r == 0 {
		return nil
	}
	if r&ctxFailFlag != 0 {
		detail = "before " + call
		call = "cuCtxSetCurrent"
		r &^= ctxFailFlag
		args = nil
	}
	if len(args) > 0 {
		detail = fmt.Sprintf(detail, args...)
	}
	e := &Error{Call: call, Detail: detail, Code: r, Name: "CUDA_ERROR_UNKNOWN_CODE", Message: "unrecognised error code"}
	if state.loaded {
		if n, ok := drvErrorName(r); ok {
			e.Name = n
		}
		if m, ok := drvErrorString(r); ok {
			e.Message = m
		}
	}
	return e
}

// state is the process-wide driver state: the library is loaded and cuInit
// run at most once.
var state struct {
	once   sync.Once
	loaded bool
	path   string
	err    error
}

// LibraryPath returns the driver library path that is (or would be) loaded.
func LibraryPath() string {
	if p := os.Getenv(EnvLibrary); p != "" {
		return p
	}
	return DefaultLibrary
}

// Init loads the driver library and calls cuInit once per process. It
// returns the same error on every call after a failure.
func Init() error {
	state.once.Do(func() {
		state.path = LibraryPath()
		if err := drvOpen(state.path); err != nil {
			state.err = fmt.Errorf("cuda: cannot load the CUDA driver %q: %w", state.path, err)
			return
		}
		state.loaded = true
		if err := check(drvInit(), "cuInit", "0"); err != nil {
			state.err = fmt.Errorf("cuda: driver %s: %w", state.path, err)
		}
	})
	return state.err
}

// MinComputeCapability is the oldest architecture our fatbin has code for
// (sm_80 machine code; sm_90 and compute_90 PTX besides).
const MinComputeCapability = 80

// Available reports whether a usable GPU is present, and if not, why not
// (driver missing, no device, device too old). It never panics.
func Available() (ok bool, reason string) {
	devs, err := Devices()
	if err != nil {
		return false, err.Error()
	}
	if len(devs) == 0 {
		return false, fmt.Sprintf("cuda: the driver %s reports no CUDA device", state.path)
	}
	for _, d := range devs {
		if d.ComputeCapability() >= MinComputeCapability {
			return true, fmt.Sprintf("cuda:%d %s (compute capability %d.%d, %s)", d.Ordinal, d.Name, d.Major, d.Minor, state.path)
		}
	}
	d := devs[0]
	return false, fmt.Sprintf("cuda: device 0 %s has compute capability %d.%d; gotune's kernels need %d.%d or newer",
		d.Name, d.Major, d.Minor, MinComputeCapability/10, MinComputeCapability%10)
}

// DriverVersion returns the driver's CUDA version as 1000·major + 10·minor.
func DriverVersion() (int, error) {
	if err := Init(); err != nil {
		return 0, err
	}
	v, r := drvDriverVersion()
	return v, check(r, "cuDriverGetVersion", "")
}

// DeviceInfo describes one device.
type DeviceInfo struct {
	// Ordinal is the device index (cuDeviceGet's ordinal).
	Ordinal int
	// Name is the marketing name, e.g. "NVIDIA H200".
	Name string
	// Major and Minor are the compute capability.
	Major, Minor int
	// SMs is the multiprocessor count.
	SMs int
	// TotalMem is the device memory in bytes.
	TotalMem uint64
	// SharedPerBlock and SharedPerBlockOptin are the default and opt-in
	// shared memory limits of one block, in bytes.
	SharedPerBlock, SharedPerBlockOptin int
	// ClockKHz and MemClockKHz are the peak SM and memory clocks, and
	// BusWidth the memory bus width in bits (0 where the driver does not say).
	ClockKHz, MemClockKHz, BusWidth int
	// L2Bytes is the L2 cache size.
	L2Bytes int
}

// ComputeCapability returns 10·Major + Minor (90 for Hopper).
func (d DeviceInfo) ComputeCapability() int { return 10*d.Major + d.Minor }

// DeviceCount returns how many CUDA devices the driver sees.
func DeviceCount() (int, error) {
	if err := Init(); err != nil {
		return 0, err
	}
	n, r := drvDeviceCount()
	return n, check(r, "cuDeviceGetCount", "")
}

// Devices describes every device the driver sees.
func Devices() ([]DeviceInfo, error) {
	n, err := DeviceCount()
	if err != nil {
		return nil, err
	}
	out := make([]DeviceInfo, 0, n)
	for i := 0; i < n; i++ {
		d, err := deviceInfo(i)
		if err != nil {
			return nil, err
		}
		out = append(out, d)
	}
	return out, nil
}

func deviceInfo(ordinal int) (DeviceInfo, error) {
	dev, r := drvDeviceGet(ordinal)
	if err := check(r, "cuDeviceGet", "ordinal %d", ordinal); err != nil {
		return DeviceInfo{}, err
	}
	info := DeviceInfo{Ordinal: ordinal}
	name, r := drvDeviceName(dev)
	if err := check(r, "cuDeviceGetName", "device %d", ordinal); err != nil {
		return DeviceInfo{}, err
	}
	info.Name = name
	if info.TotalMem, r = drvDeviceTotalMem(dev); r != 0 {
		return DeviceInfo{}, check(r, "cuDeviceTotalMem_v2", "device %d", ordinal)
	}
	required := []struct {
		attr int
		dst  *int
		name string
	}{
		{attrComputeCapabilityMajor, &info.Major, "compute capability major"},
		{attrComputeCapabilityMinor, &info.Minor, "compute capability minor"},
		{attrMultiprocessorCount, &info.SMs, "multiprocessor count"},
		{attrMaxSharedPerBlock, &info.SharedPerBlock, "shared memory per block"},
	}
	for _, a := range required {
		v, r := drvDeviceAttr(dev, a.attr)
		if err := check(r, "cuDeviceGetAttribute", "%s (%d), device %d", a.name, a.attr, ordinal); err != nil {
			return DeviceInfo{}, err
		}
		*a.dst = v
	}
	// Informational attributes: a driver (or the emulator) that does not
	// know one leaves it 0 rather than failing the device.
	optional := []struct {
		attr int
		dst  *int
	}{
		{attrMaxSharedPerBlockOptin, &info.SharedPerBlockOptin},
		{attrClockRateKHz, &info.ClockKHz},
		{attrMemoryClockRateKHz, &info.MemClockKHz},
		{attrGlobalMemoryBusWidth, &info.BusWidth},
		{attrL2CacheSize, &info.L2Bytes},
	}
	for _, a := range optional {
		if v, r := drvDeviceAttr(dev, a.attr); r == 0 {
			*a.dst = v
		}
	}
	if info.SharedPerBlockOptin < info.SharedPerBlock {
		info.SharedPerBlockOptin = info.SharedPerBlock
	}
	return info, nil
}

// Context is a retained primary context of one device. All methods may be
// called from any goroutine; see the package doc for how threads are bound.
type Context struct {
	info   DeviceInfo
	dev    int
	handle uintptr
	mu     sync.Mutex
	closed bool
}

// OpenContext retains the primary context of device ordinal.
func OpenContext(ordinal int) (*Context, error) {
	if err := Init(); err != nil {
		return nil, err
	}
	n, err := DeviceCount()
	if err != nil {
		return nil, err
	}
	if ordinal < 0 || ordinal >= n {
		return nil, fmt.Errorf("cuda: device %d does not exist (the driver sees %d device(s))", ordinal, n)
	}
	info, err := deviceInfo(ordinal)
	if err != nil {
		return nil, err
	}
	dev, r := drvDeviceGet(ordinal)
	if err := check(r, "cuDeviceGet", "ordinal %d", ordinal); err != nil {
		return nil, err
	}
	h, r := drvPrimaryCtxRetain(dev)
	if err := check(r, "cuDevicePrimaryCtxRetain", "device %d", ordinal); err != nil {
		return nil, err
	}
	return &Context{info: info, dev: dev, handle: h}, nil
}

// Info describes the context's device.
func (c *Context) Info() DeviceInfo { return c.info }

// Close releases the primary context; handles made from it become invalid.
// Closing twice is a no-op.
func (c *Context) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.closed = true
	return check(drvPrimaryCtxRelease(c.dev), "cuDevicePrimaryCtxRelease_v2", "device %d", c.info.Ordinal)
}

// Synchronize waits for all work in the context (cuCtxSynchronize).
func (c *Context) Synchronize() error {
	return check(drvCtxSynchronize(c.handle), "cuCtxSynchronize", "")
}

// MemInfo returns free and total device memory in bytes.
func (c *Context) MemInfo() (free, total uint64, err error) {
	f, t, r := drvMemGetInfo(c.handle)
	return f, t, check(r, "cuMemGetInfo_v2", "")
}

// MemAlloc allocates bytes of device memory (not initialised).
func (c *Context) MemAlloc(bytes uint64) (DevicePtr, error) {
	p, r := drvMemAlloc(c.handle, bytes)
	return p, check(r, "cuMemAlloc_v2", "%d bytes", bytes)
}

// MemFree frees device memory from MemAlloc.
func (c *Context) MemFree(p DevicePtr) error {
	return check(drvMemFree(c.handle, p), "cuMemFree_v2", "%#x", uint64(p))
}

// Memset sets n elements of width bytes (1, 2 or 4) at dst to value. With
// a nil stream it is synchronous; otherwise it is queued on s.
func (c *Context) Memset(dst DevicePtr, width int, value uint32, n uint64, s *Stream) error {
	if width != 1 && width != 2 && width != 4 {
		return fmt.Errorf("cuda: Memset width %d (want 1, 2 or 4)", width)
	}
	names := map[int][2]string{1: {"cuMemsetD8_v2", "cuMemsetD8Async"}, 2: {"cuMemsetD16_v2", "cuMemsetD16Async"}, 4: {"cuMemsetD32_v2", "cuMemsetD32Async"}}
	var sh uintptr
	name := names[width][0]
	if s != nil {
		sh, name = s.handle, names[width][1]
	}
	return check(drvMemset(c.handle, width, dst, value, n, sh, s != nil), name, "%#x, %#x, %d", uint64(dst), value, n)
}

// CopyHtoD copies src into device memory at dst, synchronously. src may be
// any Go memory (it must not contain Go pointers).
func (c *Context) CopyHtoD(dst DevicePtr, src unsafe.Pointer, bytes uint64) error {
	if bytes == 0 {
		return nil
	}
	return check(drvMemcpyHtoD(c.handle, dst, src, bytes, 0, false), "cuMemcpyHtoD_v2", "%#x, %d bytes", uint64(dst), bytes)
}

// CopyDtoH copies device memory at src into dst, synchronously.
func (c *Context) CopyDtoH(dst unsafe.Pointer, src DevicePtr, bytes uint64) error {
	if bytes == 0 {
		return nil
	}
	return check(drvMemcpyDtoH(c.handle, dst, src, bytes, 0, false), "cuMemcpyDtoH_v2", "%#x, %d bytes", uint64(src), bytes)
}

// CopyDtoD copies bytes between device buffers; nil s means synchronous.
func (c *Context) CopyDtoD(dst, src DevicePtr, bytes uint64, s *Stream) error {
	if bytes == 0 {
		return nil
	}
	if s == nil {
		return check(drvMemcpyDtoD(c.handle, dst, src, bytes, 0, false), "cuMemcpyDtoD_v2", "%#x <- %#x, %d bytes", uint64(dst), uint64(src), bytes)
	}
	return check(drvMemcpyDtoD(c.handle, dst, src, bytes, s.handle, true), "cuMemcpyDtoDAsync_v2", "%#x <- %#x, %d bytes", uint64(dst), uint64(src), bytes)
}

// HostBuffer is page-locked host memory (cuMemAllocHost), the only host
// memory asynchronous copies may use.
type HostBuffer struct {
	ctx   *Context
	ptr   unsafe.Pointer // C memory from the driver, never Go memory
	bytes int
}

// AllocHost allocates bytes of page-locked host memory.
func (c *Context) AllocHost(bytes int) (*HostBuffer, error) {
	if bytes <= 0 {
		return nil, fmt.Errorf("cuda: AllocHost of %d bytes", bytes)
	}
	p, r := drvMemAllocHost(c.handle, uint64(bytes))
	if err := check(r, "cuMemAllocHost_v2", "%d bytes", bytes); err != nil {
		return nil, err
	}
	return &HostBuffer{ctx: c, ptr: p, bytes: bytes}, nil
}

// Bytes returns the buffer as a byte slice (valid until Free).
func (h *HostBuffer) Bytes() []byte {
	if h.ptr == nil {
		return nil
	}
	return unsafe.Slice((*byte)(h.ptr), h.bytes)
}

// Len returns the buffer size in bytes.
func (h *HostBuffer) Len() int { return h.bytes }

// Free releases the buffer; freeing twice is a no-op.
func (h *HostBuffer) Free() error {
	if h.ptr == nil {
		return nil
	}
	p := h.ptr
	h.ptr = nil
	return check(drvMemFreeHost(h.ctx.handle, p), "cuMemFreeHost", "")
}

func (h *HostBuffer) span(off, bytes int) (unsafe.Pointer, error) {
	if h.ptr == nil || off < 0 || bytes < 0 || off+bytes > h.bytes {
		return nil, fmt.Errorf("cuda: host buffer range [%d, %d) outside its %d bytes (or freed)", off, off+bytes, h.bytes)
	}
	return unsafe.Add(h.ptr, off), nil
}

// CopyHtoDAsync queues a copy of bytes from h at off to dst on s.
func (c *Context) CopyHtoDAsync(dst DevicePtr, h *HostBuffer, off, bytes int, s *Stream) error {
	p, err := h.span(off, bytes)
	if err != nil || bytes == 0 {
		return err
	}
	return check(drvMemcpyHtoD(c.handle, dst, p, uint64(bytes), s.handle, true), "cuMemcpyHtoDAsync_v2", "%#x, %d bytes", uint64(dst), bytes)
}

// CopyDtoHAsync queues a copy of bytes from src into h at off on s.
func (c *Context) CopyDtoHAsync(h *HostBuffer, off int, src DevicePtr, bytes int, s *Stream) error {
	p, err := h.span(off, bytes)
	if err != nil || bytes == 0 {
		return err
	}
	return check(drvMemcpyDtoH(c.handle, p, src, uint64(bytes), s.handle, true), "cuMemcpyDtoHAsync_v2", "%#x, %d bytes", uint64(src), bytes)
}

// Stream is a CUDA stream: work queued on it runs in order.
type Stream struct {
	ctx    *Context
	handle uintptr
}

// NewStream creates a stream (flags 0: it also orders with the legacy
// default stream, which the synchronous copies use).
func (c *Context) NewStream() (*Stream, error) {
	h, r := drvStreamCreate(c.handle)
	if err := check(r, "cuStreamCreate", "flags 0"); err != nil {
		return nil, err
	}
	return &Stream{ctx: c, handle: h}, nil
}

// Synchronize waits for everything queued on s.
func (s *Stream) Synchronize() error {
	return check(drvStreamSynchronize(s.ctx.handle, s.handle), "cuStreamSynchronize", "")
}

// Destroy releases the stream; destroying twice is a no-op.
func (s *Stream) Destroy() error {
	if s.handle == 0 {
		return nil
	}
	h := s.handle
	s.handle = 0
	return check(drvStreamDestroy(s.ctx.handle, h), "cuStreamDestroy_v2", "")
}

// WaitEvent makes the work queued on s after this call wait until the
// work before e's last Record is done (the host does not wait).
func (s *Stream) WaitEvent(e *Event) error {
	return check(drvStreamWaitEvent(s.ctx.handle, s.handle, e.handle), "cuStreamWaitEvent", "")
}

// Event marks a point in a stream, for timing and waiting.
type Event struct {
	ctx    *Context
	handle uintptr
}

// NewEvent creates an event with timing enabled.
func (c *Context) NewEvent() (*Event, error) {
	h, r := drvEventCreate(c.handle)
	if err := check(r, "cuEventCreate", "flags 0"); err != nil {
		return nil, err
	}
	return &Event{ctx: c, handle: h}, nil
}

// Record queues the event on s.
func (e *Event) Record(s *Stream) error {
	return check(drvEventRecord(e.ctx.handle, e.handle, s.handle), "cuEventRecord", "")
}

// Synchronize waits until the work before the event's last Record is done.
func (e *Event) Synchronize() error {
	return check(drvEventSynchronize(e.ctx.handle, e.handle), "cuEventSynchronize", "")
}

// ElapsedMs returns the milliseconds between two recorded, completed events.
func ElapsedMs(start, end *Event) (float32, error) {
	ms, r := drvEventElapsed(start.ctx.handle, start.handle, end.handle)
	return ms, check(r, "cuEventElapsedTime", "")
}

// Destroy releases the event; destroying twice is a no-op.
func (e *Event) Destroy() error {
	if e.handle == 0 {
		return nil
	}
	h := e.handle
	e.handle = 0
	return check(drvEventDestroy(e.ctx.handle, h), "cuEventDestroy_v2", "")
}

// Module is loaded device code.
type Module struct {
	ctx    *Context
	handle uintptr
}

// LoadModule loads a cubin, PTX or fatbin image (cuModuleLoadData).
func (c *Context) LoadModule(image []byte) (*Module, error) {
	if len(image) == 0 {
		return nil, fmt.Errorf("cuda: LoadModule: empty image")
	}
	h, r := drvModuleLoad(c.handle, image)
	if err := check(r, "cuModuleLoadData", "%d-byte image", len(image)); err != nil {
		return nil, err
	}
	return &Module{ctx: c, handle: h}, nil
}

// Unload releases the module; unloading twice is a no-op.
func (m *Module) Unload() error {
	if m.handle == 0 {
		return nil
	}
	h := m.handle
	m.handle = 0
	return check(drvModuleUnload(m.ctx.handle, h), "cuModuleUnload", "")
}

// Function looks up a kernel by its (extern "C") name.
func (m *Module) Function(name string) (*Function, error) {
	h, r := drvModuleGetFunction(m.ctx.handle, m.handle, name)
	if err := check(r, "cuModuleGetFunction", "%q", name); err != nil {
		return nil, err
	}
	return &Function{ctx: m.ctx, handle: h, name: name}, nil
}

// Function is one kernel of a Module.
type Function struct {
	ctx    *Context
	handle uintptr
	name   string
}

// Name returns the kernel's name.
func (f *Function) Name() string { return f.name }

// FuncAttributes are a kernel's compiled resource needs.
type FuncAttributes struct {
	// MaxThreadsPerBlock is the largest block this kernel can launch with.
	MaxThreadsPerBlock int
	// StaticShared is the statically declared shared memory in bytes.
	StaticShared int
	// LocalBytes is per-thread local memory (stack and spills).
	LocalBytes int
	// Registers is registers per thread.
	Registers int
	// MaxDynamicShared is the current dynamic shared memory limit.
	MaxDynamicShared int
}

// Attributes reads the kernel's attributes.
func (f *Function) Attributes() (FuncAttributes, error) {
	var a FuncAttributes
	for _, q := range []struct {
		attr int
		dst  *int
		name string
	}{
		{funcAttrMaxThreadsPerBlock, &a.MaxThreadsPerBlock, "max threads per block"},
		{funcAttrSharedSizeBytes, &a.StaticShared, "shared size"},
		{funcAttrLocalSizeBytes, &a.LocalBytes, "local size"},
		{funcAttrNumRegs, &a.Registers, "registers"},
		{funcAttrMaxDynamicShared, &a.MaxDynamicShared, "max dynamic shared size"},
	} {
		v, r := drvFuncGetAttr(f.ctx.handle, f.handle, q.attr)
		if err := check(r, "cuFuncGetAttribute", "%s of %s", q.name, f.name); err != nil {
			return a, err
		}
		*q.dst = v
	}
	return a, nil
}

// SetMaxDynamicShared raises the kernel's dynamic shared memory limit, which
// is needed for more than 48 KB
// (CU_FUNC_ATTRIBUTE_MAX_DYNAMIC_SHARED_SIZE_BYTES).
func (f *Function) SetMaxDynamicShared(bytes int) error {
	return check(drvFuncSetAttr(f.ctx.handle, f.handle, funcAttrMaxDynamicShared, bytes),
		"cuFuncSetAttribute", "%s, max dynamic shared = %d", f.name, bytes)
}

// Dim3 is a grid or block shape.
type Dim3 struct{ X, Y, Z uint32 }

// Launch queues the kernel on s with the given parameters, which must match
// the kernel's C parameter list in order and type: DevicePtr (a pointer
// parameter), int32 or int (C int; an int must fit in 32 bits), uint32,
// int64, uint64, float32.
func (f *Function) Launch(grid, block Dim3, sharedBytes int, s *Stream, args ...any) error {
	var ab argBuffer
	for i, a := range args {
		if err := ab.add(a); err != nil {
			return fmt.Errorf("cuda: launch %s: parameter %d: %w", f.name, i, err)
		}
	}
	if grid.X == 0 || grid.Y == 0 || grid.Z == 0 || block.X == 0 || block.Y == 0 || block.Z == 0 {
		return fmt.Errorf("cuda: launch %s: empty grid %v or block %v", f.name, grid, block)
	}
	if sharedBytes < 0 {
		return fmt.Errorf("cuda: launch %s: negative shared memory %d", f.name, sharedBytes)
	}
	r := drvLaunch(f.ctx.handle, f.handle, [3]uint32{grid.X, grid.Y, grid.Z}, [3]uint32{block.X, block.Y, block.Z},
		uint32(sharedBytes), s.handle, ab.buf, ab.offs)
	return check(r, "cuLaunchKernel", "%s, grid %v, block %v, %d B shared", f.name, grid, block, sharedBytes)
}

// argBuffer packs kernel parameters, each aligned to its size, the way
// cuLaunchKernel's kernelParams expects them (one pointer per value).
type argBuffer struct {
	buf  []byte
	offs []int32
}

func (ab *argBuffer) put(size int, bits uint64) {
	for len(ab.buf)%size != 0 {
		ab.buf = append(ab.buf, 0)
	}
	ab.offs = append(ab.offs, int32(len(ab.buf)))
	for i := 0; i < size; i++ {
		ab.buf = append(ab.buf, byte(bits>>(8*i)))
	}
}

func (ab *argBuffer) add(a any) error {
	switch v := a.(type) {
	case DevicePtr:
		ab.put(8, uint64(v))
	case int:
		if int(int32(v)) != v {
			return fmt.Errorf("int %d does not fit the kernel's 32-bit int", v)
		}
		ab.put(4, uint64(uint32(int32(v))))
	case int32:
		ab.put(4, uint64(uint32(v)))
	case uint32:
		ab.put(4, uint64(v))
	case int64:
		ab.put(8, uint64(v))
	case uint64:
		ab.put(8, v)
	case float32:
		ab.put(4, uint64(math.Float32bits(v)))
	default:
		return fmt.Errorf("unsupported kernel parameter type %T", a)
	}
	return nil
}
